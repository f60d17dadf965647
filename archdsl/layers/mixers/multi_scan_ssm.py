"""``multi_scan_ssm``: the Mamba S6 selective scan along any list of scan paths
(:mod:`archdsl.ops.scan_paths`: raster, continuous zig-zag, windowed local), with the options of
PlainMamba and LocalVMamba.

x: [B, N, C], hw (H, W) -> [B, N, C]. Per path k (K paths): u_k = x read along the path (zero pad
tokens where a windowed path reads outside the grid), then as ``selective_ssm``::

    (dt, B, C) = x_proj(u_k);  Δ = softplus(dt_proj(dt));  y_k = selective_scan(u_k, Δ, A, B, C, D)

and the K outputs, back at their grid positions, are summed. Options:
  paths             the scan paths, e.g. [zigzag_row, zigzag_row_reverse, zigzag_col, zigzag_col_reverse]
                    (PlainMamba) or [row, row_reverse, window7, window7_reverse] (a LocalVMamba layer)
  shared            one x_proj / dt_proj / A_log / D for every path (PlainMamba); else one set per
                    path (``x_proj.k``, ``dt_proj.k``, A_log [K·C, S], D [K·C]: VMamba, LocalVMamba)
  direction_tokens  PlainMamba's direction-aware updating: a learned table ``direction_Bs`` [5, S]
                    (start, right, left, up, down) added to B_t by the move that reached step t
                    (continuous paths only)
  project           "scan" (Δ, B, C projected from u_k, step by step) or "grid": projected once from
                    the row-major tokens and NOT re-ordered while u_k is (the official PlainMamba
                    code does this; its released weights are trained with it; shared paths only)
  dt_bias_twice     Δ = softplus(dt_proj(dt) + b): dt_proj's bias b added a second time, as the
                    official PlainMamba forward does (``dt_proj`` with bias, then ``delta_bias``)
  merge_attn        null | "channel" | "channel_spatial": LocalVMamba's SCAttn
                    (:class:`archdsl.layers.scan_attention.ScanAttention`, one module ``attn``
                    shared by the paths) on each path's output before the sum; ``attn_ratio``
Parameters per set: C·(R + 2S) + R·C + C + C·S + C, R = dt_rank ("auto" = ceil(d_model / 16),
d_model defaults to C), S = d_state.
"""
from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch
from torch import nn

from archdsl.layers.base import HW, TokenModule, check_tokens
from archdsl.layers.mixers import SCAN_LOOP_REASON, auto_rank, init_dt_projection
from archdsl.layers.mixers.selective_ssm import _pos_int
from archdsl.layers.scan_attention import ScanAttention
from archdsl.ops.scan_paths import MOVES, check_path_name, multi_merge, multi_scan, scan_moves, scan_path
from archdsl.ops.selective_scan import last_backend, selective_scan
from archdsl.registry import register

PROJECTS = ("scan", "grid")
MERGE_ATTNS = ("channel", "channel_spatial")


def _paths(paths: Sequence[str] | str) -> tuple:
    items = (paths,) if isinstance(paths, str) else tuple(paths)
    if not items:
        raise ValueError("paths must name at least one scan path")
    return tuple(check_path_name(p) for p in items)


@register("mixer", "multi_scan_ssm")
class MultiScanSSM(TokenModule):
    """Selective scan along several scan ``paths`` (row, col, ``zigzag_row|col``, ``window{K}``, each
    also ``_reverse``), outputs summed; ``shared`` parameters, PlainMamba's ``direction_tokens``,
    ``project: grid`` and ``dt_bias_twice``, LocalVMamba's ``merge_attn: channel`` (SCAttn). x: [B, N, C],
    hw (H, W) -> [B, N, C]."""

    archdsl_self_init = True  # keep Mamba's initialisation under the compiler's model-level init

    def __init__(self, dim: int, heads: int = 1, paths: Sequence[str] | str = ("row",), d_state: int = 16,
                 dt_rank: int | str = "auto", d_model: Optional[int] = None, shared: bool = False,
                 direction_tokens: bool = False, project: Literal["scan", "grid"] = "scan",
                 merge_attn: Optional[Literal["channel", "channel_spatial"]] = None,
                 attn_ratio: float = 0.125, dt_bias_twice: bool = False, dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, dt_scale: float = 1.0):
        super().__init__()
        _pos_int("dim", dim)
        _pos_int("heads", heads)  # the mixer contract; the SSM has one head
        _pos_int("d_state", d_state)
        d_model = dim if d_model is None else _pos_int("d_model", d_model)
        dt_rank = auto_rank(d_model) if dt_rank == "auto" else _pos_int("dt_rank ('auto' or an integer)", dt_rank)
        self.paths = _paths(paths)
        if project not in PROJECTS:
            raise ValueError(f"project must be one of {', '.join(PROJECTS)}; got {project!r}")
        if project == "grid" and not shared:
            raise ValueError("project: grid projects once for every path, so it needs shared: true")
        if merge_attn is not None and merge_attn not in MERGE_ATTNS:
            raise ValueError(f"merge_attn must be null or one of {', '.join(MERGE_ATTNS)}; got {merge_attn!r}")
        self.dim, self.d_state, self.dt_rank, self.d_model = dim, d_state, dt_rank, d_model
        self.shared, self.project, self.dt_bias_twice = bool(shared), project, bool(dt_bias_twice)
        sets = 1 if shared else len(self.paths)

        def make_dt_proj() -> nn.Linear:
            p = nn.Linear(dt_rank, dim, bias=True)
            init_dt_projection(p, dt_rank, dt_min, dt_max, dt_init_floor, dt_scale)
            return p

        projs = [(nn.Linear(dim, dt_rank + 2 * d_state, bias=False), make_dt_proj()) for _ in range(sets)]
        self.x_proj = projs[0][0] if sets == 1 else nn.ModuleList(p[0] for p in projs)
        self.dt_proj = projs[0][1] if sets == 1 else nn.ModuleList(p[1] for p in projs)
        a = torch.arange(1, d_state + 1, dtype=torch.float32).log()
        self.A_log = nn.Parameter(a.repeat(sets * dim, 1).contiguous())  # [sets*C, S]
        self.D = nn.Parameter(torch.ones(sets * dim))  # [sets*C]
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.direction_Bs = None
        if direction_tokens:
            self.direction_Bs = nn.Parameter(nn.init.trunc_normal_(torch.zeros(len(MOVES), d_state), std=0.02))
            self.direction_Bs._no_weight_decay = True  # type: ignore[attr-defined]
        self.attn = ScanAttention(dim, attn_ratio, spatial=merge_attn == "channel_spatial") if merge_attn else None
        self.backend: Optional[str] = None  # the selective_scan backend of the last forward
        self.scan_length = 0  # the (padded) sequence length of the last forward, for the MACs count

    def _stacked(self, K: int):
        """x_proj weights [K, R+2S, C], dt_proj weights [K, C, R], biases [K*C], A [K*C, S], D [K*C]."""
        xs = [self.x_proj] if isinstance(self.x_proj, nn.Linear) else list(self.x_proj)
        dts = [self.dt_proj] if isinstance(self.dt_proj, nn.Linear) else list(self.dt_proj)
        reps = K // len(xs)
        w_x = torch.stack([m.weight for m in xs]).repeat(reps, 1, 1)
        w_dt = torch.stack([m.weight for m in dts]).repeat(reps, 1, 1)
        b_dt = torch.cat([m.bias for m in dts]).repeat(reps)
        return w_x, w_dt, b_dt, (-torch.exp(self.A_log)).repeat(reps, 1), self.D.repeat(reps)

    def _projections(self, x: torch.Tensor, u: torch.Tensor, w_x: torch.Tensor, w_dt: torch.Tensor):
        """(dt [B, K, C, L'], B [B, K, S, L'], C [B, K, S, L']): from each path's sequence, or
        (``project: grid``) once from the row-major tokens x [B, N, C], the same (not reordered) for
        every path."""
        R, S, K = self.dt_rank, self.d_state, u.shape[1]
        if self.project == "scan":
            dt, Bs, Cs = torch.split(torch.einsum("bkcl,kdc->bkdl", u, w_x), [R, S, S], dim=2)
            return torch.einsum("bkrl,kcr->bkcl", dt, w_dt), Bs, Cs
        if u.shape[-1] != x.shape[1]:
            raise ValueError("project: grid needs paths that read every grid position once (no pad tokens)")
        dt, Bs, Cs = torch.split(torch.einsum("blc,dc->bdl", x, w_x[0]), [R, S, S], dim=1)
        dt = torch.einsum("brl,cr->bcl", dt, w_dt[0])
        return tuple(t.unsqueeze(1).expand(-1, K, -1, -1) for t in (dt, Bs, Cs))

    def fixed_size_reason(self) -> str:
        return f"selective scan along {len(self.paths)} path(s): {SCAN_LOOP_REASON}"

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        B, N, C = check_tokens(x, hw, self.dim, "multi_scan_ssm")
        H, W = hw
        K = len(self.paths)
        # the pad tokens at a path's ends change no output: scanned without them (LocalVMamba's
        # window7 on an 8x16 grid: 247 steps, not 294); the MACs count the official padded length
        u, _ = multi_scan(x.transpose(1, 2).reshape(B, C, H, W), self.paths, trim=True)  # [B, K, C, L']
        L = u.shape[-1]
        self.scan_length = max(scan_path(H, W, p).numel() for p in self.paths)
        w_x, w_dt, b_dt, A, D = self._stacked(K)
        b_dt = 2 * b_dt if self.dt_bias_twice else b_dt
        dt, Bs, Cs = self._projections(x, u, w_x, w_dt)
        if self.direction_Bs is not None:
            moves = torch.stack([scan_moves(H, W, p, x.device) for p in self.paths])  # [K, L']
            Bs = Bs + self.direction_Bs[moves].transpose(1, 2).to(Bs.dtype)  # + [K, S, L']
        y = selective_scan(u.reshape(B, K * C, L), dt.reshape(B, K * C, L), A, Bs.contiguous(),
                           Cs.contiguous(), D, delta_bias=b_dt, delta_softplus=True)  # B/C grouped per path
        self.backend = last_backend()
        y = multi_merge(y.reshape(B, K, C, L), H, W, self.paths, trim=True).transpose(2, 3)  # [B, K, N, C]
        if self.attn is None:
            return y.sum(1)
        return self.attn(y.flatten(0, 1)).unflatten(0, (B, K)).sum(1)  # every path's output at once

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, d_state={self.d_state}, dt_rank={self.dt_rank}, paths={list(self.paths)}, "
                f"shared={self.shared}, direction_tokens={self.direction_Bs is not None}, project={self.project}, "
                f"heads=ignored (single head), last backend: {self.backend or 'not run yet'}")
