"""Mixer / posenc conformance suite (Optuna's habit): every registered component, plus the
variants listed here, must pass the same checks. A new mixer is tested the day it is registered:
its defaults are always in the list (``registry.names("mixer")``)."""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch

import archdsl.compiler  # noqa: F401  (registers every built-in mixer before the cases are listed)
from archdsl import registry

DIM, HEADS = 16, 2

# Extra configurations exercising the options (name, options); defaults of every registered mixer
# are added by mixer_cases().
MIXER_VARIANTS: List[Tuple[str, Dict[str, Any]]] = [
    ("softmax_attention", {"window_size": 3}),
    ("softmax_attention", {"window_size": 3, "shift": True, "positional": ["rope2d", "lepe"]}),
    ("softmax_attention", {"window_size": 4, "shift": 1, "rel_pos_bias": False}),
    ("linear_attention", {"positional": ["rope2d", "lepe"]}),
    ("linear_attention", {"feature_map": "relu", "normalize": False, "v_proj": True, "out_proj": True}),
    ("linear_attention", {"feature_map": "softmax", "key_dim": 4, "input_gate": True, "shortcut": True}),
    ("linear_attention", {"forget_gate": True, "positional": ["rope2d"]}),
    ("linear_attention", {"forget_gate": True, "input_gate": True, "scan_order": "cross4", "normalize": False}),
    ("linear_attention", {"forget_gate": "scalar", "scan_order": "bidirectional", "positional": ["lepe"]}),
    ("selective_ssm", {"scan_order": "bidirectional", "d_state": 4}),
    ("selective_ssm", {"scan_order": "cross4", "d_state": 4}),
    ("selective_ssm", {"scan_order": "atrous", "d_state": 4}),
]


def mixer_cases() -> List[Tuple[str, Dict[str, Any]]]:
    cases = [(name, {}) for name in registry.names("mixer")]
    return cases + [c for c in MIXER_VARIANTS if registry.has("mixer", c[0])]


def case_id(case) -> str:
    name, opts = case
    return name + ("" if not opts else "-" + "-".join(f"{k}={v}" for k, v in opts.items()))


def build_mixer(name: str, opts: Dict[str, Any], dim: int = DIM, heads: int = HEADS) -> torch.nn.Module:
    return registry.get("mixer", name)(dim, heads, **opts)


def build_posenc(name: str, dim: int = DIM) -> torch.nn.Module:
    return registry.get("posenc", name)(dim)


def grads_reach_all_parameters(module: torch.nn.Module, out: torch.Tensor) -> List[str]:
    """Backprop a random projection of ``out``; return the names of parameters left without gradient."""
    (out * torch.randn_like(out)).sum().backward()
    return [n for n, p in module.named_parameters()
            if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)]
