"""The one error type of the language.

Every user-facing problem with a spec (bad YAML, unknown key, wrong value, impossible shape, missing
file) is raised as :class:`SpecError`. The CLI prints ``str(err)`` as a single line and exits with 2.
"""
from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(name: str, candidates: Iterable[str], n: int = 1) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=n, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control and other non-printable characters (NUL, BEL,
    ESC sequences, newlines) are written as Python escapes (``\\x1b``), so a spec cannot move the
    cursor or recolour the terminal through an error message."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SpecError(ValueError):
    """A problem in a spec, located as ``FILE:LINE:COL: key.path: message``.

    Attributes are all optional; ``str()`` prints the parts that are known.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 col: int | None = None, path: str | None = None):
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.path = path
        super().__init__(self.__str__())

    def located(self, *, file: str | None = None, line: int | None = None, col: int | None = None,
                path: str | None = None) -> "SpecError":
        """Fill in location fields that are still unknown (returns self, for ``raise err.located(...)``)."""
        self.file = self.file or file
        self.line = self.line if self.line is not None else line
        self.col = self.col if self.col is not None else col
        self.path = self.path or path
        self.args = (self.__str__(),)
        return self

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.col is not None:
                    where += f":{self.col}"
            where += ": "
        path = f"{self.path}: " if self.path else ""
        return printable(f"{where}{path}{self.message}")
