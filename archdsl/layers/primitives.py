"""Generic token modules (the template primitives that build them live in archdsl.compiler.primitives).

Every module here follows the token convention: ``forward(x: [B, N, C], hw: (H, W)) -> [B, N, C']``.
The channel-only modules subclass the torch module they extend (``TokenLinear(nn.Linear)``, ...), so
their parameters sit directly on them: a node ``{linear: 64, name: in_proj}`` gives the state-dict
keys ``in_proj.weight`` / ``in_proj.bias``, like the official code.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archdsl.layers.base import HW, map_to_tokens, tokens_to_map

# --------------------------------------------------------------------------------------------------
# modules


class TokenLinear(nn.Linear):
    """``nn.Linear`` on tokens: ``[B, N, C_in] -> [B, N, C_out]`` (the grid is ignored)."""

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:
        return super().forward(x)


class TokenConv2d(nn.Conv2d):
    """``nn.Conv2d`` applied on the token grid: ``[B, H*W, C_in] -> [B, H'*W', C_out]``.

    With stride 1 and the default 'same' padding the grid is kept; with stride > 1 the module sets
    ``returns_hw = True`` and returns ``(x, (H', W'))`` so sequences can track the new grid.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.returns_hw = self.stride != (1, 1)

    def forward(self, x: torch.Tensor, hw: HW):  # type: ignore[override]
        y, hw2 = map_to_tokens(super().forward(tokens_to_map(x, hw)))
        return (y, hw2) if self.returns_hw else y


class TokenLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel dim of ``[B, N, C]``."""

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:
        return super().forward(x)


class TokenRMSNorm(nn.RMSNorm):
    """RMSNorm over the channel dim of ``[B, N, C]``."""

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:
        return super().forward(x)


class TokenGroupNorm(nn.GroupNorm):
    """GroupNorm of ``[B, N, C]`` on the grid: statistics per sample over each group of channels and
    all tokens (``nn.GroupNorm`` on ``[B, C, H, W]``; ``groups: 1`` is PoolFormer's norm)."""

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:  # type: ignore[override]
        return map_to_tokens(super().forward(tokens_to_map(x, hw)))[0]


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm over channels of ``[B, N, C]`` (statistics over batch and tokens)."""

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


class Activation(nn.Module):
    """A parameter-free elementwise function by name: relu, gelu, silu, sigmoid, tanh, identity."""

    FUNCS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "sigmoid": torch.sigmoid,
             "tanh": torch.tanh, "identity": _identity}

    def __init__(self, name: str):
        super().__init__()
        if name not in self.FUNCS:
            raise ValueError(f"unknown activation '{name}'; expected one of {', '.join(self.FUNCS)}")
        self.name = name
        self.fn = self.FUNCS[name]

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class DropPath(nn.Module):
    """Stochastic depth per sample (timm): in training, zero a sample's branch with probability
    ``p`` and scale the kept ones by ``1 / (1 - p)``; identity in eval or when ``p == 0``."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"drop_path rate must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}"


class Dropout(nn.Dropout):
    """``nn.Dropout`` taking ``(x, hw)``."""

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:
        return super().forward(x)


class Mlp(nn.Module):
    """timm-style MLP: ``fc1 (C -> hidden) -> act -> drop -> fc2 (hidden -> out) -> drop``."""

    def __init__(self, dim: int, hidden: int, out: int, act: str = "gelu", drop: float = 0.0,
                 bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = Activation(act)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, out, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class LayerScale(nn.Module):
    """Per-channel learned scale (CaiT / ConvNeXt layer scale): ``x * gamma``, ``gamma: [C]``
    initialised to ``init``. x: [B, N, C] -> [B, N, C]."""

    def __init__(self, dim: int, init: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:
        return x * self.gamma


class ChannelSlice(nn.Module):
    """Channels ``start:stop`` of the tokens: ``[B, N, C] -> [B, N, stop - start]`` (to run a module
    on part of the channels, as MambaOut's partial depthwise conv, inside a ``concat`` branch)."""

    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop = int(start), int(stop)

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:
        return x[..., self.start:self.stop]

    def extra_repr(self) -> str:
        return f"{self.start}:{self.stop}"


class SequenceConv1d(nn.Conv1d):
    """Depthwise 1-D conv along the token sequence (Mamba's ``conv1d``): ``[B, N, C] -> [B, N, C]``.
    ``causal``: padded by ``kernel - 1`` on the left only, so token n sees tokens n-k+1..n (Mamba);
    else ``kernel // 2`` on both sides (odd kernels). Keys ``weight [C, 1, k]``, ``bias [C]``."""

    def __init__(self, dim: int, kernel: int = 4, causal: bool = True, bias: bool = True):
        if not causal and kernel % 2 == 0:
            raise ValueError(f"a non-causal conv1d needs an odd kernel to keep the length, got {kernel}")
        super().__init__(dim, dim, kernel, groups=dim, bias=bias, padding=kernel - 1 if causal else kernel // 2)
        self.causal = causal

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:  # type: ignore[override]
        n = x.shape[1]
        return super().forward(x.transpose(1, 2))[..., :n].transpose(1, 2)


class Flip(nn.Module):
    """The token sequence reversed: ``[B, N, C] -> [B, N, C]`` with ``y[:, n] = x[:, N-1-n]`` (Vim's
    backward scan: flip, scan, flip back)."""

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:
        return x.flip(1)


class Scale(nn.Module):
    """A constant factor: ``x * value`` (no parameter), e.g. Vim's average of its two scans."""

    def __init__(self, value: float):
        super().__init__()
        self.value = float(value)

    def forward(self, x: torch.Tensor, hw: HW | None = None) -> torch.Tensor:
        return x * self.value

    def extra_repr(self) -> str:
        return f"{self.value:g}"


NORMS = ("layernorm", "batchnorm", "rmsnorm", "groupnorm")


def make_norm(kind: str, dim: int, eps: float | None = None, groups: int = 1) -> nn.Module:
    """A token norm by name (layernorm | batchnorm | rmsnorm | groupnorm with ``groups``). Every norm
    acts on the channels of each token, so ``layernorm`` is also timm's channels-first LayerNorm2d."""
    if kind == "groupnorm":
        return TokenGroupNorm(groups, dim, eps=1e-5 if eps is None else eps)
    if kind == "layernorm":
        return TokenLayerNorm(dim, eps=1e-5 if eps is None else eps)
    if kind == "batchnorm":
        return TokenBatchNorm(dim, eps=1e-5 if eps is None else eps)
    if kind == "rmsnorm":
        return TokenRMSNorm(dim, eps=1e-6 if eps is None else eps)
    raise ValueError(f"unknown norm '{kind}'; expected one of {', '.join(NORMS)}")
