"""Classification heads (kind ``"head"``): ``cls(dim, num_classes, **options)``,
``forward(x[B, N, C], hw, pre_logits=False) -> logits[B, num_classes]`` (``pre_logits``: the pooled
``[B, C]`` before the classifier ``fc``). ``num_classes == 0`` gives pooled features."""
from __future__ import annotations

import torch
from torch import nn

from archdsl.layers.base import HW
from archdsl.layers.primitives import make_norm
from archdsl.registry import register


@register("head", "norm_pool_linear")
class NormPoolLinear(nn.Module):
    """``norm -> mean over tokens -> dropout -> fc (Linear C -> K)`` (MLLA / Swin head); ``norm``:
    layernorm (default) | batchnorm | rmsnorm."""

    def __init__(self, dim: int, num_classes: int, drop: float = 0.0, norm: str = "layernorm"):
        super().__init__()
        self.norm = make_norm(norm, dim)
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: HW | None = None, pre_logits: bool = False) -> torch.Tensor:
        y = self.drop(self.norm(x).mean(dim=1))  # [B, N, C] -> [B, C]
        return y if pre_logits else self.fc(y)  # -> [B, K]


@register("head", "pool_linear")
class PoolLinear(nn.Module):
    """``mean over tokens -> dropout -> fc (Linear C -> K)``."""

    def __init__(self, dim: int, num_classes: int, drop: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: HW | None = None, pre_logits: bool = False) -> torch.Tensor:
        y = self.drop(x.mean(dim=1))  # [B, N, C] -> [B, C]
        return y if pre_logits else self.fc(y)
