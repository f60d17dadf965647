"""`archdsl search` end to end on a tiny space: resume, failures, constraints, export, Ctrl-C, pruning."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from archdsl.compiler import optimize
from archdsl.search.runner import run_search
from archdsl.search.study import budget_count

HERE = Path(__file__).parent
SPACE = HERE / "tiny_space.yaml"


def _run(out, **kw):
    kw.setdefault("space", str(SPACE))
    kw.setdefault("progress", False)
    kw.setdefault("min_accuracy", 0.0)      # 3 steps of training stay near chance: no floor here
    return run_search(out_dir=str(out), log=lambda s: None, **kw)


def _study(out, name="tiny_space"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{Path(out).resolve() / 'study.db'}")


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_resume_adds_only_what_is_missing_and_exports(tmp_path):
    s1 = _run(tmp_path, budget=3)
    assert s1["loop"].ran == [0, 1, 2]
    s2 = _run(tmp_path, budget=5)
    assert s2["loop"].ran == [3, 4]
    study = _study(tmp_path)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert _run(tmp_path, budget=5)["loop"].ran == []            # nothing missing

    rows = _rows(tmp_path / "trials.csv")
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3, 4]
    for r, t in zip(rows, study.trials):
        assert float(r["accuracy"]) == pytest.approx(t.values[0], abs=1e-6)
        assert float(r["images_per_s"]) == pytest.approx(t.values[1], rel=1e-6)
        assert int(r["params"]) == t.user_attrs["params"]
    front = {int(r["number"]) for r in _rows(tmp_path / "pareto.csv")}
    assert front == {t.number for t in s2["pareto"]} and front
    # a front point is dominated by no trial, and every other trial is dominated by a front point
    vals = {t.number: t.values for t in study.trials}
    dom = lambda a, b: a[0] >= b[0] and a[1] >= b[1] and a != b          # noqa: E731
    assert not any(dom(vals[o], vals[f]) for f in front for o in vals)
    assert all(any(dom(vals[f], vals[o]) or vals[f] == vals[o] for f in front) for o in vals if o not in front)
    assert sorted(p.name for p in (tmp_path / "pareto").iterdir()) == sorted(f"trial_{n}.yaml" for n in front)
    png = (tmp_path / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    _check_rebuild(tmp_path, s2["pareto"])


def _check_rebuild(out, front):
    """Each exported Pareto YAML builds the trial's model (same parameter count, same choices)."""
    from archdsl.compiler import build_model
    from archdsl.language import load_spec

    for t in front:
        spec = load_spec(out / "pareto" / f"trial_{t.number}.yaml")
        model = build_model(spec)
        assert sum(p.numel() for p in model.parameters()) == t.user_attrs["params"]
        assert spec.mixer["type"] == t.params["mixer.type"]
        assert spec.stages.dims == json.loads(t.params["stages.dims"])
        assert model(torch.randn(1, 3, 16, 16)).shape == (1, 10)
    # and through the CLI, from another directory
    import subprocess
    import sys

    t = front[0]
    proc = subprocess.run([sys.executable, "-m", "archdsl", "build", str(out / "pareto" / f"trial_{t.number}.yaml"),
                           "--json"], capture_output=True, text=True, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert (got["params"], got["macs"]) == (t.user_attrs["params"], t.user_attrs["macs"])


def _nan_on(numbers):
    """A build hook: the default compile, plus a forward hook that turns the logits into NaN."""
    from archdsl.search.objective import _default_build

    def build(spec_dict, source):
        spec, model = _default_build(spec_dict, source)
        if any(f"trial {n}>" in source for n in numbers):
            model.register_forward_hook(lambda m, i, o: o * float("nan"))
        return spec, model

    return build


def test_nan_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path):
    s = _run(tmp_path, budget=2, build=_nan_on([0]))
    assert s["loop"].failed == [0] and s["loop"].ran == [0, 1]
    study = _study(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    reason = study.trials[0].user_attrs["fail_reason"]
    assert reason.startswith("nan loss: non-finite training loss (nan) at epoch 1 step 1")
    assert budget_count(study) == 2                       # a failed trial counts toward the budget
    assert _rows(tmp_path / "trials.csv")[0]["fail_reason"] == reason


def test_constraint_violations_are_recorded_not_trained(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.read_text().replace("base: tiny_base.yaml", f"base: {HERE / 'tiny_base.yaml'}")
                     + "constraints: {params_max: 20000}\n")
    s = _run(tmp_path, space=str(space), budget=3, sampler="random", seed=0)
    study = _study(tmp_path, "space")
    assert len(study.trials) == 3 and all(t.state == TrialState.COMPLETE for t in study.trials)
    infeasible = [t for t in study.trials if t.user_attrs["params"] > 20000]
    feasible = [t for t in study.trials if t.user_attrs["params"] <= 20000]
    assert infeasible and feasible, [t.user_attrs["params"] for t in study.trials]
    for t in infeasible:
        assert t.user_attrs["feasible"] is False and t.user_attrs["constraints"][0] == t.user_attrs["params"] - 20000
        assert "train_seconds" not in t.user_attrs and t.values == [0.0, 0.0]
    for t in feasible:
        assert t.user_attrs["feasible"] is True and t.user_attrs["constraints"][0] <= 0
    assert {t.number for t in s["pareto"]} <= {t.number for t in feasible}


def test_ctrl_c_keeps_completed_trials_and_resume_reruns_the_interrupted_one(tmp_path):
    from archdsl.search.objective import _default_build

    def build(spec_dict, source):
        if "trial 1>" in source:
            raise KeyboardInterrupt
        return _default_build(spec_dict, source)

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, budget=3, build=build)
    study = _study(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert study.trials[1].user_attrs["interrupted"] is True
    assert budget_count(study) == 1
    assert [r["state"] for r in _rows(tmp_path / "trials.csv")] == ["COMPLETE", "INTERRUPTED"]
    s = _run(tmp_path, budget=3)
    assert s["loop"].ran == [2, 3]
    assert budget_count(_study(tmp_path)) == 3


def test_single_objective_reports_each_epoch_and_can_prune(tmp_path):
    s = _run(tmp_path, budget=2, objectives=["accuracy"], epochs=2, pruner="median")
    study = _study(tmp_path)
    assert [d.name for d in study.directions] == ["MAXIMIZE"]
    for t in study.trials:
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.user_attrs["epoch_accuracy"] == [t.intermediate_values[1], t.intermediate_values[2]]
        assert t.values == [t.intermediate_values[2]]
    assert len(s["pareto"]) >= 1
    with pytest.raises(ValueError, match="study 'tiny_space' exists with directions"):
        _run(tmp_path, budget=3)                          # the same study, other objectives


def test_pruner_needs_a_single_objective(tmp_path):
    with pytest.raises(ValueError, match=r"--pruner median needs a single objective"):
        _run(tmp_path, budget=1, pruner="median")


def test_cli_runs_and_prints_the_table(tmp_path, capsys):
    from archdsl.cli import main

    rc = main(["search", "--space", str(SPACE), "--budget", "1", "--out", str(tmp_path), "--no-progress",
               "--min-accuracy", "0"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Pareto front of 'tiny_space'" in out and "pareto/trial_0.yaml" in out
    db = tmp_path.resolve() / "study.db"
    assert f"open it with: optuna-dashboard sqlite:///{db}" in out.replace("\n", "")
    assert _study(tmp_path).metric_names == ["accuracy", "throughput"]


def test_cli_bad_space_exit_2(tmp_path, capsys):
    from archdsl.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {HERE / 'tiny_base.yaml'}\nspace:\n  mixer.type: {{choise: [a]}}\n")
    rc = main(["search", "--space", str(bad), "--budget", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"archdsl search: error: {bad}:3:3: space.mixer.type: expected a marker")


def test_nsga2_sampler_with_constraints(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.read_text().replace("base: tiny_base.yaml", f"base: {HERE / 'tiny_base.yaml'}")
                     + "constraints: {params_max: 1.0e+6}\n")
    s = _run(tmp_path, space=str(space), budget=2, sampler="nsga2")
    assert s["loop"].ran == [0, 1]
    study = _study(tmp_path, "space")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for t in study.trials:
        assert t.user_attrs["constraints"] == [t.user_attrs["params"] - 1.0e6]
        if hasattr(t, "constraints"):          # Optuna >= 5 keeps its own record (Trial.set_constraint)
            assert t.constraints == {"params_max": t.user_attrs["params"] - 1.0e6}


def test_journal_storage_and_timeout(tmp_path):
    url = f"journal:{tmp_path / 'study.log'}"
    s = _run(tmp_path, budget=1, storage=url)
    assert s["loop"].ran == [0] and s["loop"].stopped_by == "budget"
    assert _run(tmp_path, budget=1, storage=url)["loop"].ran == []       # resumed from the journal
    s = _run(tmp_path, budget=5, storage=url, timeout=0)
    assert s["loop"].ran == [] and s["loop"].stopped_by == "timeout"
    assert (tmp_path / "trials.csv").read_text().count("\n") == 2         # header + trial 0


def test_a_dead_workers_trial_is_failed_as_stale_and_replaced(tmp_path, monkeypatch):
    import time

    from archdsl.search import study as st

    monkeypatch.setattr(st, "HEARTBEAT_S", 1)            # grace period 4 s instead of 80 s
    url = st.local_storage_url(tmp_path)
    storage = st.make_storage(url)
    dead = optuna.create_study(storage=storage, study_name="tiny_space", directions=["maximize", "maximize"])
    trial = dead.ask()                                    # a worker that asked, then died
    storage.record_heartbeat(trial._trial_id)
    time.sleep(6.0)           # > grace 4 s; SQLite's now() (used for heartbeats) has 1 s resolution
    s = _run(tmp_path, budget=2)
    study = _study(tmp_path)
    assert study.trials[0].state == TrialState.FAIL and "fail_reason" not in study.trials[0].user_attrs
    assert s["loop"].ran == [1, 2] and budget_count(study) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without a GPU")
def test_cli_cuda_without_gpu_exit_2(tmp_path, capsys):
    from archdsl.cli import main

    rc = main(["search", "--space", str(SPACE), "--device", "cuda", "--budget", "1", "--out", str(tmp_path)])
    assert rc == 2
    assert capsys.readouterr().err == ("archdsl search: error: --device cuda was asked for, but "
                                       "torch.cuda.is_available() is False\n")


def test_throughput_measured_the_way_it_is_deployed(tmp_path, monkeypatch):
    """`throughput: {optimize: true}` times archdsl.optimize(model); the trial records the setting."""
    from archdsl.search import objective

    seen = []
    monkeypatch.setattr(objective, "optimize", lambda m, for_inference: seen.append(m) or optimize(m, for_inference))
    space = tmp_path / "tiny_space.yaml"  # the study is named after the file
    space.write_text(SPACE.read_text().replace("base: tiny_base.yaml", f"base: {HERE / 'tiny_base.yaml'}")
                     .replace("min_time: 0.0}", "min_time: 0.0, optimize: true}"))
    _run(tmp_path, space=str(space), budget=1)
    (trial,) = _study(tmp_path).trials
    assert trial.user_attrs["throughput_setup"]["optimize"] is True and len(seen) == 1
