"""How well the roofline throughput model ranks architectures (issue: throughput for the target device).

1. Calibrates this machine's CPU profile (``archdsl calibrate``'s measurement, 1 thread: what the
   search uses), samples N architectures from the default search space (Optuna's RandomSampler,
   fixed seed), measures each one's CPU images/s exactly as the search does (batch 64, 32x32, eval,
   1 thread) and predicts it with the roofline model; prints the Spearman rank correlation.
2. For the paper's Table 1 / Table 2 rows (specs/ablation, meta.paper.throughput on an RTX 3090),
   prints the predicted RTX 3090 images/s (batch 128, 224x224, fp32) and the ratio to the baseline
   beside the paper's measured ratio.

    python benchmarks/bench_roofline.py [--archs 30] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import optuna
import torch
from scipy.stats import spearmanr

import archdsl
from archdsl.analysis.benchmark import measure_throughput
from archdsl.analysis.calibrate import calibrate
from archdsl.analysis.roofline import load_profile, predict_model
from archdsl.language import load_spec
from archdsl.search.space import default_space_path, load_space

ROOT = Path(__file__).resolve().parents[1]


def sampled_architectures(n: int, seed: int) -> list[dict]:
    space = load_space(default_space_path())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.sample(study.ask())[0] for _ in range(n)]


def rank_correlation(n: int, seed: int) -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    prof = calibrate("cpu", dtypes=("float32",), gemm_n=512, copy_mib=32, min_run_time=0.3)
    print(f"calibrated CPU profile ({time.perf_counter() - t0:.0f} s): {prof.peak_flops['float32'] / 1e9:.1f} GFLOP/s, "
          f"{prof.bandwidth / 1e9:.1f} GB/s, {prof.launch_s * 1e6:.1f} us/op  [{prof.source}]")
    measured, predicted = [], []
    for i, spec in enumerate(sampled_architectures(n, seed)):
        torch.manual_seed(0)
        model = archdsl.build_model(spec)
        m = measure_throughput(model, batch_size=64, image_size=32, warmup=2, iters=5, min_time=0.25)
        p = predict_model(model, prof, batch_size=64, image_size=32)
        measured.append(m["images_per_s"])
        predicted.append(p["images_per_s"])
        mixer = spec["mixer"]["type"] if isinstance(spec["mixer"], dict) else spec["mixer"]
        print(f"  arch {i:2d} {mixer:18s} measured {m['images_per_s']:8.0f} img/s (p20-p80 "
              f"{64e3 / m['p80_ms']:.0f}-{64e3 / m['p20_ms']:.0f})  predicted {p['images_per_s']:8.0f}  "
              f"({p['ops']} ops)", flush=True)
    rho = spearmanr(measured, predicted).statistic
    print(f"Spearman rank correlation, predicted vs measured CPU images/s over {n} architectures: {rho:.3f}")


def table1_on_rtx3090() -> None:
    prof = load_profile("rtx3090")
    rows = []
    for path in sorted((ROOT / "specs" / "ablation").glob("*.yaml")):
        paper = (load_spec(path).meta or {}).get("paper") or {}
        if not paper.get("throughput"):
            continue
        model = archdsl.build_model(str(path), device="meta")
        p = predict_model(model, prof, batch_size=128, image_size=224)
        rows.append((path.stem, paper.get("row", path.stem), p["images_per_s"], float(paper["throughput"])))
    base = next(r for r in rows if r[0] == "baseline")
    print("\nTable 1/2 rows, RTX 3090, batch 128, 224x224, fp32: roofline prediction vs the paper's measurement")
    print(f"  {'spec':14s} {'predicted img/s':>16s} {'ratio':>6s} | {'paper img/s':>11s} {'ratio':>6s}")
    for stem, row, pred, paper in rows:
        print(f"  {stem:14s} {pred:16.0f} {pred / base[2]:6.2f} | {paper:11.0f} {paper / base[3]:6.2f}   {row}")
    pr = spearmanr([r[2] for r in rows], [r[3] for r in rows]).statistic
    print(f"Spearman rank correlation over these {len(rows)} rows: {pr:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-cpu", action="store_true", help="only the RTX 3090 table")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"torch {torch.__version__}, {sys.platform}")
    if not args.skip_cpu:
        rank_correlation(args.archs, args.seed)
    table1_on_rtx3090()
    return 0


if __name__ == "__main__":
    sys.exit(main())
