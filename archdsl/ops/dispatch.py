"""Which backend a dispatched op ran last (fla's habit: what ran is reported, never hidden).

An op with several implementations (``selective_scan``: cuda / cpp / chunked / ref) records the label
of the one it ran with :func:`record`; layers and benchmarks read it with :func:`last`. The record is
a plain module-level dict keyed by op name (no state hangs on function objects)."""
from __future__ import annotations

from typing import Dict, Optional

__all__ = ["record", "last"]

_LAST: Dict[str, str] = {}


def record(op: str, label: str) -> None:
    """Note that ``op`` just ran on the backend ``label`` (e.g. ``"cpp"``, ``"chunked(T=64)"``)."""
    _LAST[op] = label


def last(op: str) -> Optional[str]:
    """The label :func:`record` last saw for ``op``; None before its first call."""
    return _LAST.get(op)
