"""A straightforward, independent re-implementation of the official MLLA module structure
(github.com/LeapLabTHU/MLLA models/mlla.py, docs/paper.md §4/§5) for tests and the benchmark.

It uses nothing from archdsl: plain torch modules, a fixed input resolution per block, RoPE as a
persistent ``rotations`` buffer [H, W, C/2, 2] sized for that resolution (like the official code),
and the official attribute names so ``state_dict()`` has the official layout. ``set_resolution``
rebuilds the RoPE buffers and resolutions for another input size.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn


class ConvLayer(nn.Module):
    def __init__(self, cin, cout, k=3, s=1, p=0, groups=1, bias=True, norm=True, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(cout) if norm else None
        self.act = nn.ReLU() if act else None

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


def rope_rotations(h, w, c, base=10000.0):
    """[h, w, c/2, 2] (cos, sin) of the 2-D RoPE: c/4 frequencies on rows, then c/4 on columns."""
    kmax = c // 4
    theta = 1.0 / base ** (torch.arange(kmax) / kmax)
    rows = torch.arange(h)[:, None, None] * theta  # [h,1,kmax]
    cols = torch.arange(w)[None, :, None] * theta  # [1,w,kmax]
    ang = torch.cat([rows.expand(h, w, kmax), cols.expand(h, w, kmax)], dim=-1)  # [h,w,c/2]
    return torch.stack([ang.cos(), ang.sin()], dim=-1)


class RoPE(nn.Module):
    def __init__(self, h, w, c):
        super().__init__()
        self.register_buffer("rotations", rope_rotations(h, w, c))

    def forward(self, x):  # x [b, h, w, c]
        xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(torch.view_as_complex(self.rotations) * xc).flatten(-2)


class LinearAttention(nn.Module):
    def __init__(self, dim, res, heads):
        super().__init__()
        self.res, self.heads = res, heads
        self.qk = nn.Linear(dim, 2 * dim)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.rope = RoPE(res[0], res[1], dim)

    def forward(self, x):
        b, n, c = x.shape
        h, w = self.res
        nh, hd = self.heads, c // self.heads
        q, k = self.qk(x).chunk(2, dim=-1)
        q, k = F.elu(q) + 1.0, F.elu(k) + 1.0
        qr = self.rope(q.reshape(b, h, w, c)).reshape(b, n, nh, hd).transpose(1, 2)
        kr = self.rope(k.reshape(b, h, w, c)).reshape(b, n, nh, hd).transpose(1, 2)
        q = q.reshape(b, n, nh, hd).transpose(1, 2)
        k = k.reshape(b, n, nh, hd).transpose(1, 2)
        v = x.reshape(b, n, nh, hd).transpose(1, 2)
        z = 1.0 / (q @ k.mean(dim=2, keepdim=True).transpose(-2, -1) + 1e-6)
        kv = (kr.transpose(-2, -1) * n ** -0.5) @ (v * n ** -0.5)
        out = (qr @ kv * z).transpose(1, 2).reshape(b, n, c)
        vmap = x.transpose(1, 2).reshape(b, c, h, w)
        return out + self.lepe(vmap).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


def _dw(dim):
    return nn.Conv2d(dim, dim, 3, padding=1, groups=dim)


class MLLABlock(nn.Module):
    def __init__(self, dim, res, heads, mlp_ratio=4.0):
        super().__init__()
        self.res = res
        self.cpe1 = _dw(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, dim)
        self.act_proj = nn.Linear(dim, dim)
        self.dwc = _dw(dim)
        self.attn = LinearAttention(dim, res, heads)
        self.out_proj = nn.Linear(dim, dim)
        self.cpe2 = _dw(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _map(self, x):
        b, n, c = x.shape
        return x.transpose(1, 2).reshape(b, c, *self.res)

    def forward(self, x):
        x = x + self.cpe1(self._map(x)).flatten(2).transpose(1, 2)
        y = self.norm1(x)
        gate = F.silu(self.act_proj(y))
        y = F.silu(self.dwc(self._map(self.in_proj(y)))).flatten(2).transpose(1, 2)
        x = x + self.out_proj(self.attn(y) * gate)
        x = x + self.cpe2(self._map(x)).flatten(2).transpose(1, 2)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, res, dim, ratio=4.0):
        super().__init__()
        self.res = res
        hid = int(2 * dim * ratio)
        self.conv = nn.Sequential(ConvLayer(dim, hid, 1, norm=False),
                                  ConvLayer(hid, hid, 3, 2, 1, groups=hid, norm=False),
                                  ConvLayer(hid, 2 * dim, 1, act=False))

    def forward(self, x):
        b, n, c = x.shape
        return self.conv(x.transpose(1, 2).reshape(b, c, *self.res)).flatten(2).transpose(1, 2)


class Stem(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.conv1 = ConvLayer(cin, dim // 2, 3, 2, 1, bias=False)
        self.conv2 = nn.Sequential(ConvLayer(dim // 2, dim // 2, 3, 1, 1, bias=False),
                                   ConvLayer(dim // 2, dim // 2, 3, 1, 1, bias=False, act=False))
        self.conv3 = nn.Sequential(ConvLayer(dim // 2, 4 * dim, 3, 2, 1, bias=False),
                                   ConvLayer(4 * dim, dim, 1, bias=False, act=False))

    def forward(self, x):
        x = self.conv1(x)
        x = self.conv2(x) + x
        return self.conv3(x).flatten(2).transpose(1, 2)


class BasicLayer(nn.Module):
    def __init__(self, dim, res, depth, heads, last):
        super().__init__()
        self.blocks = nn.ModuleList([MLLABlock(dim, res, heads) for _ in range(depth)])
        self.downsample = None if last else PatchMerging(res, dim)

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)


class OfficialMLLA(nn.Module):
    """MLLA with the official structure. Input must be ``img_size`` (or call set_resolution)."""

    def __init__(self, img_size=224, in_chans=3, num_classes=1000, embed_dim=64, depths=(2, 4, 8, 4),
                 num_heads=(2, 4, 8, 16)):
        super().__init__()
        self.patch_embed = Stem(in_chans, embed_dim)
        self.layers = nn.ModuleList()
        nl = len(depths)
        for i in range(nl):
            dim = embed_dim * 2 ** i
            res = (img_size // 4 // 2 ** i, img_size // 4 // 2 ** i)
            self.layers.append(BasicLayer(dim, res, depths[i], num_heads[i], last=i == nl - 1))
        self.num_features = embed_dim * 2 ** (nl - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes)

    def set_resolution(self, img_size):
        """Rebuild the per-block resolutions and RoPE buffers for ``img_size`` (square, /32)."""
        for i, layer in enumerate(self.layers):
            s = img_size // 4 // 2 ** i
            for blk in layer.blocks:
                blk.res = blk.attn.res = (s, s)
                c = blk.in_proj.in_features
                blk.attn.rope.rotations = rope_rotations(s, s, c).to(blk.in_proj.weight.device)
            if layer.downsample is not None:
                layer.downsample.res = (s, s)

    def forward(self, x):
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(dim=1))


def _set_grid(layer: BasicLayer, hw) -> None:
    """Point a stage's blocks at the grid ``hw`` and rebuild their RoPE tables for it."""
    for blk in layer.blocks:
        blk.res = blk.attn.res = tuple(hw)
        c = blk.in_proj.in_features
        blk.attn.rope.rotations = rope_rotations(hw[0], hw[1], c).to(blk.in_proj.weight.device)


class OfficialMLLABackbone(nn.Module):
    """The official detection / segmentation backbone's structure (downstream/detection/mmdet/models/
    backbones/mlla.py, docs/paper.md §5): the classification trunk without ``norm`` / ``head``, one
    LayerNorm ``norm{i}`` per output, any input size: the image is zero-padded bottom/right to a
    multiple of 4, an odd grid is zero-padded to even before each merge, RoPE follows the actual
    grid. ``forward(img) -> [norm_i(stage i output) as [B, C_i, H_i, W_i] for i in out_indices]``."""

    def __init__(self, in_chans=3, embed_dim=64, depths=(2, 4, 8, 4), num_heads=(2, 4, 8, 16),
                 out_indices=(0, 1, 2, 3), train_size=224):
        super().__init__()
        trunk = OfficialMLLA(img_size=train_size, in_chans=in_chans, num_classes=1, embed_dim=embed_dim,
                             depths=depths, num_heads=num_heads)
        self.patch_embed, self.layers = trunk.patch_embed, trunk.layers
        self.out_indices = tuple(out_indices)
        self.num_features = [embed_dim * 2 ** i for i in range(len(depths))]
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))

    def forward(self, img):
        H, W = img.shape[-2:]
        img = F.pad(img, (0, (4 - W % 4) % 4, 0, (4 - H % 4) % 4))
        hw = (img.shape[-2] // 4, img.shape[-1] // 4)
        x = self.patch_embed(img)
        outs = []
        for i, layer in enumerate(self.layers):
            _set_grid(layer, hw)
            for blk in layer.blocks:
                x = blk(x)
            if i in self.out_indices:
                y = getattr(self, f"norm{i}")(x)
                outs.append(y.reshape(y.shape[0], hw[0], hw[1], -1).permute(0, 3, 1, 2).contiguous())
            if layer.downsample is not None:
                m = x.transpose(1, 2).reshape(x.shape[0], -1, *hw)
                m = F.pad(m, (0, hw[1] % 2, 0, hw[0] % 2))
                m = layer.downsample.conv(m)
                hw = (m.shape[2], m.shape[3])
                x = m.flatten(2).transpose(1, 2)
        return outs


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BN running statistic non-trivial random values (so a wrong
    mapping of any tensor changes the logits)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point and not name.endswith("rope.rotations"):
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                elif name.endswith(("norm.weight", "norm1.weight", "norm2.weight")) or re.fullmatch(r"norm\d+\.weight", name):
                    t.copy_(1.0 + 0.1 * torch.randn(t.shape, generator=g))
                else:
                    t.copy_(0.1 * torch.randn(t.shape, generator=g))
    return model
