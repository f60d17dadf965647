"""The training recipe: every knob of ``archdsl train`` (and of the search's proxy training) in one
dataclass, loaded from a recipe YAML with located errors and overridable field by field.

    recipe = load_recipe("imagenet_300ep", overrides=["epochs=10", "ema=true"])   # a packaged name
    recipe = load_recipe("my_recipe.yaml")                                         # or a file
    recipe.peak_lr()          # lr, or lr_base * batch_size / lr_base_size (the linear scaling rule)

The defaults are the paper's ImageNet recipe (as Swin's; ../docs/train.md lists every field).
A recipe file may ``extends: other.yaml`` (or a packaged name) and override some of its fields.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Optional

import pydantic
import yaml

from archdsl.errors import SpecError, did_you_mean
from archdsl.language.schema import locate_in, validation_error_to_spec_error
from archdsl.language.yaml_loader import Pos, Positions, load_yaml, load_yaml_file

__all__ = ["Recipe", "load_recipe", "recipe_from_dict", "dump_recipe", "packaged_recipes", "RECIPE_DIR"]

Positive = Annotated[int, pydantic.Field(ge=1)]
NonNeg = Annotated[float, pydantic.Field(ge=0.0)]
Prob = Annotated[float, pydantic.Field(ge=0.0, le=1.0)]

RECIPE_DIR = Path(__file__).parent / "recipes"


@dataclass(frozen=True)
class Recipe:
    """A training recipe. ``batch_size`` is the global batch (all processes, all accumulation steps)."""

    epochs: Positive = 300
    batch_size: Positive = 4096
    lr: Optional[Annotated[float, pydantic.Field(gt=0.0)]] = None          # peak learning rate; None: lr_base * batch_size / lr_base_size
    lr_base: float = 1.0e-3             # the paper: 4e-3 at batch 4096 = 1e-3 per 1024 images
    lr_base_size: Positive = 1024
    opt: str = "adamw"                  # any timm optimizer name (create_optimizer_v2)
    opt_eps: float = 1.0e-8
    opt_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: NonNeg = 0.05          # not on biases and norm weights (timm's filter_bias_and_bn)
    sched: str = "cosine"               # any timm scheduler name (create_scheduler_v2), per step
    warmup_epochs: NonNeg = 20
    warmup_lr_ratio: float = 1.0e-3     # warm-up starts at peak * ratio (Swin: 5e-7 / 5e-4)
    min_lr_ratio: float = 1.0e-2        # cosine ends at peak * ratio (Swin: 5e-6 / 5e-4)
    label_smoothing: Prob = 0.1        # without mixup; with mixup the soft targets are smoothed
    mixup: NonNeg = 0.8                  # mixup alpha (0 = off)
    cutmix: NonNeg = 1.0                 # cutmix alpha (0 = off)
    mixup_prob: Prob = 1.0
    mixup_switch_prob: Prob = 0.5
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1"   # RandAugment (image files only)
    color_jitter: float = 0.4           # image files only; ignored when auto_augment is set
    reprob: Prob = 0.25                # random erasing probability
    remode: str = "pixel"
    hflip: Optional[Prob] = None       # None: 0.5 where flipping keeps the label (not for digits)
    crop_padding: Annotated[int, pydantic.Field(ge=0)] = 0               # in-memory tensor data: random crop after zero padding
    scale: tuple[float, float] = (0.08, 1.0)   # RandomResizedCrop (image files only)
    interpolation: str = "bicubic"
    crop_pct: Annotated[float, pydantic.Field(gt=0.0, le=1.0)] = 0.875             # evaluation: resize to size / crop_pct, centre crop
    drop_path: Optional[Annotated[float, pydantic.Field(ge=0.0, lt=1.0)]] = None   # None: the spec's drop_path
    grad_clip: NonNeg = 5.0              # max global grad norm (0 = off)
    ema: bool = False
    ema_decay: Prob = 0.9999
    seed: int = 0
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    accum_steps: Positive = 1                # gradient accumulation: batch_size / (world * accum) per step
    sync_bn: bool = False               # DistributedDataParallel on CUDA: SyncBatchNorm
    workers: Annotated[int, pydantic.Field(ge=0)] = 8                    # DataLoader workers per process (image files)
    eval_batch_size: Optional[Positive] = None   # None: the per-process training batch (at least 256)
    max_steps_per_epoch: Optional[Positive] = None   # cap (smoke runs, tests)
    checkpoint_every: Annotated[int, pydantic.Field(ge=0)] = 0           # also checkpoint every N optimizer steps (0 = per epoch only)

    def peak_lr(self) -> float:
        """The peak learning rate (the linear scaling rule when ``lr`` is not given)."""
        return float(self.lr) if self.lr is not None else self.lr_base * self.batch_size / self.lr_base_size

    def to_dict(self) -> dict:
        """Plain data (lists for tuples): YAML / JSON / a checkpoint."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> "Recipe":
        """A copy with some fields changed (validated)."""
        return recipe_from_dict({**self.to_dict(), **changes}, "<recipe>")


_ADAPTER = pydantic.TypeAdapter(Recipe)
FIELDS = [f.name for f in dataclasses.fields(Recipe)]


def packaged_recipes() -> list[str]:
    """Names of the recipes shipped with archdsl (``archdsl/train/recipes/*.yaml``)."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def _find(ref: str, base: Path | None) -> Path:
    """A recipe reference -> a file: a path (relative to ``base`` for ``extends``), or a packaged name."""
    for cand in ([base / ref] if base is not None else []) + [Path(ref)]:
        if cand.is_file():
            return cand
    packaged = RECIPE_DIR / f"{Path(ref).stem}.yaml"
    if Path(ref).suffix in ("", ".yaml", ".yml") and packaged.is_file() and \
            (Path(ref).parent == Path(".") or Path(ref).parent.name == "recipes"):
        return packaged
    raise SpecError(f"recipe not found: '{ref}' (a YAML file, or one of {', '.join(packaged_recipes())})")


def _check_keys(data: dict, positions: Positions, file: str) -> None:
    for key in data:
        if key not in FIELDS:
            raise SpecError(f"unknown recipe field '{key}'{did_you_mean(str(key), FIELDS)}",
                            **locate_in(positions, (key,), file))


def recipe_from_dict(data: dict, file: str = "<recipe>", positions: Positions | None = None) -> Recipe:
    """Validate plain data (every key a :class:`Recipe` field) into a recipe; errors are located."""
    positions = positions if positions is not None else {}
    _check_keys(data, positions, file)
    try:
        return _ADAPTER.validate_python(data)
    except pydantic.ValidationError as e:
        raise validation_error_to_spec_error(e, data, lambda p: locate_in(positions, p, file)) from None


def _load_file(path: Path, seen: tuple = ()) -> tuple[dict, Positions, str]:
    """A recipe file with its ``extends`` chain merged: (data, positions, display name)."""
    shown = str(path)
    if path.resolve() in seen:
        raise SpecError(f"recipe extends itself: {' -> '.join(str(s) for s in seen + (path,))}", file=shown)
    data, positions = load_yaml_file(path, display=shown)
    parent = data.pop("extends", None)
    if parent is None:
        return data, positions, shown
    if not isinstance(parent, str):
        raise SpecError("extends must be a recipe file or name", **locate_in(positions, ("extends",), shown))
    try:
        base, base_pos, _ = _load_file(_find(parent, path.parent), seen + (path.resolve(),))
    except SpecError as e:
        raise e.located(**locate_in(positions, ("extends",), shown)) from None
    return {**base, **data}, {**base_pos, **positions}, shown


def _parse_override(text: str) -> tuple[str, Any, Positions]:
    key, sep, value = str(text).partition("=")
    where = f"<--recipe-set {text}>"
    if not sep or not key.strip():
        raise SpecError(f"a recipe override is KEY=VALUE, got '{text}'", file=where)
    parsed, _ = load_yaml(value, where) if value.strip() else (None, {})
    return key.strip(), parsed, {(key.strip(),): Pos(where)}


def load_recipe(ref: str | Path | None = None, overrides: Iterable[str] = (), **fields: Any) -> Recipe:
    """A recipe file or packaged name (None: the defaults), then ``KEY=VALUE`` overrides (YAML
    values), then keyword fields (None values are skipped: unset CLI flags). Raises SpecError."""
    data: dict = {}
    positions: Positions = {}
    file = "<recipe>"
    if ref is not None:
        data, positions, file = _load_file(_find(str(ref), None))
    for text in overrides:
        key, value, pos = _parse_override(text)
        data[key] = value
        positions.update(pos)
    for key, value in fields.items():
        if value is not None:
            data[key] = value
            positions[(key,)] = Pos(f"<--{key.replace('_', '-')}>")
    return recipe_from_dict(data, file, positions)


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML (every field)."""
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
