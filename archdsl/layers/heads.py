"""Classification heads (kind ``"head"``): ``cls(dim, num_classes, **options)``,
``forward(x[B, N, C], hw, pre_logits=False) -> logits[B, num_classes]`` (``pre_logits``: the pooled
``[B, C]`` before the classifier ``fc``). ``num_classes == 0`` gives pooled features.

Pooling (``global_pool``): ``avg`` averages the grid tokens, ``token`` takes the class token. The
layout passes ``prefix_tokens`` (1 when the spec has ``class_token``, which the model puts first
before the head; else 0): ``avg`` skips the prefix tokens, as timm's ViT does.
"""
from __future__ import annotations

import torch
from torch import nn

from archdsl.layers.base import HW
from archdsl.layers.primitives import Activation, make_norm
from archdsl.registry import register

POOLS = ("avg", "token")
NORM_POSITIONS = ("before", "after")


def _check_pool(global_pool: str, prefix_tokens: int) -> None:
    if global_pool not in POOLS:
        raise ValueError(f"global_pool must be one of {', '.join(POOLS)}, got {global_pool!r}")
    if global_pool == "token" and prefix_tokens < 1:
        raise ValueError("global_pool: token needs a class token (add class_token: true to the spec)")


def pool_tokens(x: torch.Tensor, global_pool: str, prefix_tokens: int) -> torch.Tensor:
    """``[B, N, C] -> [B, C]``: the class token (index 0) or the mean of the tokens after the prefix."""
    return x[:, 0] if global_pool == "token" else x[:, prefix_tokens:].mean(dim=1)


@register("head", "norm_pool_linear")
class NormPoolLinear(nn.Module):
    """``norm -> pool -> dropout -> fc (Linear C -> K)`` (MLLA / Swin / ViT head); ``norm``:
    layernorm (default) | batchnorm | rmsnorm | none; ``norm_position: after`` pools first and
    normalises the pooled vector (ConvNeXt's head); ``global_pool``: avg | token."""

    def __init__(self, dim: int, num_classes: int, drop: float = 0.0, norm: str = "layernorm",
                 norm_eps: float | None = None, norm_position: str = "before", global_pool: str = "avg",
                 prefix_tokens: int = 0):
        super().__init__()
        _check_pool(global_pool, prefix_tokens)
        if norm_position not in NORM_POSITIONS:
            raise ValueError(f"norm_position must be one of {', '.join(NORM_POSITIONS)}, got {norm_position!r}")
        self.global_pool, self.prefix_tokens = global_pool, int(prefix_tokens)
        self.norm_first = norm_position == "before"
        self.norm = make_norm(norm, dim, norm_eps) if norm != "none" else nn.Identity()
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: HW | None = None, pre_logits: bool = False) -> torch.Tensor:
        if self.norm_first:
            y = pool_tokens(self.norm(x), self.global_pool, self.prefix_tokens)  # [B, N, C] -> [B, C]
        else:
            y = self.norm(pool_tokens(x, self.global_pool, self.prefix_tokens)[:, None])[:, 0]
        y = self.drop(y)
        return y if pre_logits else self.fc(y)  # -> [B, K]


@register("head", "pool_linear")
class PoolLinear(nn.Module):
    """``pool -> dropout -> fc (Linear C -> K)``; ``global_pool``: avg | token."""

    def __init__(self, dim: int, num_classes: int, drop: float = 0.0, global_pool: str = "avg",
                 prefix_tokens: int = 0):
        super().__init__()
        _check_pool(global_pool, prefix_tokens)
        self.global_pool, self.prefix_tokens = global_pool, int(prefix_tokens)
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: HW | None = None, pre_logits: bool = False) -> torch.Tensor:
        y = self.drop(pool_tokens(x, self.global_pool, self.prefix_tokens))  # [B, N, C] -> [B, C]
        return y if pre_logits else self.fc(y)


@register("head", "pool_norm_mlp")
class PoolNormMlp(nn.Module):
    """MambaOut's MLP head: ``pool -> norm -> fc1 (C -> ratio*C) -> act -> norm2 -> dropout -> fc``
    (timm ``MlpHead``). ``norm``: layernorm | batchnorm | rmsnorm."""

    def __init__(self, dim: int, num_classes: int, mlp_ratio: float = 4.0, act: str = "gelu",
                 norm: str = "layernorm", norm_eps: float | None = None, drop: float = 0.0,
                 global_pool: str = "avg", prefix_tokens: int = 0):
        super().__init__()
        _check_pool(global_pool, prefix_tokens)
        self.global_pool, self.prefix_tokens = global_pool, int(prefix_tokens)
        hidden = int(mlp_ratio * dim)
        if hidden < 1:
            raise ValueError(f"mlp_ratio {mlp_ratio} gives an empty hidden layer for dim {dim}")
        self.norm = make_norm(norm, dim, norm_eps)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = Activation(act)
        self.norm2 = make_norm(norm, hidden, norm_eps)
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: HW | None = None, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(pool_tokens(x, self.global_pool, self.prefix_tokens)[:, None])  # [B, 1, C]
        y = self.drop(self.norm2(self.act(self.fc1(x)))[:, 0])                       # [B, hidden]
        return y if pre_logits else self.fc(y)                                          # [B, K]
