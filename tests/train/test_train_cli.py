"""``archdsl train`` / ``archdsl eval`` end to end on the bundled digits (in-process, one thread)."""
from __future__ import annotations

import csv

import torch
from train_helpers import FAST, TINY

import archdsl
from archdsl.cli import main


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_two_epochs_of_a_tiny_mlla_learn_the_digits_and_the_weights_load(tmp_path, capsys):
    out = tmp_path / "run"
    # the proxy recipe (crop with 2-pixel padding), batch 32, lr 1e-2, 2 full epochs: 85.3 % measured
    assert main(["train", TINY, "--data", "default", "--out", str(out), "--recipe", "proxy", "--batch-size", "32",
                 "--lr", "1e-2", "--epochs", "2", "--device", "cpu", "--no-progress"]) == 0
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    top1 = float(rows[-1]["val_top1"])
    assert top1 >= 80.0                                                   # chance: 10 %
    assert len(_rows(out / "steps.csv")) == 2 * (1437 // 32)
    assert (out / "curves.png").stat().st_size > 10_000
    err = capsys.readouterr().err
    assert f"archdsl train: tiny_mlla: 2 epochs, top-1 {top1:.2f}%" in err
    # best.pt: archdsl eval, archdsl build --weights, archdsl.build_model + load_state_dict
    assert main(["eval", TINY, "--weights", str(out / "best.pt"), "--data", "default", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith(f"tiny_mlla: top-1 {top1:.2f}%")
    assert main(["build", TINY, "--weights", str(out / "best.pt")]) == 0
    model = archdsl.build_model(str(out / "spec.yaml"))                  # the resolved spec of the run
    model.load_state_dict(torch.load(out / "best.pt", weights_only=True)["model"])
    assert main(["build", str(out / "spec.yaml"), "--weights", str(out / "last.pt")]) == 0


def _err(capsys, argv):
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_user_errors_exit_2_with_one_located_line(tmp_path, capsys):
    out = str(tmp_path / "run")
    code, err = _err(capsys, ["train", TINY, "--data", f"imagefolder:{tmp_path}/none", "--out", out] + FAST)
    assert code == 2 and err == (f"archdsl train: error: imagefolder path '{tmp_path}/none' is not a directory; "
                                 f"expected PATH/<class>/<image> (or PATH/train and PATH/val)")
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: proxy\nlabel_smoothin: 0.1\n")
    code, err = _err(capsys, ["train", TINY, "--data", "default", "--out", out, "--recipe", str(bad)])
    assert code == 2 and err == (f"archdsl train: error: {bad}:2:1: label_smoothin: unknown recipe field "
                                 f"'label_smoothin' (did you mean 'label_smoothing'?)")
    code, err = _err(capsys, ["train", TINY, "--set", "num_classes=7", "--data", "default", "--out", out] + FAST)
    assert code == 2 and err == ("archdsl train: error: the spec has num_classes 7 but default (sklearn digits) "
                                 "has 10 classes; add --set num_classes=10")
    assert main(["train", TINY, "--data", "default", "--out", out] + FAST + ["--epochs", "1"]) == 0
    capsys.readouterr()
    code, err = _err(capsys, ["train", TINY, "--data", "default", "--out", out] + FAST)
    assert code == 2 and err == (f"archdsl train: error: {out} already holds a run ({out}/last.pt); add --resume "
                                 f"to continue it or choose another --out")
    code, err = _err(capsys, ["train", TINY, "--set", "stages.depths=[1,2]", "--data", "default", "--out", out,
                              "--resume"] + FAST)
    assert code == 2 and err == (f"archdsl train: error: {out}/last.pt: the checkpoint was trained with a different "
                                 f"spec (stages.depths: [1, 1] in the checkpoint, [1, 2] now); use --force-resume "
                                 f"to continue anyway")
    code, err = _err(capsys, ["train", TINY, "--data", "default", "--out", out, "--resume"] + FAST +
                     ["--epochs", "1", "--recipe-set", "weight_decay=0.1"])
    assert code == 2 and err == (f"archdsl train: error: {out}/last.pt: the checkpoint was trained with a different "
                                 f"recipe (weight_decay: 0.05 in the checkpoint, 0.1 now); use --force-resume to "
                                 f"continue anyway")
