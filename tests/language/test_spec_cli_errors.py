"""At least 25 distinct malformed specs through the CLI: exit 2, FILE:LINE, the key path, no traceback."""
import pytest
from spec_helpers import TINY, write

from archdsl.cli import main

BLK = TINY.replace("block: {type: mlla, mlp_ratio: 2.0}", "block: t") + "blocks:\n  t:\n    body:\n"  # line 19 on

# id -> (files {name: text} with the spec as "s.yaml", expected "LINE" or "LINE:COL", key path, message part)
CASES = {
    # ---------------------------------------------------------------- YAML level
    "yaml_syntax": ({"s.yaml": TINY.replace("dims: [8, 16]", "dims: [8, 16")}, "8", None, "invalid YAML"),
    "duplicate_key": ({"s.yaml": TINY + "stem: conv_stem\n"}, "16:1", "stem", "duplicate key 'stem' (first at line 5)"),
    "top_level_list": ({"s.yaml": "- name: x\n"}, "1:1", None, "top level of a spec must be a mapping"),
    "empty_file": ({"s.yaml": "# nothing here\n"}, "1:1", None, "got an empty document"),
    "python_tag": ({"s.yaml": TINY + "meta: !!python/object/apply:os.getcwd []\n"}, "16:7", None,
                   "could not determine a constructor"),
    "tab_indent": ({"s.yaml": TINY.replace("  depths:", "\tdepths:")}, "8", None, "invalid YAML"),
    # ---------------------------------------------------------------- schema level
    "unknown_top_key": ({"s.yaml": TINY + "mixr: softmax_attention\n"}, "16:1", "mixr", "did you mean 'mixer'?"),
    "unknown_stage_key": ({"s.yaml": TINY.replace("  depths:", "  depht:")}, "8:3", "stages.depht",
                          "did you mean 'depths'?"),
    "string_for_int": ({"s.yaml": TINY.replace("num_classes: 10", "num_classes: ten")}, "4:1", "num_classes",
                       "expected an integer, got 'ten'"),
    "drop_path_range": ({"s.yaml": TINY + "drop_path: 1.5\n"}, "16:1", "drop_path", "must be < 1.0, got 1.5"),
    "bad_layout": ({"s.yaml": TINY.replace("layout: hierarchical", "layout: isotropc")}, "2:1", "layout",
                   "did you mean 'isotropic'?"),
    "heads_length": ({"s.yaml": TINY.replace("heads: [2, 4]", "heads: [2]")}, "9:3", "stages.heads",
                     "expected 2 values (one per stage), got 1"),
    "dims_length": ({"s.yaml": TINY.replace("dims: [8, 16]", "dims: [8, 16, 32]")}, "7:3", "stages.dims",
                    "expected 2 values"),
    "dims_and_embed_dim": ({"s.yaml": TINY.replace("  dims: [8, 16]\n", "  dims: [8, 16]\n  embed_dim: 8\n")},
                           "8:3", "stages.embed_dim", "not both"),
    "zero_depth": ({"s.yaml": TINY.replace("depths: [1, 2]", "depths: [1, 0]")}, "8:15", "stages.depths.1",
                   "must be >= 1, got 0"),
    "isotropic_field": ({"s.yaml": TINY + "patch_size: 16\n"}, "16:1", "patch_size", "belongs to the isotropic"),
    "missing_block": ({"s.yaml": TINY.replace("block: {type: mlla, mlp_ratio: 2.0}\n", "")}, "1:1", "block",
                      "missing required key 'block'"),
    "ref_without_type": ({"s.yaml": TINY.replace("head: norm_pool_linear", "head: {drop: 0.1}")}, "15:1", "head",
                         "needs a 'type' key"),
    "override_out_of_range": ({"s.yaml": TINY.replace("  heads: [2, 4]\n", "  heads: [2, 4]\n  override:\n"
                                                      "    5: {block: mlla}\n")}, "11:5", "stages.override.5",
                              "stage index 5 out of range"),
    "plugin_missing": ({"s.yaml": TINY + "plugins: [no_such_pkg_xyz.mixers]\n"}, "16:11", "plugins.0",
                       "cannot import plugin module 'no_such_pkg_xyz.mixers'"),
    # ---------------------------------------------------------------- extends
    "extends_missing": ({"s.yaml": "extends: base.yaml\nname: x\n"}, "1:1", "extends",
                        "cannot extend 'base.yaml': file not found"),
    "extends_cycle": ({"s.yaml": "extends: b.yaml\n", "b.yaml": "extends: s.yaml\n"}, None, "extends",
                      "extends cycle:"),
    "error_in_base": ({"s.yaml": "extends: b.yaml\nname: x\n", "b.yaml": TINY.replace("depths: [1, 2]",
                                                                                      "depths: [1, 2, 3]")},
                      "b.yaml:7:3", "stages.dims", "expected 3 values"),
    # ---------------------------------------------------------------- templates
    "unknown_block": ({"s.yaml": TINY.replace("type: mlla,", "type: mlaa,")}, "11:1", "block",
                      "unknown block 'mlaa' (did you mean 'mlla'?)"),
    "branch_bad_merge": ({"s.yaml": BLK + "      - branch: {a: gelu, b: silu, merge: times}\n"}, "19", "merge",
                         "expected one of mul, add, concat"),
    "node_two_keys": ({"s.yaml": BLK + "      - {linear: 8, gelu: null}\n"}, "19:9", "blocks.t.body.0",
                      "exactly one primitive or combinator key"),
    "template_unknown_key": ({"s.yaml": BLK.replace("    body:\n", "    params: {}\n    bodyy: gelu\n    body:\n")
                              + "      - gelu\n"}, "19:5", "blocks.t.bodyy", "did you mean 'body'?"),
    "block_option_typo": ({"s.yaml": TINY.replace("mlp_ratio: 2.0", "mlp_ration: 2.0")}, "11:21", "block.mlp_ration",
                          "unknown option 'mlp_ration' for block 'mlla' (did you mean 'mlp_ratio'?)"),
    # ---------------------------------------------------------------- compile level (the compiler on meta)
    "unknown_mixer": ({"s.yaml": TINY.replace("type: linear_attention", "type: linear_atention")}, "13:3",
                      "mixer.type", "did you mean 'linear_attention'?"),
    "heads_not_dividing": ({"s.yaml": TINY.replace("heads: [2, 4]", "heads: [3, 4]")}, "9", "stages.heads",
                           "not divisible"),
    "mixer_option_typo": ({"s.yaml": TINY.replace("  positional:", "  normalise: true\n  positional:")}, "14:3",
                          "mixer.normalise", "did you mean 'normalize'?"),
    "unknown_template_variable": ({"s.yaml": BLK + "      - residual: [{linear: $dimm}]\n"}, "19", "blocks.t.body.0",
                                  "unknown template variable '$dimm' (did you mean '$dim'?)"),
    "concat_width_mismatch": ({"s.yaml": BLK + "      - residual:\n          branch: {a: {linear: 4}, b: {linear: 8},"
                                               " merge: concat}\n"}, "19", "blocks.t.body.0.residual",
                              "changes width 8 -> 12"),
    "add_width_mismatch": ({"s.yaml": BLK + "      - residual:\n          branch: {a: {linear: 4}, b: {linear: 8},"
                                            " merge: add}\n"}, "20", "blocks.t.body.0.residual.branch",
                           "needs equal widths"),
    "unknown_primitive": ({"s.yaml": BLK + "      - residual: [{lineer: 8}]\n"}, "19", "blocks.t.body.0.residual.0",
                          "unknown primitive 'lineer' (did you mean 'linear'?)"),
    "unknown_stem": ({"s.yaml": TINY.replace("stem: mlla_stem", "stem: mlla_stm")}, "5:1", "stem",
                     "did you mean 'mlla_stem'?"),
    "stem_option_typo": ({"s.yaml": TINY.replace("stem: mlla_stem", "stem: {type: mlla_stem, patch: 3}")}, "5",
                         "stem.patch", "did you mean 'patch_size'?"),
}


def _run(tmp_path, capsys, files, argv_head, extra=()):
    for name, text in files.items():
        write(tmp_path, name, text)
    spec = tmp_path / "s.yaml"
    rc = main([*argv_head, str(spec), *extra])
    out, err = capsys.readouterr()
    return rc, out, err, spec


@pytest.mark.parametrize("case", sorted(CASES), ids=sorted(CASES))
def test_validate_malformed(tmp_path, capsys, case):
    files, line, key, part = CASES[case]
    rc, out, err, spec = _run(tmp_path, capsys, files, ["validate"])
    assert rc == 2, (out, err)
    assert "Traceback" not in err and out == ""
    assert len(err.strip().splitlines()) == 1, err
    if line is not None:
        where = f"{tmp_path}/{line}" if line.startswith("b.yaml") else f"{spec}:{line}"
        assert where in err, err
    else:
        assert f"{tmp_path}/" in err and ".yaml:" in err, err
    if key is not None:
        assert key in err, err
    assert part in err, err


def test_at_least_25_distinct_cases():
    assert len(CASES) >= 25
    assert len({files["s.yaml"] for files, *_ in CASES.values()}) == len(CASES)


@pytest.mark.parametrize("case", ["heads_length", "unknown_mixer", "yaml_syntax", "unknown_template_variable",
                                  "concat_width_mismatch", "extends_cycle"])
def test_build_malformed(tmp_path, capsys, case):
    files, line, key, part = CASES[case]
    rc, out, err, spec = _run(tmp_path, capsys, files, ["build"], ["--json"])
    assert rc == 2 and "Traceback" not in err and out == ""
    assert f"{tmp_path}/" in err and part in err, err


def test_validate_set_errors(tmp_path, capsys):
    rc, out, err, _ = _run(tmp_path, capsys, {"s.yaml": TINY}, ["validate"], ["--set", "stages.dpths=[1,1]"])
    assert rc == 2 and err.strip() == ("archdsl validate: error: <--set>:1: stages.dpths: unknown key 'stages.dpths' "
                                       "(did you mean 'stages.depths'?)")


def test_validate_ok_and_mixed(tmp_path, capsys):
    good = write(tmp_path, "good.yaml", TINY)
    bad = write(tmp_path, "bad.yaml", TINY.replace("heads: [2, 4]", "heads: [2]"))
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == f"ok: {good} (tiny)\n"
    assert main(["validate", str(good), str(bad), str(good)]) == 2
    out, err = capsys.readouterr()
    assert out == f"ok: {good} (tiny)\nok: {good} (tiny)\n"
    assert err.count("error:") == 1 and f"{bad}:9:3: stages.heads" in err


def test_missing_spec_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/nope.yaml: file not found" in err and "Traceback" not in err


def test_validate_flags(tmp_path, capsys):
    good = write(tmp_path, "good.yaml", TINY)
    assert main(["validate", str(good), "--image-size", "0"]) == 2
    assert capsys.readouterr().err.strip() == "archdsl validate: error: --image-size must be >= 1, got 0"
    # --no-compile: only the language; a compile-level problem passes, a schema problem does not
    bad_mixer = write(tmp_path, "m.yaml", TINY.replace("type: linear_attention", "type: nope_mixer"))
    assert main(["validate", "--no-compile", str(bad_mixer)]) == 0
    assert main(["validate", str(bad_mixer)]) == 2
    capsys.readouterr()
    assert main(["validate", str(good), "--set", "+mixer.normalize=false", "--image-size", "48"]) == 0
    assert capsys.readouterr().out == f"ok: {good} (tiny)\n"
