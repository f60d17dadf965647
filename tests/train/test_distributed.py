"""Two processes (torchrun, Gloo, DistributedDataParallel) with the same global batch as one process:
the same loss at every step (the deterministic recipe: no augmentation, mixup or drop path)."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import torch
from train_helpers import FAST, TINY

from archdsl.cli import main
from archdsl.train.checkpoint import load_checkpoint


def _losses(path) -> list[float]:
    with open(path, newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_two_gloo_processes_match_one_process_step_by_step(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    two = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "-m", "archdsl", "train", TINY, "--data", "default", "--out", str(tmp_path / "two")]
                           + FAST, env=env, stderr=subprocess.PIPE, text=True)
    assert main(["train", TINY, "--data", "default", "--out", str(tmp_path / "one")] + FAST) == 0
    _, err = two.communicate(timeout=300)
    assert two.returncode == 0, err
    assert "2 process(es) on cpu; batch 32" in err            # rank 0 alone prints
    one, both = _losses(tmp_path / "one" / "steps.csv"), _losses(tmp_path / "two" / "steps.csv")
    assert len(one) == len(both) == 12
    assert all(abs(a - b) <= 1e-5 * abs(a) for a, b in zip(one, both)), list(zip(one, both))
    a, b = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(tmp_path / "two" / "last.pt")
    assert a["world"] == 1 and b["world"] == 2 and len(b["rng"]) == 2     # every rank's RNG states
    assert all(torch.allclose(a["model"][k], v, rtol=1e-4, atol=1e-6) for k, v in b["model"].items())
    assert a["history"][-1]["val_top1"] == b["history"][-1]["val_top1"]   # the sharded validation sums up
