"""MLLA-specific stem and downsampler (docs/paper.md §4), with the official submodule names.

``mlla_stem`` (patch size 4): ``img [B, 3, H, W] -> (tokens [B, H/4 * W/4, C], (H/4, W/4))``; an image
whose sides are not multiples of 4 is zero-padded bottom/right first (official detection backbone)::

    conv1 = conv3x3 s2 (in -> C/2, no bias) + BN + ReLU
    x = conv2(x) + x,  conv2 = [conv3x3 (C/2 -> C/2) + BN + ReLU, conv3x3 (C/2 -> C/2) + BN]
    conv3 = [conv3x3 s2 (C/2 -> 4C) + BN + ReLU, conv1x1 (4C -> C) + BN]

``mlla_merge`` (MBConv-like, stride 2): ``(x [B, H*W, C], (H, W)) -> ([B, ceil(H/2)*ceil(W/2), C'], hw')``;
an odd grid is zero-padded to even first (official detection backbone)::

    conv.0 = conv1x1 (C -> r C', bias) + ReLU
    conv.1 = dwconv3x3 s2 (r C', bias) + ReLU
    conv.2 = conv1x1 (r C' -> C', bias) + BN          (r = ratio = 4; C' = 2C in MLLA)

State-dict keys equal the official ones (``conv1.conv.weight``, ``conv2.0.norm.running_mean``,
``conv.2.conv.bias``...), so released checkpoints map one to one.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from archdsl.layers.base import HW, check_tokens, map_to_tokens, pad_to_multiple, tokens_to_map
from archdsl.ops.rope import apply_rope, rope2d_angles, rope2d_cos_sin
from archdsl.ops.tracing import is_tracing
from archdsl.registry import register

__all__ = ["ConvNormAct", "MLLAStem", "MLLAMerge", "MLLAAttention"]


class ConvNormAct(nn.Module):
    """``conv -> (BatchNorm2d) -> (ReLU)`` on maps ``[B, C_in, H, W] -> [B, C_out, H', W']``.

    Attribute names ``conv`` / ``norm`` / ``act`` as the official ``ConvLayer``."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, *, groups: int = 1,
                 bias: bool = True, norm: bool = True, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=bias)
        self.norm: Optional[nn.Module] = nn.BatchNorm2d(c_out) if norm else None
        self.act: Optional[nn.Module] = nn.ReLU(inplace=True) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


def _positive(name: str, v: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return v


@register("stem", "mlla_stem")
class MLLAStem(nn.Module):
    """MLLA convolutional stem, patch size 4: ``img [B, in_chans, H, W] -> ([B, N, dim], (H/4, W/4))``.

    ``dim`` must be even (the first two stages run at ``dim / 2`` channels)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int = 4):
        super().__init__()
        _positive("in_chans", in_chans)
        _positive("dim", dim)
        if patch_size != 4:
            raise ValueError(f"mlla_stem has a fixed patch size of 4 (two stride-2 convs), got patch_size={patch_size}")
        if dim % 2:
            raise ValueError(f"mlla_stem needs an even dim (it runs at dim/2 channels first), got {dim}")
        half = dim // 2
        self.conv1 = ConvNormAct(in_chans, half, 3, 2, bias=False)
        self.conv2 = nn.Sequential(ConvNormAct(half, half, 3, 1, bias=False),
                                   ConvNormAct(half, half, 3, 1, bias=False, act=False))
        self.conv3 = nn.Sequential(ConvNormAct(half, 4 * dim, 3, 2, bias=False),
                                   ConvNormAct(4 * dim, dim, 1, 1, bias=False, act=False))
        self.dim = dim

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        if img.dim() != 4:
            raise ValueError(f"mlla_stem expects images [B, C, H, W], got shape {tuple(img.shape)}")
        img = pad_to_multiple(img, 4)  # official detection backbone: pad to the patch size
        x = self.conv1(img.contiguous(memory_format=torch.channels_last))  # oneDNN's fast layout
        x = self.conv2(x) + x
        x = self.conv3(x)
        return map_to_tokens(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, patch_size=4"


@register("downsample", "mlla_merge")
class MLLAMerge(nn.Module):
    """MLLA's MBConv-like patch merging, stride 2: ``(x [B, H*W, dim_in], (H, W)) ->
    ([B, H'*W', dim_out], (H', W'))`` with ``H' = ceil(H/2)``; hidden width ``int(ratio * dim_out)``."""

    def __init__(self, dim_in: int, dim_out: int, ratio: float = 4.0):
        super().__init__()
        _positive("dim_in", dim_in)
        _positive("dim_out", dim_out)
        if not (isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and ratio > 0):
            raise ValueError(f"ratio must be a positive number, got {ratio!r}")
        hidden = int(dim_out * ratio)
        self.conv = nn.Sequential(
            ConvNormAct(dim_in, hidden, 1, 1, norm=False),
            ConvNormAct(hidden, hidden, 3, 2, groups=hidden, norm=False),
            ConvNormAct(hidden, dim_out, 1, 1, act=False),
        )
        self.dim_in, self.dim_out, self.hidden = dim_in, dim_out, hidden

    def forward(self, x: torch.Tensor, hw: HW) -> Tuple[torch.Tensor, HW]:
        m = tokens_to_map(x, hw)
        if hw[0] % 2 or hw[1] % 2:  # as the official detection backbone: zero-pad an odd grid to even
            m = F.pad(m, (0, hw[1] % 2, 0, hw[0] % 2))
        return map_to_tokens(self.conv(m))

    def extra_repr(self) -> str:
        return f"dim_in={self.dim_in}, dim_out={self.dim_out}, hidden={self.hidden}"


# --------------------------------------------------------------------------------------------------
# fused MLLA attention


_MLLA_ONLY = {"feature_map": "elu_plus_one", "normalize": True, "input_gate": False, "forget_gate": False,
              "shortcut": False, "v_proj": False, "out_proj": False}


@register("mixer", "mlla_attention")
class MLLAAttention(nn.Module):
    """MLLA's linear attention, fused: exactly ``linear_attention`` with its defaults and
    ``positional: [rope2d, lepe]`` (same parameters ``qk``, ``lepe``, same outputs), written for speed.
    x: [B, N, C] on the grid (H, W) -> [B, N, C]::

        q, k = elu(qk(x)) + 1                      (one Linear C -> 2C)
        out  = RoPE(q) [RoPE(k)^T x / N] / (q . mean_n(k) + eps) + LePE(x)     per head

    Differences from the generic mixer: q and k are rotated (eager; the equal real form while
    traced for export) in one complex multiply by a complex64
    table built once per grid size, the normaliser is a [N, d] x [d, 1] matmul, and the 1/N scale is
    applied to the small [d, d] state (measured speed vs the generic layer: docs/mixers.md). The other switches of ``linear_attention`` are accepted only with
    MLLA's values (so ``--set mixer.type=mlla_attention`` works on an MLLA spec); anything else is a
    ValueError pointing to ``linear_attention``.
    """

    def __init__(self, dim: int, heads: int, positional: Sequence[str] = ("rope2d", "lepe"), qkv_bias: bool = True,
                 eps: float = 1e-6, base: float = 10000.0, key_dim: Optional[int] = None, **switches: object):
        super().__init__()
        _positive("dim", dim)
        _positive("heads", heads)
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        for name, value in switches.items():
            if name not in _MLLA_ONLY:
                raise TypeError(f"mlla_attention got an unexpected option '{name}'")
            if value != _MLLA_ONLY[name]:
                raise ValueError(f"mlla_attention is the fused MLLA configuration: {name} must be "
                                 f"{_MLLA_ONLY[name]!r}, got {value!r}; use linear_attention for the other switches")
        if key_dim is not None and key_dim != dim // heads:
            raise ValueError(f"mlla_attention uses key_dim = dim / heads = {dim // heads}, got {key_dim}")
        pos = (positional,) if isinstance(positional, str) else tuple(positional or ())
        unknown = [p for p in pos if p not in ("rope2d", "lepe")]
        if unknown or len(set(pos)) != len(pos):
            raise ValueError(f"positional must be a subset of ['rope2d', 'lepe'] without repeats, got {list(pos)}")
        if "rope2d" in pos and dim % 4:
            raise ValueError(f"rope2d needs a channel dim divisible by 4; got {dim}")
        self.dim, self.heads, self.eps, self.base = dim, heads, float(eps), float(base)
        self.positional = pos
        self.qk = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim) if "lepe" in pos else None
        self._rot: dict = {}

    def _make_rotation(self, hw: HW, device: torch.device) -> torch.Tensor:
        ang = rope2d_angles(hw[0], hw[1], self.dim, self.base)  # [N, C/2] float64
        return torch.polar(torch.ones_like(ang), ang).to(device=device, dtype=torch.complex64)

    def _rotation(self, hw: HW, device: torch.device) -> torch.Tensor:
        """Complex rotation table [N, C/2] (complex64) for the grid (eager only: while a tracer
        runs, forward uses the real form and nothing is cached); cached per (grid, device, mode)
        (a table made under inference_mode is never reused for autograd)."""
        key = (hw, device, torch.is_inference_mode_enabled())
        rot = self._rot.get(key)
        if rot is None:
            if len(self._rot) > 8:
                self._rot.clear()
            rot = self._rot[key] = self._make_rotation(hw, device)
        return rot

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        B, N, C = check_tokens(x, hw)
        H, W = hw
        h, d = self.heads, C // self.heads
        qk = F.elu(self.qk(x)) + 1.0  # [B, N, 2C]
        if "rope2d" in self.positional and is_tracing():  # real form: exported graphs have no complex type
            cos, sin = rope2d_cos_sin(H, W, C, self.base, x.device, torch.float32)
            qk2 = qk.float().reshape(B, N, 2, C).transpose(1, 2)  # [B, 2, N, C]
            qk_rot = apply_rope(qk2, cos, sin).transpose(1, 2).reshape(B, N, 2 * C).to(x.dtype)
        elif "rope2d" in self.positional:
            z2 = torch.view_as_complex(qk.float().reshape(B, N, 2, C // 2, 2))  # [B, N, 2, C/2]
            rot = self._rotation((H, W), x.device)[None, :, None, :]
            qk_rot = torch.view_as_real(z2 * rot).reshape(B, N, 2 * C).to(x.dtype)
        else:
            qk_rot = qk

        def heads(t: torch.Tensor) -> torch.Tensor:  # [B, N, C] -> [B, h, N, d]
            return t.reshape(B, N, h, d).transpose(1, 2)

        q, k = qk[..., :C], qk[..., C:]
        qr, kr = qk_rot[..., :C], qk_rot[..., C:]
        v = heads(x)
        kv = (heads(kr).transpose(-2, -1) @ v) * (1.0 / N)  # [B, h, d, d]
        kmean = heads(k).mean(dim=2, keepdim=True)  # [B, h, 1, d]
        z = 1.0 / (heads(q) @ kmean.transpose(-2, -1) + self.eps)  # [B, h, N, 1]
        out = ((heads(qr) @ kv) * z).transpose(1, 2).reshape(B, N, C)
        if self.lepe is not None:
            out = out + self.lepe(x.transpose(1, 2).reshape(B, C, H, W)).flatten(2).transpose(1, 2)
        return out

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}, positional={list(self.positional)}, fused"
