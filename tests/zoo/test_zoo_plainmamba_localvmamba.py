"""PlainMamba-L1 and LocalVMamba-T as specs, and the language features they needed: scan paths
(zig-zag, windowed) against naive index loops, the ``multi_scan_ssm`` mixer against a plain
recurrence, the ``conv_patch_embed`` stem against plain convolutions, ``$list[index]`` in templates,
and each spec's exact official parameter count and MACs."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from archdsl.analysis.scan_macs import count_macs_with_scan
from archdsl.analysis.summary import count_params
from archdsl.cli import main
from archdsl.compiler import build_model
from archdsl.errors import SpecError
from archdsl.language import load_spec
from archdsl.language.templates import substitute
from archdsl.layers.conv_patch_embed import ConvPatchEmbed
from archdsl.layers.mixers.multi_scan_ssm import MultiScanSSM
from archdsl.ops.scan_paths import multi_merge, multi_scan, path_positions, path_span, scan_moves, scan_path

ZOO = Path(__file__).resolve().parents[2] / "specs" / "zoo"
NAMES = ["row", "col", "row_reverse", "col_reverse", "zigzag_row", "zigzag_row_reverse", "zigzag_col",
         "zigzag_col_reverse", "window2", "window2_reverse", "window3", "window7_reverse"]


# ---------------------------------------------------------------- scan paths vs index loops
def _naive_path(H, W, name):
    """Row-major positions (None = a pad token) visited by ``name``, by walking the grid."""
    rev = name.endswith("_reverse")
    base = name[: -len("_reverse")] if rev else name
    cells = []
    if base == "row":
        cells = [(i, j) for i in range(H) for j in range(W)]
    elif base == "col":
        cells = [(i, j) for j in range(W) for i in range(H)]
    elif base == "zigzag_row":
        for i in range(H):
            cells += [(i, j) for j in (range(W) if i % 2 == 0 else range(W - 1, -1, -1))]
    elif base == "zigzag_col":
        for j in range(W):
            cells += [(i, j) for i in (range(H) if j % 2 == 0 else range(H - 1, -1, -1))]
    else:
        k = int(base[len("window"):])
        for wi in range(math.ceil(H / k)):
            for wj in range(math.ceil(W / k)):
                for a in range(k):
                    for b in range(k):
                        i, j = wi * k + a, wj * k + b
                        cells.append((i, j) if i < H and j < W else None)
    idx = [None if c is None else c[0] * W + c[1] for c in cells]
    return idx[::-1] if rev else idx


def _naive_moves(H, W, idx):
    names = {(0, 1): 1, (0, -1): 2, (-1, 0): 3, (1, 0): 4}
    return [0] + [names[(b // W - a // W, b % W - a % W)] for a, b in zip(idx, idx[1:])]


@pytest.mark.parametrize("hw", [(3, 5), (4, 4), (5, 2), (1, 3), (7, 7)])
@pytest.mark.parametrize("name", NAMES)
def test_scan_paths_match_index_loops_and_invert(hw, name):
    H, W = hw
    ref = _naive_path(H, W, name)
    assert scan_path(H, W, name).tolist() == [H * W if p is None else p for p in ref]
    x = torch.randn(2, 3, H, W)
    seq, lengths = multi_scan(x, [name])
    flat = x.reshape(2, 3, H * W)
    for t, p in enumerate(ref):
        assert torch.equal(seq[:, 0, :, t], flat[..., p] if p is not None else torch.zeros(2, 3))
    assert lengths == [len(ref)]
    assert torch.equal(multi_merge(seq, H, W, [name])[:, 0], flat)  # the inverse restores the grid
    pos = path_positions(H, W, name)
    assert all(ref[pos[p]] == p for p in range(H * W))
    real = [t for t, p in enumerate(ref) if p is not None]  # trimmed: the pad tokens at the ends dropped
    assert path_span(H, W, name) == (real[0], real[-1] + 1)
    trimmed, lengths = multi_scan(x, [name], trim=True)
    assert lengths == [real[-1] + 1 - real[0]] and torch.equal(trimmed, seq[..., real[0]:real[-1] + 1])
    assert torch.equal(multi_merge(trimmed, H, W, [name], trim=True)[:, 0], flat)
    if name.startswith("zigzag"):
        assert scan_moves(H, W, name).tolist() == _naive_moves(H, W, ref)


def test_multi_scan_pads_shorter_paths_at_the_end():
    x = torch.randn(1, 2, 3, 3)
    seq, lengths = multi_scan(x, ["row", "window2"])  # 9 tokens vs a 4x4 padded grid
    assert lengths == [9, 16] and seq.shape == (1, 2, 2, 16)
    assert torch.equal(seq[0, 0, :, 9:], torch.zeros(2, 7))
    assert torch.equal(multi_merge(seq, 3, 3, ["row", "window2"]), x.reshape(1, 1, 2, 9).expand(1, 2, 2, 9))


def test_scan_path_errors():
    with pytest.raises(ValueError, match="unknown scan path 'zigzag'; expected one of: row, col"):
        scan_path(3, 3, "zigzag")
    with pytest.raises(ValueError, match="not continuous on a 3x3 grid"):
        scan_moves(3, 3, "row")
    with pytest.raises(ValueError, match="reads pad tokens on a 3x3 grid"):
        scan_moves(3, 3, "window2")


# ---------------------------------------------------------------- the mixer vs a plain recurrence
def _recurrence(u, delta, A, B, C, D):
    """u, delta [L, C]; A [C, S]; B, C [L, S]; D [C] -> y [L, C], one step at a time."""
    h, out = torch.zeros_like(A), []
    for t in range(u.shape[0]):
        h = torch.exp(delta[t, :, None] * A) * h + delta[t, :, None] * B[t][None] * u[t, :, None]
        out.append(h @ C[t] + D * u[t])
    return torch.stack(out)


def _attn_ref(a, x):
    n = F.layer_norm(x, x.shape[-1:], a.norm.weight, a.norm.bias)
    g = F.gelu(F.linear(n.mean(0), a.global_reduce.weight, a.global_reduce.bias))
    attn = torch.sigmoid(F.linear(g, a.channel_select.weight, a.channel_select.bias))
    if a.spatial:
        loc = F.gelu(F.linear(n, a.local_reduce.weight, a.local_reduce.bias))
        s = F.linear(torch.cat([loc, g.expand_as(loc)], -1), a.spatial_select.weight, a.spatial_select.bias)
        attn = attn * torch.sigmoid(s)
    return x * attn


def _mixer_ref(m: MultiScanSSM, x, H, W):
    """One image x [N, C] through ``m``, path by path with Python index loops."""
    N, C = x.shape
    out = torch.zeros(N, C)
    R, S = m.dt_rank, m.d_state
    for k, name in enumerate(m.paths):
        s = 0 if m.shared else k
        xp = m.x_proj if m.shared else m.x_proj[k]
        dp = m.dt_proj if m.shared else m.dt_proj[k]
        idx = _naive_path(H, W, name)
        u = torch.stack([x[p] if p is not None else torch.zeros(C) for p in idx])
        proj = (x if m.project == "grid" else u) @ xp.weight.T
        dt, B, Cm = proj.split([R, S, S], dim=-1)
        delta = F.softplus(dt @ dp.weight.T + dp.bias * (2 if m.dt_bias_twice else 1))
        if m.direction_Bs is not None:
            B = B + m.direction_Bs[_naive_moves(H, W, idx)]
        A = -torch.exp(m.A_log[s * C:(s + 1) * C])
        y = _recurrence(u, delta, A, B, Cm, m.D[s * C:(s + 1) * C])
        yk = torch.zeros(N, C)
        for t, p in enumerate(idx):
            if p is not None:
                yk[p] = y[t]
        out = out + (_attn_ref(m.attn, yk) if m.attn is not None else yk)
    return out


MIXERS = {
    "plainmamba": dict(paths=["zigzag_row", "zigzag_row_reverse", "zigzag_col", "zigzag_col_reverse"], shared=True,
                       direction_tokens=True, project="grid", dt_bias_twice=True),
    "zigzag_per_path": dict(paths=["zigzag_col", "zigzag_row_reverse"], direction_tokens=True),
    "localvmamba": dict(paths=["row_reverse", "col", "window2", "window2_reverse"], merge_attn="channel"),
    "scattn_spatial": dict(paths=["window3", "col_reverse"], merge_attn="channel_spatial", attn_ratio=0.5),
}


@pytest.mark.parametrize("hw", [(3, 5), (4, 4)])
@pytest.mark.parametrize("cfg", MIXERS, ids=str)
def test_multi_scan_ssm_matches_a_plain_recurrence(cfg, hw):
    torch.manual_seed(0)
    H, W = hw
    m = MultiScanSSM(8, d_state=3, dt_rank=2, **MIXERS[cfg])
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(2, H * W, 8)
    with torch.no_grad():
        y = m(x, (H, W))
        for b in range(2):
            torch.testing.assert_close(y[b], _mixer_ref(m, x[b], H, W), rtol=1e-4, atol=1e-5)


def test_multi_scan_ssm_parameters_and_errors():
    shared = MultiScanSSM(8, d_state=4, dt_rank=2, paths=["zigzag_row", "zigzag_col"], shared=True,
                          direction_tokens=True)
    per_path = MultiScanSSM(8, d_state=4, dt_rank=2, paths=["zigzag_row", "zigzag_col"], merge_attn="channel")
    one_set = 8 * (2 + 8) + 2 * 8 + 8 + 8 * 4 + 8
    assert count_params(shared) == one_set + 5 * 4
    assert count_params(per_path) == 2 * one_set + (2 * 8 + 8 * 1 + 1 + 1 * 8 + 8)
    with pytest.raises(ValueError, match="project: grid projects once for every path, so it needs shared: true"):
        MultiScanSSM(8, paths=["row"], project="grid")
    with pytest.raises(ValueError, match="merge_attn must be null or one of channel, channel_spatial"):
        MultiScanSSM(8, merge_attn="spatial")
    with pytest.raises(ValueError, match="unknown scan path 'diagonal'"):
        MultiScanSSM(8, paths=["row", "diagonal"])
    with pytest.raises(ValueError, match="not continuous"):
        MultiScanSSM(8, paths=["row"], direction_tokens=True)(torch.randn(1, 4, 8), (2, 2))


# ---------------------------------------------------------------- conv_patch_embed, $list[index]
def test_conv_patch_embed_matches_plain_convolutions():
    torch.manual_seed(0)
    stem = ConvPatchEmbed(3, 8, patch_size=8, hidden=6, kernel=7, num_convs=1).eval()
    for bn in (stem.conv1.norm, stem.convs[0].norm):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    img = torch.randn(2, 3, 27, 34)  # 14 x 17 after the stride-2 conv: padded to 16 x 20 for 4x4 patches
    c1, c2 = stem.conv1, stem.convs[0]

    def bn_relu(x, bn):
        return F.relu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps))

    x = bn_relu(F.conv2d(img, c1.conv.weight, stride=2, padding=3), c1.norm)
    x = bn_relu(F.conv2d(x, c2.conv.weight, padding=1), c2.norm)
    ref = F.conv2d(F.pad(x, (0, 3, 0, 2)), stem.proj.weight, stem.proj.bias, stride=4)
    with torch.no_grad():
        out, hw = stem(img)
    assert hw == (4, 5) and stem.reduction == 8
    torch.testing.assert_close(out, ref.flatten(2).transpose(1, 2))
    with pytest.raises(ValueError, match="patch_size must be an even integer >= 2"):
        ConvPatchEmbed(3, 8, patch_size=5)


def _at(path):
    return {"file": "t.yaml", "line": 4, "col": 7, "path": ".".join(map(str, path)) or "body"}


def test_template_list_items():
    v = {"paths": [[["a"], ["b", "c"]], [["d"]]], "stage": 0, "index": 1, "after": [["x"], "identity"]}
    assert substitute({"mixer": {"paths": "$paths[$stage][$index]"}}, v, _at) == {"mixer": {"paths": ["b", "c"]}}
    assert substitute(["$after[min($index, 1)]", "$after[0]", "$paths[-1][0]"], v, _at) == \
        ["identity", ["x"], ["d"]]
    with pytest.raises(SpecError) as e:
        substitute(["$paths[$stage][$index + 1]"], v, _at)
    assert str(e.value) == "t.yaml:4:7: 0: index [$index + 1] = 2 is out of range for $paths[$stage] (a list of 2)"
    with pytest.raises(SpecError, match=r"\$stage is a number, not a list: it cannot be indexed with \[0\]"):
        substitute("$stage[0]", v, _at)
    with pytest.raises(SpecError, match=r"cannot evaluate the index \[\$paths\] of \$after"):
        substitute("$after[$paths]", v, _at)
    with pytest.raises(SpecError, match=r"unknown template variable '\$indx' \(did you mean '\$index'\?\)"):
        substitute("$after[$indx]", v, _at)


# ---------------------------------------------------------------- the specs
SPECS = {"plainmamba_l1": (7_551_656, 3.0), "localvmamba_t": (25_527_160, 5.7)}


@pytest.mark.parametrize("name", SPECS)
def test_spec_has_the_official_count_and_macs(name, capsys):
    path = ZOO / f"{name}.yaml"
    params, paper_gmacs = SPECS[name]
    assert load_spec(str(path)).meta["official"]["params"] == params
    model = build_model(str(path), device="meta")
    assert count_params(model) == params
    macs, scan = count_macs_with_scan(model, 224)
    assert abs((macs + scan) / 1e9 / paper_gmacs - 1) < 0.02
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"ok: {path} ({name})"


def test_plainmamba_layer_zero_alone_has_the_dwconv():
    model = build_model(str(ZOO / "plainmamba_l1.yaml"), ["depth=3", "dim=16", "mixer.dt_rank=1"], device="meta")
    keys = [k for k in model.state_dict() if ".dw." in k or ".dw_norm." in k]
    assert keys and all(k.startswith("stages.0.blocks.0.") for k in keys)


def test_localvmamba_blocks_scan_their_searched_directions():
    model = build_model(str(ZOO / "localvmamba_t.yaml"), device="meta")
    ssm = {(s, b): blk.ssm for s, st in enumerate(model.stages) for b, blk in enumerate(st.blocks)}
    assert len(ssm) == 15 and all(m.attn is not None and not m.attn.spatial for m in ssm.values())
    assert ssm[0, 0].paths == ("row", "row_reverse", "window7", "window7_reverse")
    assert ssm[2, 8].paths == ("col_reverse", "window2_reverse", "window7", "window7_reverse")
    assert ssm[3, 0].paths == ("row_reverse", "col_reverse", "window2_reverse", "window7_reverse")
    assert (ssm[3, 1].dim, ssm[3, 1].dt_rank) == (1536, 48)  # dt_rank of the block width 768


def test_the_json_schema_knows_the_new_components(tmp_path):
    pytest.importorskip("check_jsonschema")
    schema = tmp_path / "archdsl-spec.schema.json"
    assert main(["schema", "--out", str(schema)]) == 0
    base = "layout: isotropic\nblock: mamba\ndim: 8\ndepth: 1\n"
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(base + "stem: {type: conv_patch_embed, num_convs: 2}\n"
                           "mixer: {type: multi_scan_ssm, paths: [zigzag_row, window7], project: grid}\n")
    bad.write_text(base + "stem: {type: conv_patch_embed, num_conv: 2}\nmixer: {type: multi_scan_ssm, project: grids}\n")
    r = subprocess.run([sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema), str(good), str(bad)],
                       capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "good.yaml" not in out
    assert "bad.yaml::$.stem" in out and "bad.yaml::$.mixer" in out
