"""MACs of the recurrent scans that ``FlopCounterMode`` does not see, one registered cost per mixer.

The elementwise recurrence ``h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t, y_t = C_t h_t`` has no matrix
product, so torch's counter reports 0 for it. fvcore-based papers (VMamba's
``flops_selective_scan_ref``, Vim, LocalVMamba, ...) add ``9 · L · D · N`` MACs per scan direction
(L tokens, D channels, N state size). A mixer class registers a cost function
``fn(module, tokens) -> MACs`` with :func:`register_scan_cost`; :func:`count_macs_with_scan` hooks
every registered mixer of a model during one counted forward pass.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

from torch import nn

from archdsl.analysis.summary import SizeT, count_macs
from archdsl.layers.mixers.linear_attention import LinearAttention
from archdsl.layers.mixers.multi_scan_ssm import MultiScanSSM
from archdsl.layers.mixers.selective_ssm import SelectiveSSM

__all__ = ["SCAN_MACS_PER_ELEMENT", "register_scan_cost", "scan_cost", "count_macs_with_scan"]

SCAN_MACS_PER_ELEMENT = 9  # VMamba's flops_selective_scan_ref: 9 * B * L * D * N
CostFn = Callable[[nn.Module, int], int]
_COSTS: Dict[type, CostFn] = {}


def register_scan_cost(cls: type) -> Callable[[CostFn], CostFn]:
    """Decorator: ``@register_scan_cost(MyMixer)`` on ``fn(module, tokens) -> MACs`` (subclasses
    inherit it unless they register their own)."""
    def deco(fn: CostFn) -> CostFn:
        _COSTS[cls] = fn
        return fn
    return deco


def scan_cost(module: nn.Module) -> CostFn | None:
    """The registered cost function of ``module``'s class (nearest in its MRO), or None."""
    return next((_COSTS[c] for c in type(module).__mro__ if c in _COSTS), None)


@register_scan_cost(LinearAttention)
def _linear_attention(mod: Any, tokens: int) -> int:
    """The recurrent forget gate (``forget_gate: true``): D = width, N = key_dim (A is [D, key_dim])."""
    if mod.forget_gate is not True:
        return 0
    return SCAN_MACS_PER_ELEMENT * tokens * int(mod.dim) * int(mod.key_dim) * len(mod.directions)


@register_scan_cost(SelectiveSSM)
def _selective_ssm(mod: Any, tokens: int) -> int:
    """Mamba's S6 scan: D = width, N = d_state, once per scan direction (L = the tokens each direction
    scanned in the last forward: a quarter of the zero-padded grid each for ``scan_order: atrous``)."""
    scanned = int(getattr(mod, "scanned_tokens", 0)) or tokens * len(mod.directions)
    return SCAN_MACS_PER_ELEMENT * scanned * int(mod.dim) * int(mod.d_state)


@register_scan_cost(MultiScanSSM)
def _multi_scan_ssm(mod: Any, tokens: int) -> int:
    """One S6 scan per path over the padded sequence (L' >= tokens, the length of the last forward)."""
    return SCAN_MACS_PER_ELEMENT * max(int(mod.scan_length), tokens) * int(mod.dim) * int(mod.d_state) * len(mod.paths)


def count_macs_with_scan(model: nn.Module, input_size: SizeT | None = None) -> Tuple[int, int]:
    """``(macs, scan_macs)`` at batch 1 in one forward pass: :func:`count_macs` and the registered
    scan costs of every mixer in ``model`` (L = the tokens reaching the mixer). Works on the meta
    device too."""
    total = [0]

    def hook(mod: nn.Module, inputs: Any, output: Any) -> None:
        total[0] += scan_cost(mod)(mod, int(inputs[0].shape[1]))  # type: ignore[misc]

    hooks = [m.register_forward_hook(hook) for m in model.modules() if scan_cost(m) is not None]
    try:
        macs = count_macs(model, input_size)
    finally:
        for h in hooks:
            h.remove()
    return macs, total[0]
