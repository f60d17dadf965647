"""Check every file of an image folder once, before any training: a corrupt image or a text file
named ``.jpg`` is found up front (and named), not as a failure in every trial.

``find_bad_images(paths) -> [(path, reason)]`` opens each file with PIL, verifies it and decodes it
(JPEGs at reduced scale through ``Image.draft``, so a large data set is checked quickly); files are
checked on a few threads (PIL releases the GIL while decoding).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

__all__ = ["image_problem", "find_bad_images"]


def image_problem(path: str) -> str | None:
    """Why ``path`` is not a readable image (PIL's words), or None when it decodes."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()                          # structure and checksums (PNG CRCs)
        with Image.open(path) as im:
            im.draft("RGB", (1, 1))              # JPEG: decode at 1/8 scale; no-op for others
            im.load()                            # truncated data fails here
    except Exception as e:   # noqa: BLE001 -- PIL raises OSError, SyntaxError, ValueError, DecompressionBomb...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return first[:200]
    return None


def find_bad_images(paths: Sequence[str]) -> list[tuple[str, str]]:
    """``[(path, reason)]`` for the files of ``paths`` that are not readable images, in ``paths`` order."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(image_problem, paths))
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]
