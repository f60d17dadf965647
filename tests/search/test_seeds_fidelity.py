"""--seeds (mean / std per architecture), the accuracy floor, and the fidelity check on a tiny space."""
from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml
from scipy.stats import kendalltau

from archdsl.search import fidelity as fid
from archdsl.search.objective import train_seeds
from archdsl.search.runner import default_min_accuracy, run_search
from archdsl.train import TrainConfig

HERE = Path(__file__).parent
SPACE = HERE / "tiny_space.yaml"


def _run(out, **kw):
    kw.setdefault("space", str(SPACE))
    kw.setdefault("progress", False)
    return run_search(out_dir=str(out), log=lambda s: None, **kw)


def test_seeds_store_mean_and_std_and_match_single_seed_training(tmp_path):
    s = _run(tmp_path, budget=2, seeds=2, min_accuracy=0.0, sampler="random")
    for t in s["trials"]:
        u = t.user_attrs
        accs = u["seed_accuracies"]
        assert len(accs) == 2 and u["seeds"] == 2
        assert u["accuracy"] == pytest.approx(statistics.fmean(accs)) == pytest.approx(t.values[0])
        assert u["accuracy_std"] == pytest.approx(statistics.stdev(accs))
    # the second seed's accuracy is what training that architecture with seed 1 gives on its own
    t = s["trials"][0]
    ctx = s["ctx"]
    cfg = TrainConfig(**t.user_attrs["train"])
    _, runs = train_seeds(yaml.safe_load(t.user_attrs["spec"]), cfg, ctx, "<check>", [cfg.seed + 1])
    assert runs[0].accuracy == t.user_attrs["seed_accuracies"][1]
    with open(tmp_path / "trials.csv") as fh:
        row = next(csv.DictReader(fh))
    assert float(row["accuracy_std"]) == pytest.approx(s["trials"][0].user_attrs["accuracy_std"], abs=1e-6)


def test_accuracy_floor_keeps_low_trials_off_the_front(tmp_path):
    assert default_min_accuracy(10) == pytest.approx(0.325) and default_min_accuracy(2) == pytest.approx(0.625)
    s = _run(tmp_path, budget=3, min_accuracy=0.0, sampler="random")
    accs = sorted(t.user_attrs["accuracy"] for t in s["pareto"])
    assert accs and len(s["pareto"]) == len(s["study"].best_trials)
    floor = (accs[0] + accs[-1]) / 2 if len(accs) > 1 else accs[0] + 1e-6
    s = _run(tmp_path, budget=3, min_accuracy=floor, sampler="random")     # the same study, exported again
    assert s["loop"].ran == []
    assert [t.user_attrs["accuracy"] for t in s["pareto"]] == [a for a in (t.user_attrs["accuracy"] for t in
                                                                            s["study"].best_trials) if a >= floor]
    assert all(t.user_attrs["accuracy"] >= floor for t in s["pareto"])
    with open(tmp_path / "pareto.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(s["pareto"])


def test_fidelity_check_on_a_tiny_space(tmp_path):
    s = _run(tmp_path, budget=4, min_accuracy=0.0, sampler="random", check_fidelity=3, long_epochs=2,
             fidelity_seeds=2)
    summary = s["fidelity"]
    with open(tmp_path / "fidelity.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == summary["trials"] == 3
    front = [t.number for t in sorted(s["pareto"], key=lambda t: -t.user_attrs["accuracy"])][:2]
    chosen = [int(r["number"]) for r in rows]
    assert front and chosen[: len(front)] == front              # the front first (at most ceil(3 / 2))
    assert [r["on_front"] for r in rows[: len(front)]] == ["True"] * len(front)
    proxy = [float(r["proxy_accuracy"]) for r in rows]
    long = [float(r["long_accuracy"]) for r in rows]
    tau = kendalltau(proxy, long)[0]
    assert summary["kendall_tau"] == pytest.approx(tau, nan_ok=True)
    for r in rows:
        seeds = [float(a) for a in r["seed_accuracies"].split()]
        assert len(seeds) == 2 and float(r["long_accuracy"]) == pytest.approx(statistics.fmean(seeds), abs=1e-4)
        assert r["long_epochs"] == "2" and r["proxy_epochs"] == "1"
    assert summary["seed_spread_points"] == pytest.approx(
        100 * statistics.fmean(float(r["long_std"]) for r in rows), abs=1e-3)
    assert json.loads((tmp_path / "fidelity.json").read_text())["kendall_tau"] == pytest.approx(tau, nan_ok=True)
    assert (tmp_path / "fidelity.png").read_bytes()[:4] == b"\x89PNG"
    # every long accuracy is in the study: a second check trains nothing
    study = s["study"]
    assert sum(k.startswith("fidelity:") for k in study.user_attrs) == 6

    def boom(*a, **k):
        raise AssertionError("re-trained")

    orig = fid.train_seeds
    fid.train_seeds = boom
    try:
        again = fid.check_fidelity(study, s["ctx"], s["pareto"], tmp_path, k=3, long_epochs=2, seeds=2)
    finally:
        fid.train_seeds = orig
    assert [r["long_accuracy"] for r in again["rows"]] == [r["long_accuracy"] for r in summary["rows"]]


def test_select_trials_front_first_then_spread():
    from optuna.trial import create_trial

    trials = []
    for i, acc in enumerate([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]):
        t = create_trial(values=[acc, 1.0], user_attrs={"accuracy": acc, "spec": "x", "train": {}})
        t.number = i
        trials.append(t)
    chosen = fid.select_trials(trials, [trials[2], trials[5]], 5)
    # the front (most accurate first, at most ceil(5/2) = 3), then 3 spread over the other 5: best, middle, worst
    assert [t.number for t in chosen] == [2, 5, 0, 3, 6]
