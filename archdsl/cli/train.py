"""``archdsl train SPEC --data SRC --out DIR [--recipe FILE|NAME] [options]``: train a spec with a
recipe (default: the paper's ImageNet recipe), on one process or under ``torchrun`` (DDP).

Writes to --out (rank 0): spec.yaml (the resolved spec) and recipe.yaml (every field), last.pt (every
epoch and on SIGTERM / Ctrl-C; --resume continues it exactly), best.pt (weights of the best epoch:
``archdsl build SPEC --weights OUT/best.pt`` and ``archdsl eval`` load it), metrics.csv, steps.csv,
curves.png. A run is reproduced with ``archdsl train OUT/spec.yaml --recipe OUT/recipe.yaml ...``.
Exit 2 with one located line for a bad spec, recipe, data source, or a resume that does not match;
128 + the signal number after an interrupted (checkpointed) run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from archdsl.cli import UserError
from archdsl.cli.options import add_overrides_argument

RECIPE_FLAGS = (("epochs", int), ("batch_size", int), ("lr", float), ("seed", int), ("accum_steps", int),
                ("workers", int))


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a spec with a recipe (timm components; torchrun / DDP)",
                              description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", metavar="SPEC", help="spec YAML file (e.g. runs/search/pareto/trial_N.yaml)")
    add_overrides_argument(p, scope="the spec", example="num_classes=10")
    p.add_argument("--data", required=True, metavar="SRC", help="default | imagefolder:PATH | cifar10:PATH")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (checkpoints, metrics, curves)")
    p.add_argument("--recipe", default=None, metavar="FILE",
                   help="recipe YAML or packaged name: imagenet_300ep, proxy (default: the paper's recipe)")
    p.add_argument("--recipe-set", dest="recipe_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe field (repeatable), e.g. --recipe-set mixup=0")
    for name, typ in RECIPE_FLAGS:
        p.add_argument(f"--{name.replace('_', '-')}", type=typ, default=None, help=f"recipe field {name}")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default=None, help="mixed precision")
    p.add_argument("--channels-last", action="store_const", const=True, default=None, help="channels-last memory format")
    p.add_argument("--compile", action="store_const", const=True, default=None, help="torch.compile the model")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue OUT/last.pt (or PATH); without a checkpoint in OUT, start afresh")
    p.add_argument("--force-resume", action="store_true", help="resume even if the spec or recipe changed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _recipe(args: argparse.Namespace):
    from archdsl.train import load_recipe

    flags = {name: getattr(args, name) for name, _ in RECIPE_FLAGS}
    flags.update(amp=args.amp, channels_last=args.channels_last, compile=args.compile)
    return load_recipe(args.recipe, args.recipe_overrides, **flags)


def _checkpoint(args: argparse.Namespace, out: Path):
    """The checkpoint to continue, or None; refuses to start over an existing run without --resume."""
    from archdsl.train.checkpoint import load_checkpoint

    last = out / "last.pt"
    if args.resume is None:
        if last.exists():
            raise UserError(f"{out} already holds a run ({last}); add --resume to continue it or choose another --out")
        return None, None
    path = Path(args.resume) if args.resume else last
    if not args.resume and not path.exists():
        return None, None
    return load_checkpoint(path), str(path)


def _check_data(spec, data) -> None:
    if int(spec.num_classes) != data.num_classes:
        raise UserError(f"the spec has num_classes {spec.num_classes} but {data.name} has {data.num_classes} "
                        f"classes; add --set num_classes={data.num_classes}")
    if int(spec.in_chans) != data.in_chans:
        raise UserError(f"the spec has in_chans {spec.in_chans} but the data has {data.in_chans} channels")


def run(args: argparse.Namespace) -> int:
    import torch

    from archdsl.compiler import build_model
    from archdsl.data import DataError
    from archdsl.files import write_atomic
    from archdsl.language import dump_resolved, load_spec, resolved_data
    from archdsl.train import NonFiniteLossError, dump_recipe, train
    from archdsl.train.checkpoint import check_compatible
    from archdsl.train.data import load_training_data
    from archdsl.train.distributed import setup, teardown

    out = Path(args.out)
    recipe = _recipe(args)
    drop = [f"drop_path={recipe.drop_path}"] if recipe.drop_path is not None else []
    spec = load_spec(args.spec, list(args.overrides) + drop)
    spec_dict = resolved_data(spec)
    ckpt, where = _checkpoint(args, out)
    if ckpt is not None and not args.force_resume:
        check_compatible(ckpt, spec_dict, recipe.to_dict(), where)
    try:
        dist = setup(args.device)
        data = load_training_data(args.data, recipe, image_size=int(spec.image_size), seed=recipe.seed)
    except DataError as e:
        raise UserError(str(e)) from None
    _check_data(spec, data)
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if dist.main else (lambda s: None)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "spec.yaml", dump_resolved(spec))
        write_atomic(out / "recipe.yaml", dump_recipe(recipe))
        log(f"archdsl train: {spec.name} on {data.describe()}; {dist.world} process(es) on {dist.device}; "
            f"batch {recipe.batch_size}, lr {recipe.peak_lr():.3g}" + (f"; resuming {where}" if ckpt else ""))
    torch.manual_seed(recipe.seed)
    model = build_model(spec)
    try:
        result = train(model, recipe, data, dist=dist, out_dir=out, spec=spec_dict, resume=ckpt,
                       progress=not args.no_progress, log=log)
    except DataError as e:
        raise UserError(str(e)) from None
    except NonFiniteLossError as e:
        print(f"archdsl train: error: {e}", file=sys.stderr)
        return 1
    finally:
        teardown(dist)
    if result.interrupted:
        log(f"archdsl train: interrupted by signal {result.interrupted}; checkpoint {out / 'last.pt'} "
            f"(continue with --resume)")
        return 128 + int(result.interrupted)
    log(f"archdsl train: {spec.name}: {len(result.history)} epochs, top-1 {100 * result.accuracy:.2f}% "
        f"(best {100 * result.best_accuracy:.2f}%), top-5 {100 * result.top5:.2f}%, {result.seconds:.1f} s; "
        f"weights {out / 'best.pt'}")
    return 0
