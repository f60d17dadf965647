"""The hostile inputs: each case is files to create in a fresh folder, the ``archdsl`` arguments, and
what must come out. Specs are untrusted input, so every case must end with exit 0 or 2, one line
and no traceback, quickly, within an address-space limit, and without running a module a spec
names unless the person running archdsl opted in.

File values: ``str`` / ``bytes`` (written), ``FIFO``, ``DIR``, ``("link", TARGET)`` (a symlink).
Arguments and file texts may use ``{d}`` for the case's folder.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Union

FIFO = "<fifo>"
DIR = "<dir>"
MARKER = "MARKER"  # a plugin module that runs writes this file into the case folder

TINY = """\
name: tiny
layout: hierarchical
num_classes: 10
image_size: 32
stem: mlla_stem
stages: {dims: [8, 16], depths: [1, 2], heads: [2, 4]}
downsample: mlla_merge
block: {type: mlla, mlp_ratio: 2.0}
mixer: {type: linear_attention, positional: [rope2d, lepe]}
head: norm_pool_linear
"""  # lines appended to it start at line 11
ISO = """\
name: iso
layout: isotropic
image_size: 32
num_classes: 10
patch_size: 4
dim: 16
depth: 1
heads: 2
block: t
mixer: softmax_attention
blocks:
  t:
    body:
      - residual: [{norm: layernorm}, {mlp: {ratio: 2}}]
      - residual: {linear: EXPR}
"""
PLUGIN = f"open(r'{{d}}/{MARKER}', 'w').write('ran')\n"

FileT = Union[str, bytes, Tuple[str, str]]


@dataclass
class Case:
    """``expect``: the exit codes allowed; ``err``: text the output must contain (``None``: any);
    ``marker``: whether the plugin marker file must exist afterwards."""

    id: str
    files: Dict[str, FileT]
    argv: Sequence[str]
    expect: Tuple[int, ...] = (2,)
    err: Optional[str] = None
    marker: bool = False
    env: Dict[str, str] = field(default_factory=dict)
    out_empty: bool = False
    torch: bool = False  # the case gets past spec loading (imports torch: slower)


def _deep_flow(n: int, open_: str = "[", close: str = "]") -> str:
    return "a: " + open_ * n + close * n + "\n"


def _v(name: str, **kw) -> Case:
    """A case that validates ``s.yaml`` without compiling (spec loading only: no torch)."""
    files = kw.pop("files")
    extra = kw.pop("args", [])
    return Case(name, files, ["validate", "--no-compile", "s.yaml", *extra], **kw)


def _torch(cases: list[Case]) -> list[Case]:
    for c in cases:
        c.torch = True
    return cases


def _checkpoint_bytes() -> bytes:
    class Evil:
        def __reduce__(self):
            return (eval, ("1",))

    return pickle.dumps({"model": Evil()}, protocol=2)


def yaml_cases() -> list[Case]:
    t = TINY
    return [
        _v("bel_in_string", files={"s.yaml": 'name: "a\x07"\n'}, err="s.yaml:1:9: invalid YAML: control character U+0007"),
        _v("nul_byte", files={"s.yaml": b"name: a\x00b\n"}, err="control character U+0000"),
        _v("esc_raw_in_key", files={"s.yaml": "\x1b[31mred: 1\n"}, err="control character U+001B"),
        _v("esc_escaped_in_key", files={"s.yaml": t + '"\\e[2J\\e[31mx": 1\n'}, err="unknown key '\\x1b[2J\\x1b[31mx'"),
        _v("del_char", files={"s.yaml": "name: a\x7f\n"}, err="control character U+007F"),
        _v("c1_csi", files={"s.yaml": "name: a\u009b2J\n"}, err="control character U+009B"),
        _v("bom_ok", files={"s.yaml": "\ufeff" + t}, expect=(0,)),
        _v("invalid_utf8", files={"s.yaml": b"name: \xff\xfe\xfa\n"}, err="not a UTF-8 text file"),
        _v("utf16", files={"s.yaml": t.encode("utf-16")}, err="s.yaml"),
        _v("deep_flow_list", files={"s.yaml": _deep_flow(10_000)}, err="nesting too deep"),
        _v("deep_flow_map", files={"s.yaml": "a: " + "{a: " * 10_000 + "}" * 10_000 + "\n"}, err="nesting too deep"),
        _v("deep_block_map", files={"s.yaml": "".join("  " * i + "a:\n" for i in range(300))}, err="nesting too deep"),
        _v("deep_block_seq", files={"s.yaml": "a:\n" + "".join("  " * i + "-\n" for i in range(300))},
           err="nesting too deep"),
        _v("deep_mixed", files={"s.yaml": "a: " + "[{a: " * 5000 + "}]" * 5000 + "\n"}, err="nesting too deep"),
        _v("flat_list_100k", files={"s.yaml": "a: [" + "0," * 100_000 + "]\n"}, err="more than 10000 YAML nodes"),
        _v("flat_list_5m", files={"s.yaml": "a: [" + "0," * 5_000_000 + "]\n"}, err="file too large"),
        _v("block_list_50k", files={"s.yaml": "a:\n" + "- 0\n" * 50_000}, err="more than 10000 YAML nodes"),
        _v("many_keys", files={"s.yaml": "".join(f"k{i}: 0\n" for i in range(20_000))}, err="YAML nodes"),
        _v("long_string", files={"s.yaml": "name: " + "x" * 200_000 + "\n"}, err="s.yaml"),
        _v("long_key", files={"s.yaml": "k" * 100_000 + ": 1\n" + t}, err="invalid YAML"),
        _v("comments_only", files={"s.yaml": "# c\n" * 60_000}, err="empty document"),
        _v("alias_bomb", files={"s.yaml": "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))}, err="alias expansion"),
        _v("recursive_alias", files={"s.yaml": "a: &x [1, *x]\n"}, err="recursive YAML alias"),
        _v("python_tag", files={"s.yaml": t + "meta: !!python/object/apply:os.system ['touch {d}/MARKER']\n"},
           err="could not determine a constructor"),
        _v("multi_doc", files={"s.yaml": t + "---\nname: b\n"}, err="expected a single document"),
        _v("empty_file", files={"s.yaml": ""}, err="empty document"),
        _v("huge_int_literal", files={"s.yaml": t.replace("num_classes: 10", "num_classes: " + "9" * 5000)},
           err="s.yaml:3"),
        _v("inf_image_size", files={"s.yaml": t.replace("image_size: 32", "image_size: .inf")}, err="image_size"),
        _v("nan_drop_path", files={"s.yaml": t + "drop_path: .nan\n"}, err="drop_path"),
        _v("tab_indent", files={"s.yaml": t.replace("stages: {", "stages:\n\t{")}, err="invalid YAML"),
        _v("duplicate_key", files={"s.yaml": t + "stem: x\n"}, err="duplicate key"),
        _v("merge_key_bomb", files={"s.yaml": "b: &b {" + ", ".join(f"k{i}: 0" for i in range(3000)) + "}\n"
                                   + "".join(f"c{i}: {{<<: *b}}\n" for i in range(30))}, err="YAML"),
        _v("complex_key", files={"s.yaml": "? [a, b]\n: 1\n"}, err="mapping key must be a plain scalar"),
        _v("huge_set_tag", files={"s.yaml": "meta: !!set {" + ", ".join(f"k{i}" for i in range(20_000)) + "}\n"},
           err="YAML nodes"),
        _v("timestamp_size", files={"s.yaml": t.replace("image_size: 32", "image_size: 2001-12-14")},
           err="image_size"),
    ]


def file_cases() -> list[Case]:
    t = TINY
    ext = "extends: {target}\nname: x\n"
    return [
        Case("dev_zero", {}, ["validate", "/dev/zero"], err="refusing to read /dev/zero"),
        Case("dev_urandom", {}, ["validate", "/dev/urandom"], err="refusing to read"),
        Case("proc_environ", {}, ["validate", "/proc/self/environ"], err="refusing to read"),
        Case("proc_cmdline_link", {"s.yaml": ("link", "/proc/self/cmdline")}, ["validate", "s.yaml"],
             err="refusing to read"),
        _v("fifo_spec", files={"s.yaml": FIFO}, err="is a FIFO"),
        _v("dir_spec", files={"s.yaml": DIR}, err="is a directory"),
        _v("symlink_loop_spec", files={"s.yaml": ("link", "t.yaml"), "t.yaml": ("link", "s.yaml")},
           err="Too many levels of symbolic links"),
        _v("missing_spec", files={}, err="file not found"),
        _v("passwd_link", files={"s.yaml": ("link", "/etc/hostname")}, err="s.yaml"),
        _v("over_byte_cap", files={"s.yaml": t + "# " + "x" * 300_000 + "\n"}, err="file too large"),
        _v("extends_loop", files={"s.yaml": ext.format(target="l1.yaml"), "l1.yaml": ("link", "l2.yaml"),
                                  "l2.yaml": ("link", "l1.yaml")}, err="Too many levels of symbolic links"),
        _v("extends_environ", files={"s.yaml": ext.format(target="/proc/self/environ")}, err="refusing to read"),
        _v("extends_dev_zero", files={"s.yaml": ext.format(target="/dev/zero")}, err="refusing to read"),
        _v("extends_fifo", files={"s.yaml": ext.format(target="p.yaml"), "p.yaml": FIFO}, err="is a FIFO"),
        _v("extends_dir", files={"s.yaml": ext.format(target="d"), "d": DIR}, err="is a directory"),
        _v("extends_self", files={"s.yaml": ext.format(target="s.yaml")}, err="extends cycle"),
        _v("extends_cycle3", files={"s.yaml": ext.format(target="a.yaml"), "a.yaml": "extends: b.yaml\n",
                                    "b.yaml": "extends: s.yaml\n"}, err="extends cycle"),
        _v("extends_chain_40", files={"s.yaml": "extends: e0.yaml\n", **{
            f"e{i}.yaml": f"extends: e{i + 1}.yaml\n" for i in range(40)}, "e40.yaml": t}, err="extends chain too long"),
        _v("extends_deep_base", files={"s.yaml": ext.format(target="b.yaml"), "b.yaml": _deep_flow(5000)},
           err="b.yaml:1"),
        _v("extends_many", files={"s.yaml": "extends: [" + ", ".join(["b.yaml"] * 300) + "]\n", "b.yaml": t},
           err="extends reads too many files"),
        _v("extends_diamonds", files={"s.yaml": "extends: [a0.yaml, a0.yaml]\n", **{
            f"a{i}.yaml": f"extends: [a{i + 1}.yaml, a{i + 1}.yaml]\n" for i in range(30)}, "a30.yaml": t},
           err="extends reads too many files"),
        Case("template_dev_zero", {"s.yaml": t.replace("{type: mlla, mlp_ratio: 2.0}", "z.yaml"),
                                   "z.yaml": ("link", "/dev/zero")}, ["validate", "--no-compile", "s.yaml"],
             err="refusing to read"),
        _v("template_loop", files={"s.yaml": t.replace("{type: mlla, mlp_ratio: 2.0}", "l.yaml"),
                                   "l.yaml": ("link", "l.yaml")}, err="Too many levels of symbolic links"),
        _v("template_fifo", files={"s.yaml": t.replace("{type: mlla, mlp_ratio: 2.0}", "f.yaml"), "f.yaml": FIFO},
           err="is a FIFO"),
        _v("template_dir", files={"s.yaml": t.replace("{type: mlla, mlp_ratio: 2.0}", "d.yaml"), "d.yaml": DIR},
           err="is a directory"),
        _v("template_deep", files={"s.yaml": t.replace("{type: mlla, mlp_ratio: 2.0}", "b.yaml"),
                                   "b.yaml": "body: " + "[" * 3000 + "]" * 3000 + "\n"}, err="nesting too deep"),
        Case("search_space_fifo", {"sp.yaml": FIFO}, ["search", "--space", "sp.yaml", "--budget", "1",
                                                     "--out", "{d}/out"], err="is a FIFO", torch=True),
    ]


def set_cases() -> list[Case]:
    t = TINY
    return [
        _v("set_deep_value", files={"s.yaml": t}, args=["--set", "meta=" + "[" * 5000 + "]" * 5000],
           err="<--set>:1: meta: cannot parse the value"),
        _v("set_deep_key", files={"s.yaml": t}, args=["--set", "+mixer." + ".".join(["a"] * 5000) + "=1"],
           err="key path too deep"),
        _v("set_depths_100k", files={"s.yaml": t}, args=["--set", "stages.depths=[100000,1]"],
           err="stages.depths.0: the depth of stage 0 is 100000"),
        _v("set_5000_stages", files={"s.yaml": t}, args=["--set", "stages.depths=[" + ",".join(["1"] * 5000) + "]"],
           err="the number of stages is 5000"),
        _v("set_control_char", files={"s.yaml": t}, args=["--set", "name=a\x07b"], err="control character U+0007"),
        _v("set_esc_key", files={"s.yaml": t}, args=["--set", "\x1b[2Jx=1"], err="\\x1b[2Jx"),
        _v("set_image_size_float", files={"s.yaml": t}, args=["--set", "image_size=1e9"], err="image_size"),
        _v("set_image_size_huge", files={"s.yaml": t}, args=["--set", "image_size=100000"],
           err="limit max_image_size = 4096"),
        _v("set_alias_bomb", files={"s.yaml": t}, args=["--set", "meta={a: &a [1,1,1,1,1,1,1,1,1,1], b: &b [" +
                                                        ",".join(["*a"] * 10) + "], c: &c [" + ",".join(["*b"] * 10)
                                                        + "], d: &d [" + ",".join(["*c"] * 10) + "], e: [" +
                                                        ",".join(["*d"] * 10) + "]}"], err="alias expansion"),
        _v("set_big_int", files={"s.yaml": t}, args=["--set", "num_classes=" + "9" * 40],
           err="num_classes"),
        _v("set_100k_list", files={"s.yaml": t}, args=["--set", "meta=[" + "0," * 60_000 + "]"],
           err="YAML nodes"),
        Case("image_size_flag_huge", {"s.yaml": t}, ["build", "s.yaml", "--image-size", "100000"],
             err="--image-size 100000 is more than allowed"),
        Case("image_size_flag_zero", {"s.yaml": t}, ["validate", "s.yaml", "--image-size", "0"],
             err="--image-size must be >= 1"),
    ]


def size_cases() -> list[Case]:
    t = TINY
    return [
        _v("depth_1m", files={"s.yaml": t.replace("depths: [1, 2]", "depths: [1000000, 1]")},
           err="s.yaml:6:34: stages.depths.0: the depth of stage 0 is 1000000, more than allowed (limit max_stage_depth"),
        _v("total_blocks", files={"s.yaml": t.replace("dims: [8, 16]", "embed_dim: 8").replace(
            "depths: [1, 2]", "depths: [200, 200, 200]").replace("heads: [2, 4]", "heads: 1")},
           err="the number of blocks (all stages) is 600"),
        _v("width_100k", files={"s.yaml": t.replace("dims: [8, 16]", "dims: [8, 100000]")},
           err="stages.dims.1: the width of stage 1 is 100000"),
        _v("embed_dim_doubling", files={"s.yaml": t.replace("dims: [8, 16]", "embed_dim: 10000")},
           err="stages.embed_dim: the width of stage 1 is 20000"),
        _v("heads_huge", files={"s.yaml": t.replace("heads: [2, 4]", "heads: 100000")},
           err="stages.heads: the heads of stage 0 is 100000"),
        _v("twenty_stages", files={"s.yaml": t.replace("dims: [8, 16]", "embed_dim: 8").replace(
            "depths: [1, 2]", "depths: [" + ", ".join(["1"] * 20) + "]").replace("heads: [2, 4]", "heads: 1")},
           err="the number of stages is 20"),
        _v("image_size_100k", files={"s.yaml": t.replace("image_size: 32", "image_size: 100000")},
           err="s.yaml:4:1: image_size: image_size is 100000"),
        _v("in_chans_huge", files={"s.yaml": t + "in_chans: 100000\n"}, err="in_chans is 100000"),
        _v("num_classes_huge", files={"s.yaml": t.replace("num_classes: 10", "num_classes: 1000000000")},
           err="num_classes is 1000000000"),
        _v("iso_depth_huge", files={"s.yaml": ISO.replace("depth: 1", "depth: 100000").replace("EXPR", "16")},
           err="depth: depth is 100000"),
        _v("iso_dim_huge", files={"s.yaml": ISO.replace("dim: 16", "dim: 10000000").replace("EXPR", "16")},
           err="dim: dim is 10000000"),
        _v("iso_patch_huge", files={"s.yaml": ISO.replace("patch_size: 4", "patch_size: 1000000").replace(
            "EXPR", "16")}, err="patch_size is 1000000"),
    ]


def expr_cases() -> list[Case]:
    """Template expressions are evaluated by the compiler (these cases import torch)."""
    def iso(expr: str) -> Dict[str, FileT]:
        return {"s.yaml": ISO.replace("EXPR", f"'{expr}'")}

    cases = [
        Case("expr_pow_tower", iso("(($dim ** 64) ** 64) ** 64"), ["validate", "s.yaml"], err="exceeds"),
        Case("expr_round_digits", iso("round($dim, -10**9)"), ["validate", "s.yaml"], err="round() digits"),
        Case("expr_100k_terms", iso("$dim" + " + 1" * 60_000), ["validate", "s.yaml"], err="characters long"),
        Case("expr_nested_parens", iso("(" * 3000 + "$dim" + ")" * 3000), ["validate", "s.yaml"],
             err="characters long"),
    ]
    return _torch(cases)


def memory_cases() -> list[Case]:
    # 4096 px in 4-pixel patches: 1M tokens of width 4096 = 16 GiB per activation
    big = ISO.replace("image_size: 32", "image_size: 4096").replace("dim: 16", "dim: 4096").replace("EXPR", "$dim")
    return _torch([
        Case("memory_4096px_wide", {"s.yaml": big}, ["build", "s.yaml"],
             err="s.yaml:3:1: image_size: building this model needs about"),
        Case("memory_validate_estimate", {"s.yaml": big}, ["validate", "s.yaml"], err="more than allowed (limit max_memory"),
        Case("memory_batch", {"s.yaml": TINY}, ["build", "s.yaml", "--batch-size", "1000000000"],
             err="needs about"),
        Case("memory_flag_small", {"s.yaml": TINY}, ["build", "s.yaml", "--max-memory", "1K"],
             err="limit max_memory = 1.0 KiB"),
    ])


def plugin_cases() -> list[Case]:
    t = TINY
    here = {"s.yaml": t + "plugins: [mark_mod]\n", "mark_mod.py": PLUGIN}
    on_path = {"s.yaml": t + "plugins: [mark_pkg]\n", "lib/mark_pkg.py": PLUGIN}
    return [
        _v("plugin_antigravity", files={"s.yaml": t + "plugins: [antigravity]\n"}, err="s.yaml:11:1: plugins: this spec"
                                                                                     " imports Python code"),
        Case("plugin_this_json", {"s.yaml": t + "plugins: [this]\n"}, ["build", "s.yaml", "--json"],
             err="--allow-plugins", out_empty=True),
        _v("plugin_next_to_spec", files=here, err="is not on the Python path"),
        _v("plugin_next_to_spec_allowed", files=here, args=["--allow-plugins"], err="PYTHONPATH="),
        _v("plugin_on_path_no_optin", files=on_path, env={"PYTHONPATH": "{d}/lib"}, err="ARCHDSL_ALLOW_PLUGINS=1"),
        _v("plugin_on_path_flag", files=on_path, env={"PYTHONPATH": "{d}/lib"}, args=["--allow-plugins"],
           expect=(0,), marker=True),
        _v("plugin_on_path_env", files=on_path, env={"PYTHONPATH": "{d}/lib", "ARCHDSL_ALLOW_PLUGINS": "1"},
           expect=(0,), marker=True),
        _v("plugin_raises", files={"s.yaml": t + "plugins: [bad_pkg]\n", "lib/bad_pkg.py": "1 / 0\n"},
           env={"PYTHONPATH": "{d}/lib"}, args=["--allow-plugins"],
           err="plugins.0: plugin module 'bad_pkg' failed while importing: ZeroDivisionError"),
        _v("plugin_sys_exit", files={"s.yaml": t + "plugins: [exit_pkg]\n", "lib/exit_pkg.py": "raise SystemExit(3)\n"},
           env={"PYTHONPATH": "{d}/lib"}, args=["--allow-plugins"], err="failed while importing: SystemExit"),
        _v("plugin_os_system", files={"s.yaml": t + "plugins: [os.system]\n"}, err="--allow-plugins"),
        _v("plugin_in_base", files={"s.yaml": "extends: b.yaml\n", "b.yaml": t + "plugins: [mark_pkg]\n",
                                    "lib/mark_pkg.py": PLUGIN}, env={"PYTHONPATH": "{d}/lib"},
           err="b.yaml:11:1: plugins"),
        _v("plugin_missing_module", files={"s.yaml": t + "plugins: [no_such_mod_zz]\n"},
           err="cannot import plugin module 'no_such_mod_zz'"),
        _v("plugin_python_tag_in_meta", files={"s.yaml": t + "meta: !!python/name:os.system\n"},
           err="could not determine a constructor"),
    ]


def cli_cases() -> list[Case]:
    t = TINY
    ckpt = {"s.yaml": t}
    iw = ["import-weights", "--from", "mlla", "c.pt", "--spec", "s.yaml", "--out"]
    return [
        Case("limit_unknown", {"s.yaml": t}, ["validate", "s.yaml", "--limit", "max_stage_dpth=3"],
             err="did you mean 'max_stage_depth'"),
        Case("limit_bad_value", {"s.yaml": t}, ["validate", "s.yaml", "--limit", "max_stage_depth=abc"],
             err="--limit max_stage_depth"),
        _v("limit_env_junk", files={"s.yaml": t}, env={"ARCHDSL_MAX_FILE_BYTES": "lots"},
           err="ARCHDSL_MAX_FILE_BYTES"),
        _v("limit_raised", files={"s.yaml": t.replace("depths: [1, 2]", "depths: [300, 1]")},
           args=["--limit", "max_stage_depth=300"], expect=(0,)),
        Case("schema_out_dir", {"d": DIR}, ["schema", "--out", "d"], err="cannot write d"),
        Case("iw_out_is_dir", {**ckpt, "c.pt": b"", "o": DIR}, iw + ["o"], err="is a directory"),
        Case("iw_out_under_file", {**ckpt, "c.pt": b"", "f": "x"}, iw + ["f/x.pt"], err="is not a directory"),
    ] + _torch([
        Case("iw_truncated", {**ckpt, "c.pt": b"PK\x03\x04" + b"\x00" * 100}, iw + ["o.pt"],
             err="truncated or not a PyTorch checkpoint"),
        Case("iw_junk", {**ckpt, "c.pt": b"hello world" * 10}, iw + ["o.pt"], err="truncated or not a PyTorch"),
        Case("iw_empty", {**ckpt, "c.pt": b""}, iw + ["o.pt"], err="truncated or not a PyTorch checkpoint"),
        Case("iw_fifo", {**ckpt, "c.pt": FIFO}, iw + ["o.pt"], err="not a regular file"),
        Case("iw_code_pickle", {**ckpt, "c.pt": _checkpoint_bytes()}, iw + ["o.pt"],
             err="holds Python objects other than tensors (refused: only weights are loaded)"),
        Case("build_weights_junk", {"s.yaml": t, "w.pt": b"junk"}, ["build", "s.yaml", "--weights", "w.pt"],
             err="truncated or not a PyTorch checkpoint"),
    ])


def all_cases() -> list[Case]:
    cases = (yaml_cases() + file_cases() + set_cases() + size_cases() + expr_cases() + memory_cases()
             + plugin_cases() + cli_cases())
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be distinct"
    return cases
