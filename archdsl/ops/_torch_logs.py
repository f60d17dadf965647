"""Silence torch's one irrelevant import-time notice.

``torch.utils.cpp_extension`` (imported by ``cpp_extension.load`` and by ``torch.utils.benchmark``) logs
"No CUDA runtime is found" on CPU-only machines that have a CUDA build of torch. archdsl never builds
CUDA code, and the line would land in users' stderr (and break one-line error output)."""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

__all__ = ["quiet_cpp_extension"]


@contextlib.contextmanager
def quiet_cpp_extension() -> Iterator[None]:
    """Within the block, ``torch.utils.cpp_extension``'s logger shows errors only."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
