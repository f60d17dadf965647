"""Successive halving over epochs: NSGA-II ranking, promotion rules, exact budget under resume and two
workers, the top-rung front, the cost saved."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from archdsl.search import halving
from archdsl.search import study as st
from archdsl.search.ranking import crowding_distance, non_dominated_ranks, nsga2_order

HERE = Path(__file__).parent
MAX2 = ["maximize", "maximize"]


def test_nsga2_order_ranks_then_crowding():
    v = [[0.9, 100], [0.8, 200], [0.7, 50], [0.95, 10], [0.5, 300], [0.6, 150]]
    assert non_dominated_ranks(v, MAX2).tolist() == [0, 0, 1, 0, 0, 1]
    # rank 0 = {0, 1, 3, 4}: the two ends (3: best accuracy, 4: best throughput) first (infinite
    # crowding), then 1 (distance 0.4/0.45 + 200/290) before 0 (0.15/0.45 + 190/290); then rank 1
    # (rank 1 = {2, 5}: two points, both infinitely crowded -> by index)
    assert nsga2_order(v, MAX2) == [3, 4, 1, 0, 2, 5]
    assert crowding_distance([[1.0, 5.0], [2.0, 4.0], [4.0, 1.0]]).tolist()[1] == pytest.approx(3 / 3 + 4 / 4)
    # minimising flips the order
    assert nsga2_order([[1.0], [3.0], [2.0]], ["minimize"]) == [0, 2, 1]


def test_parse_rungs():
    assert halving.parse_rungs("1, 3,9") == [1, 3, 9]
    for bad in ("3,1", "0,2", "1,1", "a,b", ""):
        with pytest.raises(ValueError, match="--fidelity"):
            halving.parse_rungs(bad)


def _trial(number, x, rung=0, state=TrialState.COMPLETE, **attrs):
    t = create_trial(state=state, values=[x / 100, 100.0 - x] if state == TrialState.COMPLETE else None,
                     params={"x": x}, distributions={"x": IntDistribution(0, 99)},
                     user_attrs={"rung": rung, **attrs})
    t.number = number
    return t


def test_promotion_takes_the_best_third_by_nsga2_and_redoes_interrupted_ones():
    # rung 0: accuracy x/100 vs throughput 100-x: all non-dominated; the crowding ends come first
    trials = [_trial(i, x) for i, x in enumerate([10, 50, 90, 30, 70, 20])]
    first = halving.next_promotion(trials, 2, MAX2)
    assert first is not None and first[1] == 1 and first[0].number in (0, 2)     # an end of the front
    order = nsga2_order([t.values for t in trials], MAX2)
    top2 = {trials[i].number for i in order[:2]}                                    # quota 6 // 3 = 2
    promoted = [_trial(6, trials[first[0].number].params["x"], rung=1, promoted_from=first[0].number)]
    second = halving.next_promotion(trials + promoted, 2, MAX2)
    assert {first[0].number, second[0].number} == top2
    full = promoted + [_trial(7, second[0].params["x"], rung=1, promoted_from=second[0].number)]
    assert halving.next_promotion(trials + full, 2, MAX2) is None                  # quota reached
    # an interrupted promotion (Ctrl-C / dead worker) does not count: it is made again
    lost = [full[0], _trial(7, second[0].params["x"], rung=1, state=TrialState.FAIL,
                            promoted_from=second[0].number, interrupted=True)]
    again = halving.next_promotion(trials + lost, 2, MAX2)
    assert again is not None and again[0].number == second[0].number
    # duplicates and infeasible trials are not candidates and do not raise the quota
    extra = [_trial(8, 95, duplicate_of=2), _trial(9, 99, infeasible="params_max")]
    assert halving.next_promotion(trials + full + extra, 2, MAX2) is None


def _study(url, name):
    return optuna.load_study(study_name=name, storage=url)


def _check_exact(study, budget, eta=3):
    trials = [t for t in study.get_trials(deepcopy=False) if st.counts_toward_budget(t)]
    by_rung = {k: [t for t in trials if halving.rung_of(t) == k] for k in range(3)}
    assert len(by_rung[0]) == budget
    for k in (1, 2):
        sources = [t.user_attrs["promoted_from"] for t in by_rung[k]]
        assert len(sources) == len(set(sources)) == len(halving.rung_members(trials, k - 1)) // eta
        below = {t.number: t for t in by_rung[k - 1]}
        assert all(s in below for s in sources)
        assert all(t.params == below[t.user_attrs["promoted_from"]].params for t in by_rung[k])
    return by_rung


def test_two_workers_and_resume_give_exact_rungs(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    st.make_storage(url)                     # the schema first: two processes creating it at once race
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(HERE / "halving_worker.py"), url, "asha"]
    procs = [subprocess.Popen(cmd + ["18", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for seed in (1, 2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    study = _study(url, "asha")
    by_rung = _check_exact(study, 18)
    assert [len(by_rung[k]) for k in range(3)] == [18, 6, 2]
    # resume with a larger budget in this process: only the missing rung-0 trials and promotions
    n_before = len(study.trials)
    storage = st.make_storage(url)
    study = optuna.load_study(study_name="asha", storage=storage, sampler=optuna.samplers.RandomSampler(seed=3))
    sys.path.insert(0, str(HERE))
    from halving_worker import objective

    res = st.run_workers_loop(study, storage=storage, url=url, budget=27, objective=objective,
                              ask=lambda s: halving.ask_next(s, budget=27, n_rungs=3, eta=3))
    by_rung = _check_exact(study, 27)
    assert [len(by_rung[k]) for k in range(3)] == [27, 9, 3]
    assert len(res.ran) == len(study.trials) - n_before == 9 + 3 + 1
    again = st.run_workers_loop(study, storage=storage, url=url, budget=27, objective=objective,
                                ask=lambda s: halving.ask_next(s, budget=27, n_rungs=3, eta=3))
    assert again.ran == []
    cost = halving.cost_summary(study.trials, [1, 3, 9])
    assert cost["epochs"] == 27 * 1 + 9 * 3 + 3 * 9 and cost["epochs_if_all_top"] == 27 * 9
    assert cost["saved"] == pytest.approx(1 - 81 / 243)
