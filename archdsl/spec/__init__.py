"""Deprecated alias of :mod:`archdsl.language` (renamed in 0.2; kept importable for one release).

``import archdsl.spec`` and ``from archdsl.spec.schema import ...`` still work: the old module names
point at the new modules (``archdsl.spec.errors`` is :mod:`archdsl.errors`).
"""
from __future__ import annotations

import importlib
import sys

from archdsl.language import *  # noqa: F401,F403
from archdsl.language import __all__  # noqa: F401

_MOVED = {"errors": "archdsl.errors", "resolve": "archdsl.language.resolve",
          "schema": "archdsl.language.schema", "templates": "archdsl.language.templates",
          "yaml_loader": "archdsl.language.yaml_loader"}
for _old, _new in _MOVED.items():
    sys.modules[f"{__name__}.{_old}"] = globals()[_old] = importlib.import_module(_new)
