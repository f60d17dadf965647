"""`archdsl export`: a pt2 file that loads and equals eager (--check), atomic output, one-line errors."""
from __future__ import annotations

import json

import torch
from export_helpers import ROOT

from archdsl.cli import main

TINY = ["--set", "stages.depths=[1,1,1,1]", "--set", "stages.embed_dim=16", "--set", "stages.heads=[1,1,2,2]",
        "--set", "num_classes=5"]
SPEC = str(ROOT / "specs" / "mlla_t.yaml")


def test_export_pt2_with_weights_and_check(tmp_path, capsys):
    from archdsl.compiler import build_model

    torch.manual_seed(3)
    model = build_model(SPEC, [a for a in TINY if a != "--set"]).eval()
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "m.pt2"
    rc = main(["export", SPEC, "--format", "pt2", "--out", str(out), "--weights", str(weights),
               "--image-size", "64", "--check", "--json", *TINY])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["max_rel_error"] <= 1e-4 and summary["input_shape"] == [2, 3, 64, 64]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt2", "w.pt"]  # no temporary file left
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.export.load(str(out)).module()(x), model(x), atol=1e-5, rtol=1e-4)


def test_export_user_errors_are_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "m.pt2"
    swin = str(ROOT / "specs" / "swin_t.yaml")
    cases = [
        (SPEC, ["--dynamic-hw", "--image-size", "48"], "must be a multiple of it"),
        (SPEC, ["--weights", str(tmp_path / "missing.pt")], "weights file not found"),
        (SPEC, ["--batch-size", "1"], "a dynamic batch needs an example batch of at least 2"),
        (swin, ["--dynamic-hw", "--image-size", "64"], "a dynamic height / width is not possible for this model: "
                                                       "stages.0.blocks.0.attn (SoftmaxAttention: Swin windows"),
    ]
    for spec, extra, message in cases:
        rc = main(["export", spec, "--format", "pt2", "--out", str(out), *TINY, *extra])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and message in err and "\n" not in err and err.startswith("archdsl export: error:")
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary file
