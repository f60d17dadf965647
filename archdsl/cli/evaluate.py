"""``archdsl eval SPEC --weights W --data SRC``: top-1 / top-5 of a spec's weights on the validation
split (the recipe's evaluation transform: resize to size / crop_pct, centre crop)."""
from __future__ import annotations

import argparse
import json

from archdsl.cli import UserError
from archdsl.cli.options import add_overrides_argument


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="top-1 / top-5 of trained weights on a data set's validation split",
                              description=__doc__)
    p.add_argument("spec", metavar="SPEC", help="spec YAML file")
    add_overrides_argument(p, scope="the spec")
    p.add_argument("--weights", required=True, metavar="FILE",
                   help="best.pt / last.pt of archdsl train, or a plain state dict")
    p.add_argument("--ema", action="store_true", help="evaluate the EMA weights of best.pt (model_ema)")
    p.add_argument("--data", required=True, metavar="SRC", help="default | imagefolder:PATH | cifar10:PATH")
    p.add_argument("--recipe", default=None, metavar="FILE", help="recipe whose evaluation transform is used")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p


def run(args: argparse.Namespace) -> int:
    from archdsl.cli.build import load_weights
    from archdsl.compiler import build_model
    from archdsl.data import DataError
    from archdsl.language import load_spec
    from archdsl.train import evaluate, load_recipe
    from archdsl.train.data import load_training_data, val_loader
    from archdsl.train.distributed import resolve_device

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    spec = load_spec(args.spec, args.overrides)
    model = build_model(spec)
    load_weights(model, args.weights, key="model_ema" if args.ema else None)
    try:
        device = resolve_device(args.device)
        data = load_training_data(args.data, load_recipe(args.recipe), image_size=int(spec.image_size))
    except DataError as e:
        raise UserError(str(e)) from None
    if int(spec.num_classes) != data.num_classes:
        raise UserError(f"the spec has num_classes {spec.num_classes} but {data.name} has {data.num_classes} classes")
    loader = val_loader(data, batch_size=args.batch_size, workers=args.workers)
    top1, top5 = evaluate(model.to(device), loader, device=device, amp=args.amp)
    info = {"name": spec.name, "weights": args.weights, "data": data.name, "images": len(data.val),
            "top1": 100 * top1, "top5": 100 * top5}
    if args.json:
        print(json.dumps(info))
    else:
        print(f"{spec.name}: top-1 {100 * top1:.2f}%  top-5 {100 * top5:.2f}%  ({len(data.val)} images of {data.name})")
    return 0
