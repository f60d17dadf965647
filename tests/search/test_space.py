"""Search-space files: markers, conditional fields, per-stage choices, located errors."""
from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

from archdsl.errors import SpecError
from archdsl.search.space import default_space_path, load_space

HERE = Path(__file__).parent
BASE = (HERE / "tiny_base.yaml").resolve()


def _space(tmp_path, body: str, name: str = "space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(f"base: {BASE}\n" + textwrap.dedent(body))
    return p


def _sample(space, params):
    return space.sample(optuna.trial.FixedTrial(params))


def test_choice_int_float_and_conditions(tmp_path):
    sp = load_space(_space(tmp_path, """
        space:
          mixer.type: {choice: [linear_attention, softmax_attention]}
          mixer.shortcut: {choice: [false, true], when: {mixer.type: linear_attention}}
          stages.dims: {choice: [[8, 16], [16, 32]]}
          stages.depths.1: {int: [1, 5], step: 2}
          train.lr: {float: [1.0e-4, 1.0e-2], log: true}
        """))
    spec, train = _sample(sp, {"mixer.type": "linear_attention", "mixer.shortcut": True,
                               "stages.dims": "[16,32]", "stages.depths.1": 3, "train.lr": 0.003})
    assert spec["mixer"] == {"type": "linear_attention", "shortcut": True}
    assert spec["stages"] == {"dims": [16, 32], "depths": [1, 3], "heads": [1, 2]}
    assert train == {"lr": 0.003}
    # the condition is false: the field is not sampled and not in the spec
    spec, _ = _sample(sp, {"mixer.type": "softmax_attention", "stages.dims": "[8,16]", "stages.depths.1": 1,
                           "train.lr": 0.001})
    assert spec["mixer"] == {"type": "softmax_attention"}
    assert sp.base["stages"]["dims"] == [8, 16] and sp.base["mixer"] == {"type": "linear_attention"}


def test_condition_removes_a_base_field_and_ranges_are_respected(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(BASE.read_text().replace("mixer: {type: linear_attention}",
                                             "mixer: {type: linear_attention, normalize: false}"))
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent("""
        base: base.yaml
        space:
          mixer.type: {choice: [linear_attention, softmax_attention]}
          mixer.normalize: {choice: [true, false], when: {mixer.type: [linear_attention]}}
          stages.depths.0: {int: [1, 3]}
          drop_rate: {float: [0.0, 0.2], step: 0.1}
        """))
    sp = load_space(p)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        spec, _ = sp.sample(trial)
        study.tell(trial, 0.0)
        kind = spec["mixer"]["type"]
        seen.add(kind)
        assert ("normalize" in spec["mixer"]) == (kind == "linear_attention")
        assert ("mixer.normalize" in trial.params) == (kind == "linear_attention")
        assert spec["stages"]["depths"][0] in (1, 2, 3)
        assert spec["drop_rate"] in (0.0, 0.1, 0.2)
    assert seen == {"linear_attention", "softmax_attention"}


def test_bare_component_name_becomes_a_mapping(tmp_path):
    sp = load_space(_space(tmp_path, """
        space:
          head.type: {choice: [pool_linear]}
        """))
    spec, _ = _sample(sp, {"head.type": "pool_linear"})
    assert spec["head"] == {"type": "pool_linear"}


def test_sampled_spec_validates_and_builds(tmp_path):
    from archdsl.compiler import build_model
    from archdsl.language import load_spec_dict

    sp = load_space(HERE / "tiny_space.yaml")
    spec, _ = _sample(sp, {"mixer.type": "softmax_attention", "stages.dims": "[16,32]", "stages.depths.1": 2})
    model = build_model(load_spec_dict(spec, "<trial>"))
    assert len(model.stages[1].blocks) == 2
    import torch

    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


ERRORS = [
    ("colour: 1\n", "space.yaml:2:1: colour: unknown key 'colour' in a search space; expected one of base, "
     "extends, space, objectives, constraints, train, throughput, data, name, description"),
    ("space:\n  mixer.type: [a, b]\n", "space.yaml:3:3: space.mixer.type: expected a marker {choice: [...]}, "
     "{int: [lo, hi]} or {float: [lo, hi]}, got ['a', 'b']"),
    ("space:\n  stages.depths.0: {int: [3, 1]}\n", "space.yaml:3:21: space.stages.depths.0.int: low 3 is greater "
     "than high 1"),
    ("space:\n  stages.depths.5: {int: [1, 2]}\n", "space.yaml:3:3: space.stages.depths.5: 'stages.depths.5': "
     "index 5 is out of range for 'stages.depths' (length 2)"),
    ("space:\n  stagez.dims: {choice: [[8, 16]]}\n", "space.yaml:3:3: space.stagez.dims: 'stagez.dims': "
     "'stagez' is not a field of the spec (did you mean 'stages'?)"),
    ("space:\n  mixer.shortcut: {choice: [false, true], when: {mixer.type: linear_attention}}\n"
     "  mixer.type: {choice: [linear_attention]}\n",
     "space.yaml:3:50: space.mixer.shortcut.when.mixer.type: when: 'mixer.type' is sampled after "
     "'mixer.shortcut'; move 'mixer.type' above it"),
    ("space:\n  mixer.type: {choice: [a], stpe: 2}\n", "space.yaml:3:29: space.mixer.type.stpe: unknown marker "
     "key 'stpe' (did you mean 'step'?)"),
    ("objectives: {acuracy: maximize}\n", "space.yaml:2:14: objectives.acuracy: unknown objective 'acuracy' "
     "(did you mean 'accuracy'?); known: accuracy, throughput, params, macs"),
    ("constraints: {params_max: lots}\n", "space.yaml:2:15: constraints.params_max: constraint params_max must "
     "be a number, got 'lots'"),
    ("train: {epoch: 2}\n", "space.yaml:2:9: train.epoch: unknown training setting 'epoch' (did you mean "
     "'epochs'?); known: dataset, epochs, batch_size, lr, lr_base, lr_base_size, opt, opt_eps, opt_betas, "
     "weight_decay, sched, warmup_epochs, warmup_lr_ratio, min_lr_ratio, label_smoothing, mixup, cutmix, "
     "mixup_prob, mixup_switch_prob, auto_augment, color_jitter, reprob, remode, hflip, crop_padding, scale, "
     "interpolation, crop_pct, drop_path, grad_clip, ema, ema_decay, seed, amp, channels_last, compile, "
     "accum_steps, sync_bn, workers, eval_batch_size, max_steps_per_epoch, checkpoint_every"),
    ("throughput: {optimise: true}\n", "space.yaml:2:14: throughput.optimise: unknown throughput setting "
     "'optimise' (did you mean 'optimize'?); known: batch_size, warmup, iters, min_time, dtype, optimize"),
    ("throughput: {optimize: 1}\n", "space.yaml:2:14: throughput.optimize: throughput.optimize must be true or "
     "false (archdsl.optimize before timing); got 1"),
    ("throughput: {dtype: bf16}\n", "space.yaml:2:14: throughput.dtype: throughput.dtype must be one of float32, "
     "bfloat16, float16; got 'bf16'"),
]


@pytest.mark.parametrize("body, message", ERRORS, ids=[f"err{i}" for i in range(len(ERRORS))])
def test_located_errors(tmp_path, monkeypatch, body, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(f"base: {BASE}\n" + body)
    with pytest.raises(SpecError) as e:
        load_space("space.yaml")
    assert str(e.value) == message


def test_missing_base_and_extends(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("a.yaml").write_text("space: {}\n")
    with pytest.raises(SpecError, match=r"^a.yaml:1:1: a search space needs 'base:'"):
        load_space("a.yaml")
    Path("b.yaml").write_text("extends: nothere.yaml\n")
    with pytest.raises(SpecError, match=r"^b.yaml:1:1: extends: cannot extend 'nothere.yaml': file not found \(nothere.yaml\)"):
        load_space("b.yaml")


def test_base_spec_errors_are_located_in_the_base(tmp_path):
    (tmp_path / "base.yaml").write_text("name: x\nlayout: hierarchical\nstages: {depths: [1], dimz: [8]}\n")
    (tmp_path / "s.yaml").write_text("base: base.yaml\n")
    with pytest.raises(SpecError) as e:
        load_space(tmp_path / "s.yaml")
    assert "base.yaml:3" in str(e.value) and "dimz" in str(e.value)


def test_root_example_extends_the_packaged_default():
    root = HERE.parents[1] / "search" / "default.yaml"
    a, b = load_space(root), load_space(default_space_path())
    assert [p.name for p in a.params] == [p.name for p in b.params]
    assert a.base == b.base and a.train == b.train and a.objectives == b.objectives
    assert {"mixer.type", "block", "mixer.input_gate", "mixer.forget_gate", "mixer.shortcut", "mixer.normalize",
            "stages.heads", "mixer.positional", "stages.dims"} <= {p.name for p in b.params}
    assert set(b.params[0].choices) == {"softmax_attention", "linear_attention", "selective_ssm"}
    assert set(next(p for p in b.params if p.name == "block").choices) == {"transformer", "mamba", "mlla"}


def test_default_space_samples_compile():
    """Random points of the shipped default space are valid specs that compile (on meta: no weights)."""
    import torch

    from archdsl.compiler import build_model
    from archdsl.language import load_spec_dict

    sp = load_space(default_space_path())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    kinds = set()
    for _ in range(15):
        trial = study.ask()
        spec, _ = sp.sample(trial)
        study.tell(trial, 0.0)
        model = build_model(load_spec_dict(spec, "<default>"), device="meta")
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        assert linears[-1].out_features == 10                      # the classifier
        kinds.add((spec["mixer"]["type"], spec["block"]))
        if spec["mixer"]["type"] == "selective_ssm":
            assert set(spec["mixer"]) == {"type", "d_state"}
    assert len({m for m, _ in kinds}) == 3 and len({b for _, b in kinds}) == 3


def test_space_extends_follows_the_language(tmp_path, monkeypatch):
    """A space's extends: is the language's: a list of bases, null deletes an inherited marker, and
    base: is relative to the file that wrote it."""
    monkeypatch.chdir(tmp_path)
    Path("sub").mkdir()
    Path("sub/base.yaml").write_text(BASE.read_text())
    Path("sub/a.yaml").write_text("base: base.yaml\nspace:\n  drop_path: {float: [0.0, 0.1]}\n"
                                  "  mixer.type: {choice: [linear_attention, softmax_attention]}\n")
    Path("b.yaml").write_text("constraints: {params_max: 1e6}\n")
    Path("c.yaml").write_text("extends: [sub/a.yaml, b.yaml]\nspace: {drop_path: null}\n")
    space = load_space("c.yaml")
    assert [p.name for p in space.params] == ["mixer.type"]
    assert space.constraints == {"params_max": 1e6}
    assert space.base_file == (tmp_path / "sub/base.yaml").resolve()
