"""The model class every layout returns: stem -> (positional encodings) -> stages -> head, with
timm's model interface (``forward_features`` / ``forward_head`` / ``forward_intermediates`` /
``reset_classifier`` / ``feature_info`` / ``pretrained_cfg``) and a ``features_only`` mode."""
from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from archdsl.layers.base import map_to_tokens, tokens_to_map
from archdsl.layouts.features import FeatureInfo, Indices, default_out_indices, take_indices

HW = Tuple[int, int]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Stage(nn.Module):
    """``blocks`` (each ``(x, hw) -> x``) then an optional ``downsample`` (``(x, hw) -> (x', hw')``).

    ``forward(x[B, H*W, C], hw) -> (x'[B, H'*W', C'], hw')``.
    """

    def __init__(self, blocks: Sequence[nn.Module], downsample: Optional[nn.Module] = None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor, hw: HW) -> Tuple[torch.Tensor, HW]:
        for blk in self.blocks:
            x = blk(x, hw)
        if self.downsample is not None:
            x, hw = self.downsample(x, hw)
        return x, tuple(hw)


def _to_format(x: torch.Tensor, hw: HW, fmt: str) -> torch.Tensor:
    """Tokens ``[B, H*W, C]`` -> ``[B, C, H, W]`` (NCHW) or ``[B, H, W, C]`` (NHWC)."""
    if fmt == "NCHW":
        return tokens_to_map(x, hw).contiguous()
    if fmt == "NHWC":
        return x.reshape(x.shape[0], hw[0], hw[1], x.shape[-1])
    raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {fmt!r}")


class ArchModel(nn.Module):
    """A compiled model. ``forward(img[B, C, H, W]) -> logits[B, num_classes]``, or, in
    ``features_only`` mode, a list of feature maps ``[B, C_i, H_i, W_i]`` (one per ``out_indices``).

    Attributes: ``stem``, ``pos_embed`` (ModuleList, may be empty), ``stages[i].blocks[j]``,
    ``stages[i].downsample`` (None in the last stage), ``head`` (None in features_only mode),
    ``cls_token`` (a :class:`archdsl.layers.tokens.ClassToken` or None),
    ``norm{i}`` (per-output LayerNorms when the features have ``norm``, named like the official MLLA
    detection backbone); ``spec``, ``layout``, ``dims`` (width per stage), ``reduction`` (total
    stride, when known), ``default_input_size``, ``num_features``, ``num_classes``,
    ``feature_info`` (:class:`FeatureInfo`), ``pretrained_cfg`` / ``default_cfg``.

    Features (timm's convention): hierarchical layout: feature ``i`` is stage ``i``'s output before its
    downsample (reduction ``stem stride * 2**i``); isotropic: feature ``i`` is block ``i``'s output.
    Any input size works: stems pad to their patch size and downsamplers pad odd grids, as the
    official detection backbones (a feature map is ``ceil(H / reduction)`` high); smaller than the
    total stride is rejected.
    """

    def __init__(self, *, stem: nn.Module, stages: List[Stage], head: nn.Module, pos_embed: Sequence[nn.Module] = (),
                 spec: Any = None, layout: str = "hierarchical", dims: Sequence[int] = (), in_chans: int = 3,
                 image_size: int = 224, reduction: Optional[int] = None,
                 feature_reductions: Optional[Sequence[Optional[int]]] = None, cls_token: Optional[nn.Module] = None):
        super().__init__()
        self.stem = stem
        self.cls_token = cls_token
        self.pos_embed = nn.ModuleList(pos_embed)
        self.stages = nn.ModuleList(stages)
        self.head: Optional[nn.Module] = head
        self.spec = spec
        self.layout = layout
        self.dims = list(dims)
        self.in_chans = in_chans
        self.reduction = reduction
        self.default_input_size = (in_chans, image_size, image_size)
        self.num_features = self.head_hidden_size = self.dims[-1] if self.dims else None
        fc = getattr(head, "fc", None)
        self.num_classes = fc.out_features if isinstance(fc, nn.Linear) else 0
        self.feature_reductions = list(feature_reductions or [reduction] * self._num_feature_levels())
        self.features_only = False
        self.out_indices: Tuple[int, ...] = default_out_indices(layout, self._num_feature_levels())
        self.feature_norm = False
        self._pretrained_cfg: Optional[Dict[str, Any]] = None

    @property
    def name(self) -> str:
        return str(getattr(self.spec, "name", None) or "model")

    # ------------------------------------------------------------------ features
    def _num_feature_levels(self) -> int:
        return len(self.stages[0].blocks) if self.layout == "isotropic" else len(self.stages)

    def _feature_dict(self, i: int) -> Dict[str, Any]:
        if self.layout == "isotropic":
            dim, module = self.dims[0], f"stages.0.blocks.{i}"
        else:
            dim, module = self.dims[i], f"stages.{i}.blocks.{len(self.stages[i].blocks) - 1}"
        if f"norm{i}" in self._modules:
            module = f"norm{i}"
        return {"num_chs": dim, "reduction": self.feature_reductions[i], "module": module, "index": i}

    @property
    def feature_info(self) -> FeatureInfo:
        """Every available feature (a classifier), or the ``out_indices`` ones (features_only)."""
        info = FeatureInfo([self._feature_dict(i) for i in range(self._num_feature_levels())])
        return info.select(self.out_indices) if self.features_only else info

    def set_features(self, out_indices: Indices = None, norm: bool = False, features_only: bool = True) -> "ArchModel":
        """Choose the feature outputs (``None``: every stage / four blocks when isotropic; an int n: the
        last n; negative indices count from the end), add a LayerNorm ``norm{i}`` per output when
        ``norm`` (initialised to identity), and with ``features_only`` drop the head so that
        ``forward`` returns the feature maps. Raises ValueError for bad indices."""
        n = self._num_feature_levels()
        taken = list(default_out_indices(self.layout, n)) if out_indices is None else take_indices(n, out_indices)[0]
        for name in self._norm_names():
            delattr(self, name)
        ref = next(self.parameters(), None)
        for i in taken if norm else ():
            dim = self._feature_dict(i)["num_chs"]
            self.add_module(f"norm{i}", nn.LayerNorm(dim, device=ref.device if ref is not None else None))
        self.out_indices, self.feature_norm = tuple(taken), bool(norm)
        if features_only:
            self.features_only = True
            self._drop_head()
        return self

    def _drop_head(self) -> None:
        """Remove the head module (so loading a classifier's state dict reports its keys unexpected)."""
        self._modules.pop("head", None)
        self.__dict__["head"] = None
        self.num_classes = 0

    def _norm_names(self) -> List[str]:
        return [k for k in self._modules if k.startswith("norm") and k[4:].isdigit()]

    def _steps(self) -> List[Tuple[List[nn.Module], Optional[nn.Module]]]:
        """``(blocks, transition)`` per feature index."""
        if self.layout == "isotropic":
            return [([blk], None) for blk in self.stages[0].blocks]
        return [(list(s.blocks), s.downsample) for s in self.stages]

    def _feature_norm(self, i: int, last: bool) -> Optional[nn.Module]:
        norm = self._modules.get(f"norm{i}")
        if norm is None and last and self.head is not None:
            norm = getattr(self.head, "norm", None)  # timm: norm=True normalises the last output
        return norm

    def forward_intermediates(self, x: torch.Tensor, indices: Indices = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False
                              ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """timm's signature. ``indices``: None (all), an int n (last n) or feature indices.
        ``norm``: apply the per-output norms ``norm{i}`` (and, as timm, the head's norm to the last
        feature when it has no own). Returns the list of maps ``[B, C_i, H_i, W_i]`` (or NHWC) when
        ``intermediates_only``, else ``(forward_features output, list)``."""
        taken, last = take_indices(self._num_feature_levels(), indices)
        n_levels = self._num_feature_levels()
        x, hw = self.embed(x)
        feats = []
        for i, (blocks, transition) in enumerate(self._steps()):
            for blk in blocks:
                x = blk(x, hw)
            if i in taken:
                f = self._feature_norm(i, i == n_levels - 1) if norm else None
                g = self.grid_tokens(x)
                feats.append(_to_format(f(g) if f is not None else g, hw, output_fmt))
            if i == last and (stop_early or intermediates_only):
                break
            if transition is not None:
                x, hw = transition(x, hw)
        if intermediates_only:
            return feats
        return _to_format(self.grid_tokens(x), hw, "NCHW"), feats

    def prune_intermediate_layers(self, indices: Indices = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """timm's: drop the stages (blocks when isotropic) after the last of ``indices``, the head
        (``prune_head``) and the per-output norms (``prune_norm``); returns the absolute indices."""
        taken, last = take_indices(self._num_feature_levels(), indices)
        if self.layout == "isotropic":
            del self.stages[0].blocks[last + 1:]
        else:
            del self.stages[last + 1:]
            self.stages[last].downsample = None
            self.dims = self.dims[: last + 1]
            self.num_features = self.head_hidden_size = self.dims[-1]
        self.feature_reductions = self.feature_reductions[: last + 1]
        self.reduction = self.feature_reductions[-1]
        self.out_indices = tuple(i for i in self.out_indices if i <= last) or tuple(taken)
        for name in self._norm_names():
            if prune_norm or int(name[4:]) > last:
                delattr(self, name)
        self.feature_norm = self.feature_norm and not prune_norm
        if prune_head:
            self._drop_head()
        return taken

    # ------------------------------------------------------------------ forward
    def check_input(self, img: torch.Tensor) -> None:
        """Raise ValueError for a wrong channel count or an image smaller than the total stride."""
        if img.dim() != 4 or img.shape[1] != self.in_chans:
            raise ValueError(f"expected images [B, {self.in_chans}, H, W], got {list(img.shape)}")
        H, W = img.shape[-2:]
        r = self.reduction
        if r and (H < r or W < r):
            raise ValueError(f"input {H}x{W} is too small for this model: the layout reduces the image "
                             f"by {r} in total, so H and W must be >= {r}")

    def add_class_token(self, x: torch.Tensor) -> torch.Tensor:
        """After the stem: ``[B, N, C] -> [B, N + 1, C]`` with the class token (identity without one)."""
        return x if self.cls_token is None else self.cls_token(x)

    def class_token_first(self, x: torch.Tensor) -> torch.Tensor:
        """Before the head: the class token moved to index 0 (identity without one)."""
        return x if self.cls_token is None else self.cls_token.to_front(x)

    def embed(self, img: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        """Stem, class token (if any) and positional encodings: ``img [B, C, H, W] -> (tokens
        [B, N (+1), dim0], (H', W'))``."""
        self.check_input(img)
        x, hw = self.stem(img)
        x = self.add_class_token(x)
        for pe in self.pos_embed:
            x = pe(x, hw)
        return x, tuple(hw)

    def forward_tokens(self, img: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        """Everything before the head: ``img -> (tokens [B, N, C_last], (H', W'))``."""
        x, hw = self.embed(img)
        for stage in self.stages:
            x, hw = stage(x, hw)
        return self.class_token_first(x), hw

    def forward_features(self, img: torch.Tensor) -> torch.Tensor:
        """``img [B, C, H, W] -> [B, C_last, H', W']`` (the last stage, before the head); with a class
        token the tokens ``[B, 1 + H'*W', C]`` (class token first), as timm's ViT."""
        x, hw = self.forward_tokens(img)
        return x if self.cls_token is not None else tokens_to_map(x, hw)

    def grid_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The grid tokens only (the class token, if any, dropped): ``[B, H*W, C]``."""
        return x if self.cls_token is None else self.class_token_first(x)[:, 1:]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``forward_features`` output ``[B, C, H, W]`` -> logits ``[B, K]`` (or the pooled
        ``[B, C]`` features before the classifier with ``pre_logits``)."""
        if self.head is None:
            raise ValueError("this model has no head (features_only or pruned)")
        if x.dim() == 3 and self.cls_token is not None:  # forward_features' tokens, class token first
            t, hw = x, None
        elif x.dim() != 4:
            raise ValueError(f"forward_head expects forward_features' map [B, C, H, W], got {list(x.shape)}")
        else:
            t, hw = map_to_tokens(x)
        if not pre_logits:
            return self.head(t, hw)
        if "pre_logits" not in inspect.signature(self.head.forward).parameters:
            raise ValueError(f"head {type(self.head).__name__} has no pre_logits option")
        return self.head(t, hw, pre_logits=True)

    def forward(self, img: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        if self.features_only or self.head is None:
            return self.forward_intermediates(img, self.out_indices, norm=True, intermediates_only=True)
        x, hw = self.forward_tokens(img)
        return self.head(x, hw)

    # ------------------------------------------------------------------ classifier and metadata
    def get_classifier(self) -> nn.Module:
        return getattr(self.head, "fc", None) if self.head is not None else None

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the head's classifier ``fc`` by a fresh ``Linear(num_features, num_classes)``
        (``nn.Identity`` for 0). archdsl heads mean-pool: ``global_pool`` may be None or 'avg'."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"archdsl heads mean-pool the tokens: global_pool must be None or 'avg', got {global_pool!r}")
        old = self.get_classifier()
        if old is None:
            raise ValueError("this model has no classifier 'head.fc' to reset")
        ref = next(self.parameters())
        fc: nn.Module = nn.Identity()
        if num_classes > 0:
            fc = nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)
        self.head.fc = fc
        self.num_classes = int(num_classes)

    def _first_conv(self) -> Optional[str]:
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d):
                return name
        return None

    @property
    def pretrained_cfg(self) -> Dict[str, Any]:
        """timm-style metadata (assignable; timm's create_model sets its own)."""
        if self._pretrained_cfg is not None:
            return self._pretrained_cfg
        c, h, w = self.default_input_size
        return {"architecture": self.name, "num_classes": self.num_classes, "input_size": (c, h, w),
                "fixed_input_size": False, "interpolation": "bicubic", "crop_pct": 0.9,
                "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "first_conv": self._first_conv(),
                "classifier": "head.fc" if self.get_classifier() is not None else None,
                "pool_size": (-(-h // self.reduction), -(-w // self.reduction)) if self.reduction else None}

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg: Dict[str, Any]) -> None:
        self._pretrained_cfg = dict(cfg) if cfg is not None else None

    default_cfg = pretrained_cfg
