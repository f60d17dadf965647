"""timm interop: archdsl specs in timm's model registry (``timm.create_model``). Needs timm.

Importing this module (or touching ``archdsl.timm``) registers every shipped spec (``specs/*.yaml``,
``specs/ablation/*.yaml``, ``specs/zoo/*.yaml`` of the source tree) under ``archdsl_<spec name>``
(``archdsl_mlla_t``, ``archdsl_swin_t``, ``archdsl_la_baseline``...): the prefix never collides with
timm's own names and says where a model comes from. A user spec takes one call::

    import timm, archdsl
    archdsl.timm.register_spec("runs/search/pareto/trial_5.yaml", "my_net")
    model = timm.create_model("my_net", num_classes=10)
    backbone = timm.create_model("archdsl_mlla_t", features_only=True, out_indices=(1, 2, 3))

Keyword arguments of ``timm.create_model`` map onto the spec: ``num_classes``, ``in_chans``,
``drop_rate``, ``drop_path_rate`` (spec ``drop_path``), ``img_size`` (spec ``image_size``),
``features_only`` / ``out_indices`` (archdsl's feature API), and ``overrides=[...]`` (any ``--set``
line, e.g. ``["stages.embed_dim=32"]``). Others are a TypeError. There are no hosted weights:
``pretrained=True`` is a ValueError; load converted weights with ``checkpoint_path=FILE`` (a state
dict written by ``archdsl import-weights``) instead.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import register_model
from timm.models._registry import _clear_model_entries
from torch import nn

from archdsl.compiler import build_model
from archdsl.errors import SpecError
from archdsl.language import load_spec

__all__ = ["PREFIX", "SPECS_DIR", "register_spec", "register_shipped", "shipped_specs", "create"]

PREFIX = "archdsl_"
SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"
SHIPPED_GLOBS = ("*.yaml", "ablation/*.yaml", "zoo/*.yaml")

# timm.create_model keyword -> spec field it sets
KWARG_FIELDS = {"num_classes": "num_classes", "in_chans": "in_chans", "drop_rate": "drop_rate",
                "drop_path_rate": "drop_path", "img_size": "image_size"}
_TIMM_PASSED = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")  # timm hands these to every entrypoint

default_cfgs: Dict[str, Dict[str, Any]] = {}  # read by timm's register_model (module attribute)


def shipped_specs(root: Path = SPECS_DIR) -> List[Path]:
    """The shipped spec files (none when the source tree's specs/ folder is absent)."""
    return [path for pattern in SHIPPED_GLOBS for path in sorted(root.glob(pattern))]


def _overrides(kwargs: Dict[str, Any]) -> List[str]:
    unknown = sorted(set(kwargs) - set(KWARG_FIELDS))
    if unknown:
        raise TypeError(f"archdsl timm models take {', '.join(sorted(KWARG_FIELDS))}, features_only, "
                        f"out_indices and overrides; got unexpected {', '.join(unknown)}")
    return [f"{KWARG_FIELDS[k]}={v}" for k, v in kwargs.items()]


def create(path: str | Path, name: str, spec_overrides: Sequence[str] = (), *, pretrained: bool = False,
           features_only: Optional[bool] = None, out_indices: Optional[Sequence[int]] = None,
           overrides: Iterable[str] = (), **kwargs: Any) -> nn.Module:
    """Build spec ``path`` as timm model ``name`` (the body of every registered entrypoint).
    ``features_only`` / ``out_indices`` go to :func:`archdsl.build_model` (archdsl's feature API:
    a list of ``[B, C_i, H_i, W_i]`` maps and ``feature_info``, timm's convention)."""
    for k in _TIMM_PASSED:
        kwargs.pop(k, None)
    if pretrained:
        raise ValueError(f"{name}: archdsl specs have no hosted pretrained weights; pass "
                         f"checkpoint_path=FILE (a state dict from `archdsl import-weights`) instead")
    ov = list(spec_overrides) + list(overrides) + _overrides(kwargs)
    feats = {k: v for k, v in (("features_only", features_only), ("out_indices", out_indices)) if v is not None}
    model = build_model(str(path), ov, **feats)
    model.pretrained_cfg = model.default_cfg = _default_cfg(name, model.spec, getattr(model, "num_classes", None))
    return model


def _default_cfg(name: str, spec: Any, num_classes: Optional[int] = None) -> Dict[str, Any]:
    size = int(spec.image_size)
    classes = int(spec.num_classes if num_classes is None else num_classes)
    return {"architecture": name, "url": "", "num_classes": classes,
            "input_size": (int(spec.in_chans), size, size), "pool_size": None, "crop_pct": 0.875,
            "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
            "first_conv": "", "classifier": "head.fc"}


def register_spec(path: str | Path, name: Optional[str] = None, *, overrides: Sequence[str] = ()) -> str:
    """Register spec file ``path`` with timm as ``name`` (default ``archdsl_<spec name>``); returns the
    name. ``overrides`` (``--set`` lines) apply before any ``create_model`` keyword. The spec is
    checked now (a SpecError names the file, line and key); registering a name again replaces it."""
    path = Path(path)
    spec = load_spec(str(path), list(overrides))
    name = name or PREFIX + str(spec.name)
    if not name.isidentifier():
        raise ValueError(f"timm model names are Python identifiers; got {name!r}")
    frozen = tuple(overrides)

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return create(path, name, frozen, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"archdsl spec {path} (a timm entrypoint registered by archdsl)"
    default_cfgs[name] = _default_cfg(name, spec)
    setattr(sys.modules[__name__], name, entrypoint)
    if timm.is_model(name):  # replacing our own registration: no overwrite warning
        _clear_model_entries(name)
    register_model(entrypoint)
    return name


def register_shipped(root: Path = SPECS_DIR) -> List[str]:
    """Register every shipped spec under ``archdsl_<spec name>``; returns the names."""
    return [register_spec(path) for path in shipped_specs(root)]


try:
    SHIPPED: List[str] = register_shipped()
except SpecError as e:  # a broken shipped file must not break the import; it is reported
    SHIPPED = []
    print(f"archdsl.integrations.timm: shipped specs not registered: {e}", file=sys.stderr)
