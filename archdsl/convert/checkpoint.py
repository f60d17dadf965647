"""Reading a user-supplied PyTorch checkpoint file: one located error line for every way it can be
wrong (missing, not a regular file, truncated, not a PyTorch file, a pickle that runs code).

``torch.load`` reports a truncated or foreign file as ``EOFError``, ``KeyError: 101``, ``OSError:
Invalid argument``, ``struct.error`` or a ``PytorchStreamReader`` error; all of them say the same
thing to a user.
"""
from __future__ import annotations

import os
import pickle
import stat
import warnings
from typing import Any

import torch

from archdsl.errors import SpecError

__all__ = ["read_checkpoint"]



def read_checkpoint(path: str, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors as :class:`SpecError`:
    ``"{what} not found: PATH"``, ``"... is not a regular file"``, ``"... truncated or not a PyTorch
    checkpoint (...)"``, ``"... holds Python objects other than tensors (refused: weights only)"``."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SpecError(f"{what} not found: {path}") from None
    except OSError as e:
        raise SpecError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block, /dev/zero would never end
        raise SpecError(f"cannot read {what} {path}: not a regular file")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):  # a pickle that names a callable: refused, never run
            raise SpecError(f"cannot read {what} {path}: it holds Python objects other than tensors "
                            f"(refused: only weights are loaded)") from None
        raise SpecError(f"cannot read {what} {path}: truncated or not a PyTorch checkpoint "
                        f"(is it a torch.save file? {type(e).__name__})") from None
    except Exception as e:  # EOFError, KeyError, struct.error, zip errors...: whatever the bytes make
        raise SpecError(f"cannot read {what} {path}: truncated or not a PyTorch checkpoint "
                        f"(is it a torch.save file? {type(e).__name__})") from None
