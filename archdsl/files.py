"""Files written whole or not at all: every result, checkpoint, weight file and export of archdsl
goes through :func:`write_atomic` (imports nothing of archdsl)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Union

__all__ = ["write_atomic"]

Content = Union[str, bytes, Callable[[str], None]]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Union[str, "os.PathLike[str]"], content: Content, *, suffix: str = ".tmp") -> None:
    """Write ``content`` to ``path`` through a temporary file in the same folder (created if missing),
    flushed to disk, then ``os.replace``-d over ``path``: a reader sees the old file or the new one,
    never half of one, and an error or Ctrl-C midway leaves no temporary file behind.

    ``content``: text (written as UTF-8, newlines as given), bytes, or a function that writes the
    file whose name it is given (``torch.save``, ``fig.savefig``, ...; ``suffix`` is the temporary
    file's extension for writers that look at it). The file gets the mode a plain ``open`` would
    give it (0666 less the umask), not ``mkstemp``'s 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        if callable(content):
            os.close(fd)
            content(tmp)
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
