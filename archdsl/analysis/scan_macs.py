"""MACs of the recurrent scans that ``FlopCounterMode`` does not see, one registered cost per mixer.

The elementwise recurrence ``h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t, y_t = C_t h_t`` has no matrix
product, so torch's counter reports 0 for it. fvcore-based papers (VMamba's
``flops_selective_scan_ref``, Vim, LocalVMamba, ...) add ``9 · L · D · N`` MACs per scan direction
(L tokens, D channels, N state size). A mixer class registers a cost function
``fn(module, tokens, convention="vmamba") -> MACs`` with :func:`register_scan_cost`;
:func:`count_macs_with_scan` hooks every registered mixer of a model during one counted forward pass.

Conventions (:data:`SCAN_CONVENTIONS`, the MACs of one scan direction over L tokens):
  vmamba       9·L·D·N (the default)
  localmamba   5·L·D·N + 2·L·D: LocalMamba's ``local_vim.py`` ``flops()`` (A: D·L·N, B: 2·D·L·N,
               C: 2·D·N·L, D and the z gate: D·L each), the counter behind the Vim-T / Vim-S figures
               (1.5G / 5.1G) that LocalMamba's table and later papers quote (Vim's paper gives none)
``count_macs_with_scan(..., uncounted=[glob, ...])`` also leaves out the MACs of the named modules,
for an official counter that does not count them (LocalMamba's counts one direction's conv1d /
x_proj / dt_proj of a Vim layer).
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from functools import partial
from typing import Any, Callable, Dict, List, Sequence, Tuple

from torch import nn

from archdsl.analysis.summary import SizeT, call_macs, count_macs
from archdsl.layers.mixers.linear_attention import LinearAttention
from archdsl.layers.mixers.multi_scan_ssm import MultiScanSSM
from archdsl.layers.mixers.selective_ssm import SelectiveSSM

__all__ = ["SCAN_MACS_PER_ELEMENT", "SCAN_CONVENTIONS", "scan_direction_macs", "register_scan_cost", "scan_cost",
           "count_macs_with_scan"]

SCAN_MACS_PER_ELEMENT = 9  # VMamba's flops_selective_scan_ref: 9 * B * L * D * N
SCAN_CONVENTIONS: Dict[str, Callable[[int, int, int], int]] = {
    "vmamba": lambda L, D, N: SCAN_MACS_PER_ELEMENT * L * D * N,
    "localmamba": lambda L, D, N: 5 * L * D * N + 2 * L * D,
}
CostFn = Callable[..., int]  # fn(module, tokens, convention="vmamba") -> MACs


def scan_direction_macs(tokens: int, channels: int, state: int, convention: str = "vmamba") -> int:
    """MACs of one scan direction (L tokens, D channels, N state size) under ``convention``."""
    if convention not in SCAN_CONVENTIONS:
        raise ValueError(f"unknown scan MACs convention {convention!r}; expected one of: {', '.join(SCAN_CONVENTIONS)}")
    return SCAN_CONVENTIONS[convention](int(tokens), int(channels), int(state))
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
def _linear_attention(mod: Any, tokens: int, convention: str = "vmamba") -> int:
    """The recurrent forget gate (``forget_gate: true``): D = width, N = key_dim (A is [D, key_dim])."""
    if mod.forget_gate is not True:
        return 0
    return scan_direction_macs(tokens, mod.dim, mod.key_dim, convention) * len(mod.directions)


@register_scan_cost(SelectiveSSM)
def _selective_ssm(mod: Any, tokens: int, convention: str = "vmamba") -> int:
    """Mamba's S6 scan: D = width, N = d_state, once per scan direction (L = the tokens each direction
    scanned in the last forward: a quarter of the zero-padded grid each for ``scan_order: atrous``;
    every convention is linear in L, so the directions' tokens are counted together)."""
    scanned = int(getattr(mod, "scanned_tokens", 0)) or tokens * len(mod.directions)
    return scan_direction_macs(scanned, mod.dim, mod.d_state, convention)


@register_scan_cost(MultiScanSSM)
def _multi_scan_ssm(mod: Any, tokens: int, convention: str = "vmamba") -> int:
    """One S6 scan per path over the padded sequence (L' >= tokens, the length of the last forward)."""
    return scan_direction_macs(max(int(mod.scan_length), tokens), mod.dim, mod.d_state, convention) * len(mod.paths)


def count_macs_with_scan(model: nn.Module, input_size: SizeT | None = None, convention: str = "vmamba",
                         uncounted: Sequence[str] = ()) -> Tuple[int, int]:
    """``(macs, extra)`` at batch 1 in one forward pass: :func:`count_macs` and what the scan
    convention adds to it: the registered scan costs of every mixer in ``model`` (L = the tokens
    reaching the mixer) under ``convention``, minus the MACs of the modules whose names match a
    glob of ``uncounted`` (e.g. ``*.ssm_b.x_proj``). Works on the meta device too."""
    scan_direction_macs(1, 1, 1, convention)  # an unknown convention fails before the pass
    total = [0]
    calls: List[Any] = []

    def hook(mod: nn.Module, inputs: Any, output: Any) -> None:
        total[0] += scan_cost(mod)(mod, int(inputs[0].shape[1]), convention)  # type: ignore[misc]

    hooks = [m.register_forward_hook(hook) for m in model.modules() if scan_cost(m) is not None]
    left_out = [m for name, m in model.named_modules() if any(fnmatchcase(name, g) for g in uncounted)]
    hooks += [m.register_forward_hook(lambda mod, a, kw, out: calls.append(partial(mod, *a, **kw)), with_kwargs=True)
              for m in left_out]
    try:
        macs = count_macs(model, input_size)
    finally:
        for h in hooks:
            h.remove()
    return macs, total[0] - sum(call_macs(c) for c in calls)
