"""Positional encodings (registry kind ``posenc``): ``cls(dim, **options)``, ``(x, hw) -> x``.

- ``ape``    learned absolute embedding [1, h0*w0, C] for a base grid, bicubic-resized to other grids.
- ``cpe``    conditional PE: x + dwconv3x3(x) (with bias).
- ``rope2d`` rotary 2-D embedding as the official MLLA code (docs/paper.md §4), computed for the
             actual grid (tables cached by archdsl.ops.rope); no state-dict entry.
- ``rope1d`` rotary 1-D embedding over the row-major token index.
:class:`LePE` (dwconv3x3 with bias on V, added to a mixer's output) is not a ``(x, hw) -> x``
encoding; mixers own one as their ``lepe`` submodule and it is exported here for reuse.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from archdsl.layers.base import HW, TokenModule, map_to_tokens, tokens_to_map
from archdsl.layers.tokens import CLASS_TOKEN_POSITIONS, class_token_index
from archdsl.ops.rope import apply_rope, rope1d_cos_sin, rope2d_cos_sin
from archdsl.registry import register

__all__ = ["APE", "CPE", "LePE", "RoPE2d", "RoPE1d", "DepthwiseConv"]

def _check_dim(dim: int, what: str) -> None:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"{what} dim must be a positive integer; got {dim!r}")


class DepthwiseConv(nn.Conv2d):
    """Depthwise k x k convolution with bias acting on tokens: [B, N, C] -> [B, N, C].

    Subclasses ``nn.Conv2d`` so the state dict reads ``<name>.weight``/``<name>.bias`` exactly
    like the official code's plain ``nn.Conv2d`` (e.g. MLLA's ``attn.lepe.weight``).
    """

    def __init__(self, dim: int, kernel: int = 3, bias: bool = True):
        _check_dim(dim, "depthwise conv")
        if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd integer; got {kernel!r}")
        super().__init__(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=bias)

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:  # type: ignore[override]
        y = super().forward(tokens_to_map(x, hw))  # [B, C, H, W]
        return map_to_tokens(y)[0]


class LePE(DepthwiseConv):
    """Locally-enhanced PE (LePE): dwconv3x3(v) with bias, v: [B, N, C] -> [B, N, C].

    A mixer adds it to its output (``out + lepe(v, hw)``); it is not itself ``x -> x + ...``.
    """


@register("posenc", "cpe")
class CPE(DepthwiseConv):
    """Conditional PE: ``x + dwconv_k(x)`` (bias). x: [B, N, C] -> [B, N, C]. Params k²C + C."""

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:  # type: ignore[override]
        return x + super().forward(x, hw)


@register("posenc", "ape")
class APE(TokenModule):
    """Learned absolute PE ``x + pos``, pos: [1, h0*w0 (+1), C] for the base grid (h0, w0).

    ``grid`` (h0, w0) or ``base_size`` (h0 = w0) gives the base grid (default 14x14, the 224²
    stage-1 grid of a patch-16 model; ``grid`` wins if both are given). Other grids use the table
    bicubic-interpolated (align_corners=False) to (H, W). ``class_token`` (first | middle, set by the
    layout when the spec has one) adds the class token's slot to the table, at the token's index
    (:func:`archdsl.layers.tokens.class_token_index`); the slot is not interpolated. Init:
    truncated normal, std 0.02.
    """

    def __init__(self, dim: int, grid: Optional[Sequence[int]] = None, base_size: Optional[int] = None,
                 class_token: Optional[str] = None):
        super().__init__()
        _check_dim(dim, "ape")
        if grid is None:
            side = 14 if base_size is None else base_size
            if not isinstance(side, int) or isinstance(side, bool) or side < 1:
                raise ValueError(f"ape base_size must be a positive integer; got {base_size!r}")
            grid = (side, side)
        if (not isinstance(grid, (list, tuple)) or len(grid) != 2
                or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in grid)):
            raise ValueError(f"ape grid must be two positive integers [h0, w0]; got {grid!r}")
        if class_token is not None and class_token not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"ape class_token must be one of {', '.join(CLASS_TOKEN_POSITIONS)}; got {class_token!r}")
        self.dim = dim
        self.grid: Tuple[int, int] = (int(grid[0]), int(grid[1]))
        self.class_token = class_token
        n = self.grid[0] * self.grid[1] + (1 if class_token else 0)
        self.pos = nn.Parameter(torch.zeros(1, n, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def embedding(self, hw: HW) -> torch.Tensor:
        """The table for grid ``hw``: [1, H*W (+1), C] (the parameter itself at the base grid). A
        symbolic grid (torch.export with a dynamic H / W) always takes the resize, which is exactly
        the identity at the base grid, so the trace holds for every size (no guard on the grid)."""
        if all(type(s) is int for s in hw) and tuple(hw) == self.grid:
            return self.pos
        h0, w0 = self.grid
        table, slot = self.pos, None
        if self.class_token:
            i = class_token_index(self.class_token, h0 * w0)
            slot, table = table[:, i:i + 1], torch.cat([table[:, :i], table[:, i + 1:]], dim=1)
        table = table.reshape(1, h0, w0, self.dim).permute(0, 3, 1, 2)  # [1, C, h0, w0]
        table = F.interpolate(table, size=tuple(hw), mode="bicubic", align_corners=False)
        table = table.flatten(2).transpose(1, 2)  # [1, H*W, C]
        if slot is None:
            return table
        i = class_token_index(self.class_token, table.shape[1])
        return torch.cat([table[:, :i], slot, table[:, i:]], dim=1)

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        return x + self.embedding(hw).to(x.dtype)

    def extra_repr(self) -> str:
        cls = f", class_token={self.class_token}" if self.class_token else ""
        return f"dim={self.dim}, grid={self.grid}{cls}, resize=bicubic"


class _RotaryBase(TokenModule):
    """Rotary PE without buffers: the (cos, sin) tables come from the cached ops
    (``archdsl.ops.rope``, LRU keyed by size, dim, base, device, dtype), so nothing is frozen to
    one resolution and nothing lands in the state dict."""

    def __init__(self, dim: int, base: float):
        super().__init__()
        if not isinstance(base, (int, float)) or isinstance(base, bool) or base <= 0:
            raise ValueError(f"rope base must be a positive number; got {base!r}")
        self.dim = dim
        self.base = float(base)

    def cos_sin(self, hw: HW, n: int, device: torch.device, dtype: torch.dtype):
        """(cos, sin) tables, each [N, dim/2]."""
        raise NotImplementedError  # pragma: no cover - abstract

    def rotate(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        """Rotate consecutive channel pairs of x: [..., N, dim] -> same shape and dtype."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__} expects {self.dim} channels; got shape {tuple(x.shape)}")
        dtype = x.dtype if x.dtype == torch.float64 else torch.float32
        cos, sin = self.cos_sin(hw, x.shape[-2], x.device, dtype)
        return apply_rope(x, cos, sin)

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        return self.rotate(x, hw)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base:g}, tables=ops.rope cache per size (not in state dict)"


@register("posenc", "rope2d")
class RoPE2d(_RotaryBase):
    """Rotary 2-D PE as official MLLA: channel pair m rotated by i·θ_m (m < C/4) or j·θ_{m-C/4}
    (the next C/4 pairs), θ_k = base^(-k / (C/4)), (i, j) the token's grid row and column.
    x: [..., N, C] with N = H*W row-major -> same shape (computed in float32, or float64 for
    float64 input). C must be divisible by 4."""

    def __init__(self, dim: int, base: float = 10000.0):
        _check_dim(dim, "rope2d")
        if dim % 4:
            raise ValueError(f"rope2d needs a channel dim divisible by 4; got {dim}")
        super().__init__(dim, base)

    def cos_sin(self, hw: HW, n: int, device: torch.device, dtype: torch.dtype):
        H, W = hw  # ints, or symbolic sizes under torch.export with a dynamic height / width
        if H * W != n:
            raise ValueError(f"token count {n} does not match grid {H}x{W}")
        return rope2d_cos_sin(H, W, self.dim, self.base, device, dtype)


@register("posenc", "rope1d")
class RoPE1d(_RotaryBase):
    """Rotary 1-D PE (RoFormer) over the row-major token index n: pair m rotated by n·θ_m,
    θ_m = base^(-2m / C). x: [..., N, C] -> same shape. C must be even."""

    def __init__(self, dim: int, base: float = 10000.0):
        _check_dim(dim, "rope1d")
        if dim % 2:
            raise ValueError(f"rope1d needs an even channel dim; got {dim}")
        super().__init__(dim, base)

    def cos_sin(self, hw: HW, n: int, device: torch.device, dtype: torch.dtype):
        return rope1d_cos_sin(n, self.dim, self.base, device, dtype)
