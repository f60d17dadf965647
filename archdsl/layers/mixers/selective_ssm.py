"""``selective_ssm``: the Mamba S6 selective scan as a token mixer over a 2-D scan order.

x: [B, N, C] (C = Mamba's d_inner; the block template does in_proj, conv and the z gate) ->
[B, N, C]. Per scan direction (docs/paper.md §6, mamba_simple.Mamba names):
    x_proj  Linear(C, dt_rank + 2·d_state, bias=False) -> (dt, B, C)
    dt_proj Linear(dt_rank, C, bias=True)                -> Δ = softplus(dt_proj(dt))
    A_log   [C, d_state] (A = -exp(A_log), init log(1..d_state)), D [C] (init 1)
    y = selective_scan(x, Δ, A, B, C, D)
``scan_order``: "row" (Mamba, one set of parameters with Mamba's names), "bidirectional"
(row and reversed row) or "cross4" (VMamba's four directions). For K > 1 directions each direction
has its own x_proj/dt_proj (``x_proj.k``, ``dt_proj.k``) and its slice of A_log [K·C, d_state]
and D [K·C], as VMamba does; the K outputs are mapped back to row-major and summed
(VMamba's CrossMerge). "atrous" (EfficientVMamba's ES2D, :mod:`archdsl.ops.atrous_scan`): four
directions, each over one stride-2 sub-grid (a quarter of the tokens), the outputs written back
where they were read. With a 1-D order (row, bidirectional) one token more than the grid holds
(a class token, Vim) is scanned as part of the sequence. ``heads`` is accepted for the mixer
contract and ignored: the SSM has one head (its "multi-head" is the per-channel state), so any positive ``heads`` builds the same module.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from archdsl.layers.base import HW, TokenModule, check_tokens
from archdsl.layers.mixers import SCAN_LOOP_REASON, SCAN_ORDERS, auto_rank, init_dt_projection
from archdsl.ops.atrous_scan import ATROUS_DIRECTIONS, atrous_merge, atrous_scan
from archdsl.ops.scan_order import cross_merge, cross_scan
from archdsl.ops.selective_scan import last_backend, selective_scan
from archdsl.registry import register

# selective_ssm's scan orders: the shared 2-D orders and the skip-sampled "atrous" scan
SSM_SCAN_ORDERS = {**SCAN_ORDERS, "atrous": tuple(f"atrous_{o}{a}{b}" for a, b, o in ATROUS_DIRECTIONS)}


def _pos_int(name: str, v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive integer; got {v!r}")
    return v


@register("mixer", "selective_ssm")
class SelectiveSSM(TokenModule):
    """Mamba S6 mixer along ``scan_order``: row | bidirectional | cross4 (VMamba) | atrous
    (EfficientVMamba's skip-sampled ES2D). x: [B, N, C], hw (H, W) -> [B, N, C].

    Parameters per direction: C·(R + 2S) (x_proj) + R·C + C (dt_proj) + C·S (A_log) + C (D), with
    S = d_state, R = dt_rank ("auto" = ceil(d_model / 16), d_model defaults to C).
    """

    archdsl_self_init = True  # keep Mamba's initialisation under the compiler's model-level init

    def __init__(
        self,
        dim: int,
        heads: int = 1,
        d_state: int = 16,
        dt_rank: int | str = "auto",
        d_model: Optional[int] = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        scan_order: str = "row",
    ):
        super().__init__()
        _pos_int("dim", dim)
        _pos_int("heads", heads)  # validated, then ignored (single-head SSM)
        _pos_int("d_state", d_state)
        d_model = dim if d_model is None else _pos_int("d_model", d_model)
        if dt_rank == "auto":
            dt_rank = auto_rank(d_model)
        _pos_int("dt_rank ('auto' or an integer)", dt_rank)
        if scan_order not in SSM_SCAN_ORDERS:
            raise ValueError(f"unknown scan_order {scan_order!r}; expected one of: {', '.join(SSM_SCAN_ORDERS)}")
        self.dim, self.d_state, self.dt_rank, self.d_model = dim, d_state, dt_rank, d_model
        self.scan_order = scan_order
        self.directions = SSM_SCAN_ORDERS[scan_order]
        self.scanned_tokens = 0  # tokens scanned by the last forward, over all directions
        K = len(self.directions)

        def make_x_proj() -> nn.Linear:
            return nn.Linear(dim, dt_rank + 2 * d_state, bias=False)

        def make_dt_proj() -> nn.Linear:
            p = nn.Linear(dt_rank, dim, bias=True)
            init_dt_projection(p, dt_rank, dt_min, dt_max, dt_init_floor, dt_scale)
            return p

        if K == 1:
            self.x_proj = make_x_proj()
            self.dt_proj = make_dt_proj()
        else:
            self.x_proj = nn.ModuleList(make_x_proj() for _ in range(K))
            self.dt_proj = nn.ModuleList(make_dt_proj() for _ in range(K))
        a = torch.arange(1, d_state + 1, dtype=torch.float32).log()
        self.A_log = nn.Parameter(a.repeat(K * dim, 1).contiguous())  # [K*C, S]
        self.D = nn.Parameter(torch.ones(K * dim))  # [K*C]
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.backend: Optional[str] = None  # the selective_scan backend of the last forward

    def _stacked(self):
        """x_proj weights [K, R+2S, C], dt_proj weights [K, C, R] and biases [K*C]."""
        xs = [self.x_proj] if isinstance(self.x_proj, nn.Linear) else list(self.x_proj)
        dts = [self.dt_proj] if isinstance(self.dt_proj, nn.Linear) else list(self.dt_proj)
        return (torch.stack([m.weight for m in xs]), torch.stack([m.weight for m in dts]),
                torch.cat([m.bias for m in dts]))

    def fixed_size_reason(self) -> str:
        return f"selective scan: {SCAN_LOOP_REASON}"

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        B, N, C = x.shape
        if N == hw[0] * hw[1] + 1 and set(self.directions) <= {"row", "row_reverse"}:
            hw = (1, N)  # a 1-D order scans the grid tokens plus a class token as one sequence (Vim)
        check_tokens(x, hw, self.dim, "selective_ssm")
        H, W = hw
        K, R, S = len(self.directions), self.dt_rank, self.d_state
        xm = x.transpose(1, 2).reshape(B, C, H, W)
        atrous = self.scan_order == "atrous"
        u = atrous_scan(xm) if atrous else cross_scan(xm, self.directions)  # [B, K, C, L]
        L = u.shape[-1]
        self.scanned_tokens = K * L
        w_x, w_dt, b_dt = self._stacked()
        x_dbl = torch.einsum("bkcl,kdc->bkdl", u, w_x)  # [B, K, R+2S, L]
        dt, Bs, Cs = torch.split(x_dbl, [R, S, S], dim=2)
        dt = torch.einsum("bkrl,kcr->bkcl", dt, w_dt)  # [B, K, C, L]
        A = -torch.exp(self.A_log)  # [K*C, S]
        y = selective_scan(u.reshape(B, K * C, L), dt.reshape(B, K * C, L), A,
                           Bs.contiguous(), Cs.contiguous(), self.D,
                           delta_bias=b_dt, delta_softplus=True)  # [B, K*C, L]; B/C grouped per direction
        self.backend = last_backend()
        y = y.reshape(B, K, C, L)
        y = atrous_merge(y, H, W) if atrous else cross_merge(y, H, W, self.directions)  # [B, C, N]
        return y.transpose(1, 2)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, d_state={self.d_state}, dt_rank={self.dt_rank}, "
                f"scan_order={self.scan_order} ({len(self.directions)} direction(s), separate parameters), "
                f"heads=ignored (single head), kernel=ops.selective_scan "
                f"(last backend: {self.backend or 'not run yet'})")
