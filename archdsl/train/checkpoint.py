"""Checkpoints: written atomically, complete enough to continue a run exactly.

A checkpoint (``last.pt``) is a ``torch.save`` dict that ``torch.load(weights_only=True)`` reads:
``model`` (the plain state dict: ``archdsl build SPEC --weights last.pt`` loads it), ``optimizer``,
``scheduler``, ``scaler``, ``ema``, ``epoch`` (finished epochs), ``step`` (optimizer steps done in
the current epoch), ``global_step``, ``rng`` (the RNG states of every rank: torch, CUDA, numpy,
python), ``spec`` (the resolved spec, YAML text), ``recipe`` (a dict), ``history``, ``step_losses``,
``best_top1``, ``world``. ``best.pt`` holds the weights only (``model``, plus ``model_ema``).
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archdsl.errors import SpecError
from archdsl.files import write_atomic

__all__ = ["save_atomic", "load_checkpoint", "rng_state", "set_rng_state", "check_compatible",
           "RUNTIME_FIELDS"]

# recipe fields a resumed run may change without --force-resume (they do not change the result)
RUNTIME_FIELDS = ("workers", "eval_batch_size", "checkpoint_every", "compile", "max_steps_per_epoch")


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by the trainer (``weights_only``: nothing in it runs code)."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"checkpoint not found: {p}", file=str(p))
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated / foreign file
        raise SpecError(f"cannot read the checkpoint: {type(e).__name__}: {e}".splitlines()[0], file=str(p)) from None
    missing = [k for k in ("model", "optimizer", "epoch", "spec", "recipe") if k not in ckpt]
    if not isinstance(ckpt, dict) or missing:
        raise SpecError(f"not a training checkpoint of archdsl train (missing {', '.join(missing)})", file=str(p))
    return ckpt


def rng_state() -> dict:
    """This process's random states (torch CPU and CUDA, numpy, python)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            d = _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
            if d:
                return d
        return None
    return None if a == b else f"{path or '(top)'}: {a!r} in the checkpoint, {b!r} now"


def check_compatible(ckpt: dict, spec: dict, recipe: dict, where: str) -> None:
    """Refuse (SpecError) to continue a checkpoint with another spec or recipe (runtime fields aside)."""
    diff = _first_difference(ckpt["spec"], spec)
    if diff:
        raise SpecError(f"the checkpoint was trained with a different spec ({diff}); "
                        f"use --force-resume to continue anyway", file=where)
    old = {k: v for k, v in ckpt["recipe"].items() if k not in RUNTIME_FIELDS}
    new = {k: v for k, v in recipe.items() if k not in RUNTIME_FIELDS}
    diff = _first_difference(old, new)
    if diff:
        raise SpecError(f"the checkpoint was trained with a different recipe ({diff}); "
                        f"use --force-resume to continue anyway", file=where)
