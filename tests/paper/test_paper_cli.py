"""archdsl bench / archdsl report through the CLI (tiny models, not timed tests)."""
import csv
import json

import pytest

from archdsl.cli import main
from archdsl.cli.report import expand_paths

TINY = ["--set", "stages.embed_dim=8", "--set", "stages.depths=[1,1,1,1]", "--set", "stages.heads=[1,1,1,1]",
        "--set", "num_classes=5"]
FAST = ["--batch-size", "2", "--image-size", "32", "--warmup", "1", "--iters", "2", "--min-time", "0"]


def test_bench_json_single_and_list(capsys):
    assert main(["bench", "specs/mlla_t.yaml", *TINY, *FAST, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["spec"] == "specs/mlla_t.yaml" and r["error"] is None
    assert r["batch_size"] == 2 and r["image_size"] == [32, 32] and r["dtype"] == "float32"
    assert r["mode"] == "inference" and r["timed_iters"] == 2 and r["images_per_s"] > 0
    assert r["p20_ms"] <= r["latency_ms"] <= r["p80_ms"]
    assert main(["bench", "specs/mlla_t.yaml", "specs/ablation/baseline.yaml", *TINY, *FAST, "--json",
                 "--train", "--channels-last"]) == 0
    rs = json.loads(capsys.readouterr().out)
    assert [x["spec"] for x in rs] == ["specs/mlla_t.yaml", "specs/ablation/baseline.yaml"]
    assert all(x["mode"] == "train" and x["channels_last"] for x in rs)


def test_train_after_inference_same_size(capsys):
    """Regression: RoPE tables cached under inference_mode must not break a later training step."""
    args = ["bench", "specs/ablation/rope.yaml", *TINY, "--batch-size", "1", "--image-size", "96", "--warmup", "1",
            "--iters", "1", "--min-time", "0", "--json"]
    assert main(args) == 0
    assert main(args + ["--train"]) == 0


def test_bench_text_prints_settings(capsys):
    assert main(["bench", "specs/mlla_t.yaml", *TINY, *FAST]) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "batch 2, 32x32, cpu, float32, inference" in out and "2 timed iters" in out


def test_bench_user_errors(capsys):
    assert main(["bench", "specs/mlla_t.yaml", "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1, got 0" in capsys.readouterr().err
    assert main(["bench", "specs/nope.yaml"]) == 2


def test_report_json_markdown_csv_and_bench(tmp_path, capsys):
    md, cs = tmp_path / "r.md", tmp_path / "r.csv"
    rc = main(["report", "specs/ablation/baseline.yaml", "specs/ablation/forget_gate.yaml", *TINY,
               "--set", "image_size=32", "--json", "--markdown", str(md), "--csv", str(cs), "--bench", *FAST])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["rows"]
    assert [r["name"] for r in rows] == ["la_baseline", "la_forget_gate"]
    assert rows[0]["paper_row"] == "Baseline" and rows[1]["paper_gmacs"] == 4.8
    assert rows[0]["gmacs_scan"] is None and rows[1]["gmacs_scan"] > rows[1]["gmacs"]
    assert rows[0]["check"] == "off"  # tiny overrides are far from the paper's row
    assert rows[0]["relative"] == pytest.approx(1.0) and rows[1]["images_per_s"] > 0
    assert all(r["latency_p20_ms"] <= r["latency_ms"] <= r["latency_p80_ms"] for r in rows)  # the spread
    assert out["bench_settings"]["batch_size"] == 2
    text = md.read_text()
    assert text.startswith("| spec | params (M) | GMACs | GMACs +scan | paper row |") and "| la_forget_gate |" in text
    assert "| img/s (here) | ms (here) | p20 ms | p80 ms | rel. to ref. |" in text
    assert "Throughput: batch_size=2" in text
    with open(cs) as f:
        got = list(csv.DictReader(f))
    assert [r["name"] for r in got] == ["la_baseline", "la_forget_gate"] and int(got[0]["params"]) == rows[0]["params"]
    assert not list(tmp_path.glob(".tmp-*"))


def test_report_directory_in_paper_order_and_errors(capsys):
    paths = expand_paths(["specs/ablation"])
    names = [p.split("/")[-1] for p in paths]
    assert names[:8] == ["baseline.yaml", "input_gate.yaml", "forget_gate.yaml", "shortcut.yaml", "no_norm.yaml",
                         "single_head.yaml", "block_all.yaml", "block_sub.yaml"]
    assert names[8:12] == ["ape.yaml", "lepe.yaml", "cpe.yaml", "rope.yaml"]
    assert main(["report", "specs/does_not_exist"]) == 2
    assert "no such spec file or folder: specs/does_not_exist" in capsys.readouterr().err
