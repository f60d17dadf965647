"""Every bound archdsl puts on what a spec may ask for, in one place (docs/security.md lists them).

A spec is untrusted input (specs are shared like papers), so every size the language accepts is
bounded while loading, with a located message naming the bound and how to raise it::

    from archdsl.language.limits import limits
    limits().max_stage_depth        # 256, or $ARCHDSL_MAX_STAGE_DEPTH when set

Each field can be raised (or lowered) with the environment variable ``ARCHDSL_<FIELD>`` (upper
case), or on the command line with ``--limit FIELD=VALUE`` (any sub-command; the CLI sets the
environment variable, so search workers inherit it). ``max_memory`` also has ``--max-memory``
and accepts a size with a unit (``8G``, ``512M``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields

from archdsl.errors import SpecError, did_you_mean

__all__ = ["Limits", "limits", "limit_hint", "parse_size", "env_name", "set_limit", "PLUGINS_ENV",
           "plugins_allowed"]

PLUGINS_ENV = "ARCHDSL_ALLOW_PLUGINS"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _machine_memory() -> int:
    """Physical memory of this machine in bytes (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def _default_memory() -> int:
    total = _machine_memory()
    return total // 2 if total else 8 << 30


@dataclass(frozen=True)
class Limits:
    """The bounds (defaults in the field definitions; each documented in docs/security.md)."""

    max_file_bytes: int = 256 << 10
    """bytes read from one spec / template / search-space file (checked before parsing)"""
    max_yaml_depth: int = 64
    """nesting depth of YAML collections in a file or a ``--set`` value, and of ``--set`` key paths"""
    max_yaml_nodes: int = 10_000
    """YAML nodes (scalars, lists, mappings) written in one document, counted while parsing"""
    max_yaml_expanded: int = 50_000
    """nodes of one document after alias (``*a``) expansion (alias bombs stop here)"""
    max_extends_chain: int = 32
    """files in one ``extends:`` chain"""
    max_extends_files: int = 64
    """base files read while resolving one spec's ``extends:`` (lists of lists grow fast)"""
    max_stages: int = 16
    """stages of the hierarchical layout"""
    max_stage_depth: int = 256
    """blocks in one stage (``stages.depths.N``, ``depth`` of the isotropic layout)"""
    max_total_blocks: int = 512
    """blocks in the whole model"""
    max_width: int = 16_384
    """channel width of a stage (``stages.dims``, ``embed_dim`` doubled per stage, ``dim``)"""
    max_heads: int = 1_024
    """attention heads of a stage"""
    max_image_size: int = 4_096
    """``image_size`` of a spec and ``--image-size``"""
    max_in_chans: int = 1_024
    """``in_chans``"""
    max_num_classes: int = 1_000_000
    """``num_classes``"""
    max_expr_chars: int = 500
    """characters of one template expression (``$dim * 2``)"""
    max_expr_nodes: int = 200
    """operators, numbers and variables in one template expression"""
    max_expr_magnitude: int = 10 ** 12
    """absolute value of every number a template expression reads or computes"""
    max_memory: int = field(default_factory=_default_memory)
    """bytes ``archdsl build`` may allocate (weights + the forward pass), estimated on the meta
    device first; default half of this machine's memory"""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"limit {f.name} must be a positive integer, got {v!r}")


def env_name(name: str) -> str:
    """``max_stage_depth`` -> ``ARCHDSL_MAX_STAGE_DEPTH``."""
    return "ARCHDSL_" + name.upper()


def parse_size(text: str) -> int:
    """``"4096"`` -> 4096, ``"8G"`` / ``"8GiB"`` -> 8 << 30, ``"1e6"`` -> 1000000."""
    m = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.I)
    if not m:
        raise ValueError(f"expected a positive number (optionally with K, M, G or T), got {text!r}")
    value = float(m.group(1).replace("_", "")) * _UNITS[m.group(2).upper()]
    if not 1 <= value < 1 << 62:
        raise ValueError(f"expected a positive number, got {text!r}")
    return int(value)


def limits() -> Limits:
    """The limits in force: the defaults, replaced by the ``ARCHDSL_*`` environment variables that
    are set. A malformed variable is a :class:`SpecError` naming it."""
    values = {}
    for f in fields(Limits):
        raw = os.environ.get(env_name(f.name))
        if raw is None or not raw.strip():
            continue
        try:
            values[f.name] = parse_size(raw)
        except ValueError as e:
            raise SpecError(f"environment variable {env_name(f.name)}: {e}") from None
    return Limits(**values)


def set_limit(text: str) -> None:
    """Apply ``--limit NAME=VALUE`` (sets ``ARCHDSL_NAME`` for this process and its children)."""
    name, sep, value = str(text).partition("=")
    name = name.strip().replace("-", "_")
    known = [f.name for f in fields(Limits)]
    if not sep or name not in known:
        raise SpecError(f"--limit {text!r}: expected NAME=VALUE with NAME one of {', '.join(known)}"
                        f"{did_you_mean(name, known)}")
    try:
        parse_size(value)
    except ValueError as e:
        raise SpecError(f"--limit {name}: {e}") from None
    os.environ[env_name(name)] = value.strip()


def limit_hint(name: str) -> str:
    """``"(limit max_stage_depth = 256; raise it with --limit max_stage_depth=N or
    ARCHDSL_MAX_STAGE_DEPTH=N)"`` -- the tail of every message about a bound."""
    value = getattr(limits(), name)
    return f"(limit {name} = {value}; raise it with --limit {name}=N or {env_name(name)}=N)"


def plugins_allowed(allow: bool | None = None) -> bool:
    """Whether a spec's ``plugins:`` may be imported: ``allow`` when given, else the environment
    variable ``ARCHDSL_ALLOW_PLUGINS=1`` (``archdsl --allow-plugins`` sets it)."""
    if allow is not None:
        return bool(allow)
    return os.environ.get(PLUGINS_ENV, "").strip().lower() in ("1", "true", "yes", "on")

