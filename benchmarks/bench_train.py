"""Training throughput: images/s of one training step (forward, cross entropy, backward, gradient
clipping at 5, AdamW step from timm's create_optimizer_v2, as archdsl.train does) of archdsl's MLLA-T
(specs/mlla_t.yaml) vs the official module structure (tests/paper/official_mlla.py), same batch,
same weights, drop path 0 in both (the official-structure model has none), measured in one run.

Method: after one warm-up step each, steps are interleaved round-robin (rotated order) so load
changes on a shared machine hit both alike; per variant the median / p20 / p80 / min over rounds;
the ratio is official / archdsl time (> 1: archdsl is faster). Usage::

    python benchmarks/bench_train.py [--batch-size 8] [--image-size 224] [--rounds 5] [--threads 2]
                                     [--device cpu|cuda] [--amp none|bf16] [--channels-last]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "paper"))
sys.path.insert(0, HERE)

from _timing import fmt, measure  # noqa: E402
from official_mlla import OfficialMLLA, randomize_  # noqa: E402

import archdsl  # noqa: E402
from archdsl.convert.mlla import convert_mlla_state_dict  # noqa: E402


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, amp: str):
    """One optimizer step of ``model`` on ``(x, y)``; synchronises on CUDA so the time is the step's."""
    opt = create_optimizer_v2(model, "adamw", lr=1e-4, weight_decay=0.05)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    return step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    ref = randomize_(OfficialMLLA(img_size=args.image_size))
    ours = archdsl.build_model(os.path.join(HERE, "..", "specs", "mlla_t.yaml"),
                               [f"image_size={args.image_size}", "drop_path=0.0"])
    ours.load_state_dict(convert_mlla_state_dict(ref.state_dict(), ours))
    fmt_kw = {"memory_format": torch.channels_last} if args.channels_last else {}
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size).to(dev, **fmt_kw)
    y = torch.randint(0, 1000, (args.batch_size,), device=dev)
    steps = {name: make_step(m.to(dev, **fmt_kw).train(), x, y, args.amp)
             for name, m in (("official", ref), ("archdsl", ours))}
    res = measure(steps, {k: args.rounds for k in steps})
    ips = {k: args.batch_size / r["median"] for k, r in res.items()}
    if args.json:
        print(json.dumps({"setup": vars(args), "images_per_s": ips, "seconds": res,
                          "speedup_of_medians": res["official"]["median"] / res["archdsl"]["median"]}))
        return 0
    print(f"train step, MLLA-T, batch {args.batch_size}, {args.image_size}x{args.image_size}, {dev}, "
          f"amp {args.amp}, {args.threads} threads{', channels_last' if args.channels_last else ''}")
    for name, r in res.items():
        print(f"  {name:9s} {fmt(r)}  {ips[name]:8.2f} images/s")
    o, a = res["official"], res["archdsl"]
    print(f"  archdsl vs official: {o['median'] / a['median']:.3f}x (of medians), {o['min'] / a['min']:.3f}x "
          f"(of minima), spread p20-p80 official {o['p20'] / o['median']:.2f}-{o['p80'] / o['median']:.2f}, "
          f"archdsl {a['p20'] / a['median']:.2f}-{a['p80'] / a['median']:.2f} of the median  (> 1: archdsl faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
