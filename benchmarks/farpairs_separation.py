"""Separation of token mixers on the bundled ``farpairs`` task: accuracy at convergence, seeds apart.

    python benchmarks/farpairs_separation.py [--epochs 15] [--seeds 0,1,2] [--out farpairs.jsonl]
        [--mixers softmax_attention,linear_attention,selective_ssm,mlla_attention,dwconv]

Every mixer is trained in the same model (benchmarks/farpairs_base.yaml: 4x4 patches, one stage of two
Transformer blocks, width 32) with the search's training recipe (archdsl.train: AdamW, cosine, label
smoothing, random crop, flips) for ``--epochs`` epochs, once per seed (the seed sets the initialisation,
batch order and augmentation; the data are fixed). Each finished run is appended to ``--out`` as one
JSON line, and runs already there are skipped, so an interrupted measurement resumes. The table gives
per mixer the mean and standard deviation of the final validation accuracy over the seeds, and the
criterion of docs/search.md: best-minus-worst spread >= 3x the largest per-mixer seed std, and every
global mixer above the local-only one (``dwconv``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from archdsl.compiler import build_model
from archdsl.data import load_data
from archdsl.language import load_spec_dict
from archdsl.train import TrainConfig, train_model

BASE = Path(__file__).resolve().parent / "farpairs_base.yaml"
MIXERS = "softmax_attention,linear_attention,selective_ssm,mlla_attention,dwconv"


def run_one(mixer: str, seed: int, epochs: int) -> dict:
    spec = yaml.safe_load(BASE.read_text())
    spec["mixer"] = {"type": mixer}
    torch.manual_seed(seed)
    model = build_model(load_spec_dict(spec, str(BASE)))
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=4e-3, crop_padding=0, seed=seed)   # no crop: see farpairs.py
    result = train_model(model, load_data("farpairs"), cfg)
    return {"mixer": mixer, "seed": seed, "epochs": epochs, "accuracy": result.accuracy,
            "epoch_accuracy": [h["accuracy"] for h in result.history], "seconds": round(result.seconds, 1),
            "params": sum(p.numel() for p in model.parameters())}


def table(rows: list[dict], mixers: list[str]) -> str:
    lines = ["| mixer | params | accuracy % (mean ± std over seeds) | per seed |", "|---|---|---|---|"]
    stats = {}
    for m in mixers:
        accs = [r["accuracy"] * 100 for r in rows if r["mixer"] == m]
        if not accs:
            continue
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        stats[m] = (statistics.mean(accs), sd)
        params = next(r["params"] for r in rows if r["mixer"] == m)
        lines.append(f"| {m} | {params} | {stats[m][0]:.2f} ± {sd:.2f} | {', '.join(f'{a:.1f}' for a in accs)} |")
    if len(stats) >= 2:
        means = {m: s[0] for m, s in stats.items()}
        spread = max(means.values()) - min(means.values())
        seed_sd = max(s[1] for s in stats.values())
        lines.append(f"\nspread best - worst = {spread:.2f} points; largest seed std = {seed_sd:.2f} "
                     f"(ratio {spread / max(seed_sd, 1e-9):.1f}x, criterion >= 3x)")
        if "dwconv" in means:
            beats = all(v > means["dwconv"] for m, v in means.items() if m != "dwconv")
            lines.append(f"every global mixer above dwconv ({means['dwconv']:.2f}): {beats}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--mixers", default=MIXERS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="farpairs.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mixers, seeds = args.mixers.split(","), [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    for seed in seeds:
        for m in mixers:
            if any(r["mixer"] == m and r["seed"] == seed and r["epochs"] == args.epochs for r in rows):
                continue
            t0 = time.perf_counter()
            row = run_one(m, seed, args.epochs)
            rows.append(row)
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{m} seed {seed}: {row['accuracy'] * 100:.2f}% ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(table([r for r in rows if r["epochs"] == args.epochs and r["seed"] in seeds], mixers))


if __name__ == "__main__":
    main()
