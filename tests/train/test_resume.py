"""Kill a run mid-epoch (SIGTERM: it writes a checkpoint; SIGKILL: the last periodic one survives), then
``--resume``: the final weights and every step's loss equal the uninterrupted run's exactly (CPU)."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from interrupt_run import signal_at_step
from train_helpers import FAST, TINY

from archdsl.cli import main
from archdsl.train.checkpoint import load_checkpoint

HELPER = str(Path(__file__).parent / "interrupt_run.py")
# random augmentation on every stream: crop + flip (torch), mixup (numpy), erasing (python), drop path
RANDOM = FAST + ["--recipe-set", "crop_padding=2", "--recipe-set", "hflip=0.5", "--recipe-set", "mixup=0.4",
                 "--recipe-set", "reprob=0.5", "--set", "drop_path=0.1"]


def _losses(out: Path) -> list[str]:
    with open(out / "steps.csv", newline="") as f:
        return [r["loss"] for r in csv.DictReader(f)]


def _start(sig: str, at: int, out: Path, extra: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, HELPER, sig, str(at), TINY, "--data", "default", "--out", str(out)]
                            + RANDOM + extra, env=env, stderr=subprocess.PIPE, text=True)


def test_sigterm_and_sigkill_mid_epoch_then_resume_reproduce_the_run_exactly(tmp_path):
    # 2 epochs x 6 steps. SIGKILL (another process) as step 9 starts, with a checkpoint every 4 steps:
    # resumes from step 8 (epoch 2, step 2). SIGTERM (this process) as step 9 starts: the step ends,
    # then a checkpoint (epoch 2, step 3) and exit 128 + 15.
    kill = _start("SIGKILL", 9, tmp_path / "kill", ["--recipe-set", "checkpoint_every=4"])
    ref = tmp_path / "ref"
    assert main(["train", TINY, "--data", "default", "--out", str(ref)] + RANDOM) == 0
    undo = signal_at_step(signal.SIGTERM, 9)
    try:
        assert main(["train", TINY, "--data", "default", "--out", str(tmp_path / "term")] + RANDOM) == 143
    finally:
        undo()
    assert kill.wait(timeout=300) == -signal.SIGKILL, kill.stderr.read()
    stopped = {"term": (1, 3), "kill": (1, 2)}
    for name, (epoch, step) in stopped.items():
        ckpt = load_checkpoint(tmp_path / name / "last.pt")
        assert (ckpt["epoch"], ckpt["step"], len(ckpt["rng"])) == (epoch, step, 1)
        assert main(["train", TINY, "--data", "default", "--out", str(tmp_path / name), "--resume"] + RANDOM) == 0
    want = load_checkpoint(ref / "last.pt")
    assert len(want["step_losses"]) == 12
    for name in stopped:
        got = load_checkpoint(tmp_path / name / "last.pt")
        assert got["step_losses"] == want["step_losses"] and _losses(tmp_path / name) == _losses(ref)
        assert all(torch.equal(got["model"][k], v) for k, v in want["model"].items()), name
        assert got["optimizer"]["state"][0]["exp_avg"].equal(want["optimizer"]["state"][0]["exp_avg"])
