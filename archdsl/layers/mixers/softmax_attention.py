"""``softmax_attention``: multi-head softmax attention, global or in (shifted) Swin windows.

x: [B, N, C] on the grid (H, W) -> [B, N, C]. Parameters (Swin's WindowAttention names):
``qkv`` Linear(C, 3C, bias=qkv_bias), ``proj`` Linear(C, C), and when windowed with
``rel_pos_bias`` the table ``relative_position_bias_table`` [(2ws-1)², heads]. Kernel:
``F.scaled_dot_product_attention`` through ``archdsl.ops.softmax_attention.attention``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archdsl.layers.base import HW, TokenModule, check_tokens
from archdsl.layers.mixers import check_dim_heads, parse_positional
from archdsl.layers.posenc import LePE, RoPE2d
from archdsl.ops.softmax_attention import (
    attention,
    padded_size,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from archdsl.registry import register

MASK_FILL = -100.0  # Swin's value for blocked pairs (finite: an all-padding window stays NaN-free)


@register("mixer", "softmax_attention")
class SoftmaxAttention(TokenModule):
    """Softmax attention. x: [B, N, C], hw (H, W) -> [B, N, C].

    window_size: None/0 = global attention over all N tokens; else ws x ws windows (H, W padded
    up to multiples of ws, padded keys masked). shift: False/0, True (= ws // 2) or an int in
    [0, ws): cyclic shift by that many tokens with the Swin mask; a grid that fits in one window
    (H <= ws and W <= ws) is never shifted (as Swin). rel_pos_bias: Swin's learned relative
    position bias (windowed only). positional: any of "rope2d" (rotary 2-D on q, k over all C
    channels, grid positions) and "lepe" (out += dwconv3x3(v)).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        window_size: Optional[int] = None,
        shift: bool | int = False,
        qkv_bias: bool = True,
        rel_pos_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        positional: Sequence[str] = (),
    ):
        super().__init__()
        self.head_dim = check_dim_heads(dim, heads)
        self.dim, self.heads = dim, heads
        if window_size is not None and (not isinstance(window_size, int) or isinstance(window_size, bool)
                                        or window_size < 0):
            raise ValueError(f"window_size must be None, 0 (global) or a positive integer; got {window_size!r}")
        self.window_size = int(window_size or 0)
        ws = self.window_size
        if isinstance(shift, bool):
            shift_n = ws // 2 if shift else 0
        elif isinstance(shift, int):
            shift_n = shift
        else:
            raise ValueError(f"shift must be a bool or an integer; got {shift!r}")
        if shift and not ws:
            raise ValueError("shift needs window_size (global attention has no windows to shift)")
        if ws and not 0 <= shift_n < ws:
            raise ValueError(f"shift must be in [0, window_size {ws}); got {shift_n}")
        self.shift = shift_n
        for name, p in (("attn_drop", attn_drop), ("proj_drop", proj_drop)):
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {p!r}")
        self.positional = parse_positional(positional, ("rope2d", "lepe"))

        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = float(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position_bias_table: Optional[nn.Parameter] = None
        if ws and rel_pos_bias:
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.rope = RoPE2d(dim) if "rope2d" in self.positional else None
        self.lepe = LePE(dim) if "lepe" in self.positional else None

    # ------------------------------------------------------------------ helpers
    def relative_bias(self) -> Optional[torch.Tensor]:
        """Relative position bias [heads, ws², ws²] (None without a table)."""
        if self.relative_position_bias_table is None:
            return None
        ws = self.window_size
        idx = relative_position_index(ws).to(self.relative_position_bias_table.device)
        bias = self.relative_position_bias_table[idx.reshape(-1)].reshape(ws * ws, ws * ws, self.heads)
        return bias.permute(2, 0, 1)

    def fixed_size_reason(self) -> Optional[str]:
        if not self.window_size:
            return None
        return ("Swin windows: the padding to the window size, whether the grid is shifted (one that fits "
                "one window is not) and the shifted-window mask are decided in Python from the concrete grid")

    def effective_shift(self, hw: HW) -> int:
        """The shift used for grid ``hw``: 0 when the whole grid fits in one window."""
        H, W = hw
        return 0 if (H <= self.window_size and W <= self.window_size) else self.shift

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        # [B', n, C] -> [B', heads, n, head_dim]
        return t.reshape(*t.shape[:-1], self.heads, self.head_dim).transpose(-3, -2)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        # global attention without rope / lepe never reads the grid, so it also takes one class token
        # among the tokens (N = H*W + 1, ViT); any other count is an error
        grid_free = not self.window_size and self.rope is None and self.lepe is None
        with_cls = grid_free and x.shape[1] == hw[0] * hw[1] + 1
        B, N, C = x.shape if with_cls else check_tokens(x, hw)
        H, W = hw
        qkv = self.qkv(x).view(B, N, 3, C)
        if self.rope is not None:  # q and k rotated in one call: [B, 2, N, C]
            qk = self.rope.rotate(qkv[:, :, :2].transpose(1, 2), hw)
            q, k, v = qk[:, 0], qk[:, 1], qkv[:, :, 2]
        else:
            q, k, v = qkv.unbind(dim=2)  # each [B, N, C]
        drop = self.attn_drop if self.training else 0.0
        if not self.window_size:
            out = self._attend(self._split(q), self._split(k), self._split(v), None, drop)  # [B,h,N,d]
            out = out.transpose(1, 2).reshape(B, N, C)
        else:
            out = self._window_forward(q, k, v, hw, drop)
        if self.lepe is not None:
            out = out + self.lepe(v, hw)
        return self.proj_drop(self.proj(out))

    def _attend(self, q, k, v, bias, drop):
        if drop > 0.0:  # the op has no dropout: explicit softmax for the training-time dropout
            s = (q @ k.transpose(-1, -2)) * self.head_dim ** -0.5
            if bias is not None:
                s = s + bias
            return F.dropout(s.softmax(-1), drop) @ v
        return attention(q, k, v, bias)

    def _window_forward(self, q, k, v, hw: HW, drop: float) -> torch.Tensor:
        B, N, C = q.shape
        H, W = hw
        ws = self.window_size
        shift = self.effective_shift(hw)
        Hp, Wp = padded_size(H, W, ws)
        t = torch.cat([q, k, v], dim=-1).reshape(B, H, W, 3 * C)
        if (Hp, Wp) != (H, W):
            t = F.pad(t, (0, 0, 0, Wp - W, 0, Hp - H))  # zeros at the bottom/right
        if shift:
            t = torch.roll(t, shifts=(-shift, -shift), dims=(1, 2))
        win = window_partition(t, ws)  # [B*nW, ws*ws, 3C]
        qw, kw, vw = (self._split(u) for u in win.chunk(3, dim=-1))  # [B*nW, h, n, d]
        nW = win.shape[0] // B
        n = ws * ws
        bias = self.relative_bias()  # [h, n, n] or None
        if shift or (Hp, Wp) != (H, W):
            mask = shifted_window_mask(H, W, ws, shift, fill=MASK_FILL, mask_padding=True,
                                       device=q.device, dtype=q.dtype)  # [nW, n, n]
            mask = mask.unsqueeze(1)  # [nW, 1, n, n]
            bias = mask if bias is None else bias.unsqueeze(0) + mask  # [nW, h, n, n]
            bias = bias.unsqueeze(0).expand(B, nW, -1, n, n).reshape(B * nW, -1, n, n)
        out = self._attend(qw, kw, vw, bias, drop)  # [B*nW, h, n, d]
        out = out.transpose(1, 2).reshape(B * nW, n, C)
        out = window_reverse(out, ws, Hp, Wp)  # [B, Hp, Wp, C]
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        return out[:, :H, :W].reshape(B, N, C)

    def extra_repr(self) -> str:
        where = f"window={self.window_size}, shift={self.shift}" if self.window_size else "global"
        rpb = self.relative_position_bias_table is not None
        return (f"dim={self.dim}, heads={self.heads}, {where}, rel_pos_bias={rpb}, "
                f"positional={list(self.positional)}, kernel=sdpa (ops.softmax_attention.attention)")
