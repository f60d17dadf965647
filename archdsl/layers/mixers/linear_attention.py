"""``linear_attention``: linear attention with the paper's six switches (docs/paper.md §1, §2b, §4).

Defaults give MLLA's attention exactly (official ``LinearAttention``): ``qk`` Linear(C, 2C, bias),
v = the input itself, φ = elu + 1, heads split the channels; with ``positional: [rope2d, lepe]``:
    out = RoPE(φq)·[(RoPE(φk)ᵀ/√N)(v/√N)] / (φq·mean_n(φk) + 1e-6) + LePE(v)
(the normaliser uses the un-rotated φq, φk). Switches, each independent:

- ``feature_map``  elu_plus_one | relu | identity | softmax (over each head's key dim).
- ``normalize``    divide by the Q·Z denominator (False = the "- Normalization" ablation).
- ``heads``        from the constructor; 1 = single head. ``key_dim`` sets the per-head key dim d.
- ``input_gate``   Δ = softplus(x W1 W2) per token and channel (W1: C×C0 no bias, W2: C0×C with
                   bias, C0 = ``gate_rank``), applied as Δ ⊙ V. This is Mamba's Δ (x_proj's dt rows,
                   dt_proj), initialised like Mamba (docs/paper.md §6).
- ``forget_gate``  True: Mamba-1 decay Ã_i = exp(Δ_i A) per (channel, key dim), A = -exp(A_log)
                   [C, d], through ``ops.selective_scan`` (groups = heads, d_state = key dim) in a
                   causal scan over ``scan_order``; "scalar": one decay per head and token,
                   exp(-exp(a_h)·softplus(x w_h + b_h)), through ``ops.chunk_gated_linear_attention``.
- ``shortcut``     + D ⊙ x inside the mixer, D [C] initialised to 1.
- ``v_proj``       V = Linear(C, C)(x) (``v``) instead of x itself (MLLA: x itself).
- ``out_proj``     a final Linear(C, C) (``proj``), as in the Swin-style baseline; MLLA: none.
- ``positional``   any of rope2d (on φq, φk over all heads·d channels) and lepe (dwconv3x3 on V).
Scaling: the non-causal form uses MLLA's 1/N on kᵀv (cancels when normalised); the causal
(forget-gate) form is the plain recurrence y_i = Q_i S_i (/ Q_i Z_i), no 1/N, exactly Mamba's.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archdsl.layers.base import HW, TokenModule, check_tokens
from archdsl.layers.mixers import (
    SCAN_LOOP_REASON,
    SCAN_ORDERS,
    auto_rank,
    check_dim_heads,
    init_dt_projection,
    parse_positional,
)
from archdsl.layers.posenc import LePE, RoPE2d
from archdsl.ops.gated_linear_attention import chunk_gated_linear_attention
from archdsl.ops.linear_attention import FEATURE_MAP_NAMES
from archdsl.ops.linear_attention import feature_map as get_feature_map
from archdsl.ops.linear_attention import linear_attention as linear_attention_op
from archdsl.ops.scan_order import cross_merge, cross_scan
from archdsl.ops.selective_scan import last_backend, selective_scan
from archdsl.registry import register

DELTA_FLOOR = 1e-4  # Δ floor on the paths that divide by Δ (forget gate without input gate; Z)


@register("mixer", "linear_attention")
class LinearAttention(TokenModule):
    """Linear attention with the six switches (see the module docstring). x: [B, N, C] -> [B, N, C].

    Parameter cost per switch (C = dim, h = heads, d = key_dim, C0 = gate_rank):
    base qk 2·C·h·d (+2·h·d bias); v_proj +C²+C; out_proj +C²+C; input_gate +2·C·C0+C;
    forget_gate=True +C·d (A_log), plus 2·C·C0+C when the input gate is off (Δ is still needed);
    forget_gate="scalar" +C·h+2h; shortcut +C; lepe +9C+C; rope2d 0.
    """

    # Over 60 lines on purpose: one block per switch (the signature alone is 20 lines), in the order of
    # the parameter-cost table above, so each switch's parameters are found in one place.
    def __init__(
        self,
        dim: int,
        heads: int,
        feature_map: str = "elu_plus_one",
        normalize: bool = True,
        key_dim: Optional[int] = None,
        input_gate: bool = False,
        gate_rank: int | str = "auto",
        forget_gate: bool | str = False,
        scan_order: str = "row",
        shortcut: bool = False,
        v_proj: bool = False,
        qkv_bias: bool = True,
        out_proj: bool = False,
        proj_drop: float = 0.0,
        positional: Sequence[str] = (),
        eps: float = 1e-6,
    ):
        super().__init__()
        head_dim = check_dim_heads(dim, heads)
        if feature_map not in FEATURE_MAP_NAMES:
            raise ValueError(f"unknown feature_map {feature_map!r}; expected one of: {', '.join(FEATURE_MAP_NAMES)}")
        if key_dim is None:
            key_dim = head_dim
        if not isinstance(key_dim, int) or isinstance(key_dim, bool) or key_dim < 1:
            raise ValueError(f"key_dim must be a positive integer; got {key_dim!r}")
        if not (isinstance(forget_gate, bool) or forget_gate == "scalar"):
            raise ValueError(f"forget_gate must be false, true or 'scalar'; got {forget_gate!r}")
        if scan_order not in SCAN_ORDERS:
            raise ValueError(f"unknown scan_order {scan_order!r}; expected one of: {', '.join(SCAN_ORDERS)}")
        if scan_order != "row" and forget_gate is False:
            raise ValueError(f"scan_order {scan_order!r} needs forget_gate (without it the attention is "
                             f"non-causal and has no scan order)")
        if gate_rank == "auto":
            gate_rank = auto_rank(dim)
        if not isinstance(gate_rank, int) or isinstance(gate_rank, bool) or gate_rank < 1:
            raise ValueError(f"gate_rank must be 'auto' or a positive integer; got {gate_rank!r}")
        if not 0.0 <= float(proj_drop) < 1.0:
            raise ValueError(f"proj_drop must be in [0, 1); got {proj_drop!r}")
        self.positional = parse_positional(positional, ("rope2d", "lepe"))
        if "rope2d" in self.positional and (heads * key_dim) % 4:
            raise ValueError(f"rope2d needs heads*key_dim divisible by 4; got {heads}*{key_dim}")

        self.dim, self.heads, self.head_dim, self.key_dim = dim, heads, head_dim, key_dim
        self.feature_map = feature_map
        self.phi = get_feature_map(feature_map)
        self.normalize = bool(normalize)
        self.input_gate = bool(input_gate)
        self.forget_gate = forget_gate
        self.scan_order = scan_order
        self.directions = SCAN_ORDERS[scan_order]
        self.gate_rank = gate_rank
        self.eps = float(eps)

        qk_dim = heads * key_dim
        self.qk = nn.Linear(dim, 2 * qk_dim, bias=qkv_bias)  # rows [0, qk_dim) -> q, the rest -> k
        self.v = nn.Linear(dim, dim, bias=qkv_bias) if v_proj else None
        # Δ path (Mamba's dt): needed by the input gate and by the Mamba-style forget gate.
        self.delta_down: Optional[nn.Linear] = None
        self.delta_up: Optional[nn.Linear] = None
        if self.input_gate or forget_gate is True:
            self.delta_down = nn.Linear(dim, gate_rank, bias=False)  # W1 (C x C0)
            self.delta_up = nn.Linear(gate_rank, dim, bias=True)  # W2 (C0 x C) + bias
            init_dt_projection(self.delta_up, gate_rank)
            # keep Mamba's init (x_proj default, dt_proj special) under a model-level re-init
            self.delta_down.archdsl_self_init = True  # type: ignore[attr-defined]
            self.delta_up.archdsl_self_init = True  # type: ignore[attr-defined]
        self.A_log: Optional[nn.Parameter] = None
        self.decay_proj: Optional[nn.Linear] = None
        if forget_gate is True:  # A = -exp(A_log) [C, d], S4D-real init log(1..d)
            a = torch.arange(1, key_dim + 1, dtype=torch.float32).log()
            self.A_log = nn.Parameter(a.repeat(dim, 1).contiguous())
            self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        elif forget_gate == "scalar":  # one decay per head: -exp(A_log[h]) * softplus(x w_h + b_h)
            self.decay_proj = nn.Linear(dim, heads, bias=True)
            init_dt_projection(self.decay_proj, dim)
            self.decay_proj.archdsl_self_init = True  # type: ignore[attr-defined]
            self.A_log = nn.Parameter(torch.zeros(heads))  # A = -1 at init (Mamba-2 samples [1, 16])
            self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(dim)) if shortcut else None
        if self.D is not None:
            self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.rope = RoPE2d(qk_dim) if "rope2d" in self.positional else None
        self.lepe = LePE(dim) if "lepe" in self.positional else None
        self.proj = nn.Linear(dim, dim) if out_proj else None
        self.proj_drop = nn.Dropout(proj_drop) if out_proj else None
        self.backend: Optional[str] = None  # the scan kernel of the last forward (forget-gate paths)

    # ------------------------------------------------------------------ pieces
    def features_pair(self, x: torch.Tensor) -> torch.Tensor:
        """φ of both projections: [B, N, 2, h·d] (index 0 = q, 1 = k; φ per head for softmax)."""
        B, N, _ = x.shape
        qk = self.qk(x)  # [B, N, 2*h*d]
        if self.feature_map == "softmax":  # normalised over each head's key dim
            return self.phi(qk.view(B, N, 2, self.heads, self.key_dim)).view(B, N, 2, -1)
        return self.phi(qk).view(B, N, 2, -1)  # elementwise maps need no head split

    def features(self, x: torch.Tensor):
        """φq, φk: [B, N, h·d] each."""
        qk = self.features_pair(x)
        return qk[:, :, 0], qk[:, :, 1]

    def delta(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """Δ = softplus(x W1 W2 + b): [B, N, C] (None when neither gate needs it)."""
        if self.delta_down is None:
            return None
        return F.softplus(self.delta_up(self.delta_down(x)))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        # [B, N, h*e] -> [B, h, N, e]
        B, N, _ = t.shape
        return t.reshape(B, N, self.heads, -1).transpose(1, 2)

    @property
    def path(self) -> str:
        if self.forget_gate is True:
            return f"causal selective_scan ({self.scan_order})"
        if self.forget_gate == "scalar":
            return f"causal chunk_gated_linear_attention ({self.scan_order})"
        return "non-causal linear_attention"

    def fixed_size_reason(self) -> Optional[str]:
        if self.forget_gate is False:
            return None
        return f"forget_gate {self.forget_gate}: {SCAN_LOOP_REASON}"

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        B, N, C = check_tokens(x, hw, self.dim, "linear_attention")
        H, W = hw
        qk = self.features_pair(x)  # [B, N, 2, h*d]
        q, k = qk[:, :, 0], qk[:, :, 1]
        v = self.v(x) if self.v is not None else x  # [B, N, C]
        delta = self.delta(x)
        vg = v * delta if self.input_gate else v  # input gate Δ ⊙ V
        if self.rope is not None:  # q and k rotated in one call: [B, 2, N, h*d]
            qkr = self.rope.rotate(qk.transpose(1, 2), hw)
            qr, kr = qkr[:, 0], qkr[:, 1]
        else:
            qr, kr = q, k
        if self.forget_gate is False:
            out = linear_attention_op(self._heads(qr), self._heads(kr), self._heads(vg),
                                      normalize=self.normalize, eps=self.eps, reduction="mean",
                                      q_norm=self._heads(q), k_norm=self._heads(k))  # [B, h, N, e]
            out = out.transpose(1, 2).reshape(B, N, C)
        elif self.forget_gate is True:
            out = self._selective_scan_path(q, k, qr, kr, v, delta, hw)
        else:
            out = self._scalar_decay_path(x, q, k, qr, kr, vg, hw)
        if self.lepe is not None:
            out = out + self.lepe(v, hw)
        if self.D is not None:
            out = out + x * self.D
        if self.proj is not None:
            out = self.proj_drop(self.proj(out))
        return out

    def _to_scan(self, t: torch.Tensor, hw: HW) -> torch.Tensor:
        """[B, N, E] (row-major) -> [B*K, E, L]: the K scan orders folded into the batch."""
        B, N, E = t.shape
        m = t.transpose(1, 2).reshape(B, E, hw[0], hw[1])
        return cross_scan(m, self.directions).reshape(B * len(self.directions), E, N)

    def _from_scan(self, y: torch.Tensor, hw: HW) -> torch.Tensor:
        """[B*K, E, L] -> [B, N, E]: back to row-major, averaged over the K directions."""
        K = len(self.directions)
        y = y.reshape(-1, K, y.shape[-2], y.shape[-1])
        out = cross_merge(y, hw[0], hw[1], self.directions) / K  # [B, E, L]
        return out.transpose(1, 2)

    def _selective_scan_path(self, q, k, qr, kr, v, delta, hw):
        """Mamba-1 forget gate: h_i = exp(Δ_i A) ⊙ h_{i-1} + k_iᵀ (gated v)_i, y_i = q_i h_i."""
        h, d = self.heads, self.key_dim
        A = -torch.exp(self.A_log)  # [C, d]
        divides = self.normalize or not self.input_gate
        dlt = delta.clamp_min(DELTA_FLOOR) if divides else delta
        # selective_scan multiplies its input by Δ: feed v (input gate on) or v / Δ (off).
        u = v if self.input_gate else v / dlt

        def grouped(t):  # [B, N, h*d] -> [B*K, h, d, L]
            s = self._to_scan(t, hw)
            return s.reshape(s.shape[0], h, d, s.shape[-1])

        dl = self._to_scan(dlt, hw)
        y = selective_scan(self._to_scan(u, hw), dl, A, grouped(kr), grouped(qr))  # [B*K, C, L]
        self.backend = last_backend()
        if self.normalize:
            ones = self._to_scan(1.0 / dlt, hw)
            z = selective_scan(ones, dl, A, grouped(k), grouped(q))  # Z_i = Σ decay·k, dotted with q_i
            y = y / (z + self.eps)
        return self._from_scan(y, hw)

    def _scalar_decay_path(self, x, q, k, qr, kr, vg, hw):
        """Per-head scalar forget gate: S_i = a_i S_{i-1} + k_iᵀ v_i, a_i = exp(-exp(A_h)·dt_i)."""
        B, N, C = x.shape
        K = len(self.directions)
        h = self.heads
        dt = F.softplus(self.decay_proj(x))  # [B, N, h]
        log_decay = -torch.exp(self.A_log) * dt  # [B, N, h]

        def heads(t):  # [B, N, E] -> [B*K, h, L, E/h]
            s = self._to_scan(t, hw)  # [B*K, E, L]
            return s.reshape(s.shape[0], h, -1, s.shape[-1]).transpose(-1, -2)

        ld = self._to_scan(log_decay, hw)  # [B*K, h, L]
        if self.rope is None:  # one call: the op's own normaliser uses the same q, k
            y = chunk_gated_linear_attention(heads(q), heads(k), heads(vg), ld, normalize=self.normalize,
                                             eps=self.eps)
        else:
            y = chunk_gated_linear_attention(heads(qr), heads(kr), heads(vg), ld, normalize=False)
        if self.normalize and self.rope is not None:  # the normaliser uses the un-rotated q, k
            ones = torch.ones(B * K, h, N, 1, dtype=y.dtype, device=y.device)
            z = chunk_gated_linear_attention(heads(q), heads(k), ones, ld, normalize=False)
            y = y / (z + self.eps)
        y = y.transpose(-1, -2).reshape(B * K, C, N)  # [B*K, C, L]
        return self._from_scan(y, hw)

    def extra_repr(self) -> str:
        fg = {False: "off", True: "mamba (per channel x key dim)", "scalar": "scalar per head"}[self.forget_gate]
        return (f"dim={self.dim}, heads={self.heads}, key_dim={self.key_dim}, feature_map={self.feature_map}, "
                f"normalize={self.normalize}, input_gate={self.input_gate}"
                f"{f' (rank {self.gate_rank})' if self.input_gate else ''}, forget_gate={fg}, "
                f"shortcut={self.D is not None}, v_proj={self.v is not None}, out_proj={self.proj is not None}, "
                f"positional={list(self.positional)}, path={self.path}"
                f"{f' (last backend: {self.backend})' if self.backend else ''}")
