"""nn.Module layers. Importing this package imports every submodule, so their ``@register``
decorators run (mixers, positional encodings, gates, primitives, stems, downsamplers, heads)."""
from __future__ import annotations

import importlib
import pkgutil


def _import_all() -> None:
    for info in pkgutil.walk_packages(__path__, prefix=__name__ + "."):
        importlib.import_module(info.name)


_import_all()
