"""archdsl: a declarative architecture-search and model-builder language for vision backbones.

Public API (everything else may change):

    load_spec(path, overrides=(), allow_plugins=None) -> Spec   # YAML -> validated, resolved spec
    build_model(spec_or_path, overrides=(), allow_plugins=None) -> nn.Module
                                                  # a spec's plugins: import only with allow_plugins=True
                                                  # (or ARCHDSL_ALLOW_PLUGINS=1); docs/security.md
    optimize(model, for_inference=True) -> nn.Module   # folded / fused copy for deployment
    run_search(space=..., budget=..., out_dir=...) -> dict   # the `archdsl search` pipeline
    register(kind, name)                          # add a mixer / block / stem / ... from Python
    timm                                          # archdsl.integrations.timm (register_spec; needs timm)
    SpecError                                     # the language's one error type
"""
from __future__ import annotations

__version__ = "0.1.0"

from archdsl.errors import SpecError
from archdsl.registry import register

__all__ = ["__version__", "register", "SpecError", "load_spec", "build_model", "optimize", "run_search"]


def __getattr__(name: str):  # lazy: importing archdsl must not import torch-heavy modules
    if name == "load_spec":
        from archdsl.language import load_spec

        return load_spec
    if name == "build_model":
        from archdsl.compiler import build_model

        return build_model
    if name == "timm":  # importing it registers the shipped specs with timm
        from archdsl.integrations import timm

        return timm
    if name == "optimize":
        from archdsl.compiler.optimize import optimize

        return optimize
    if name == "run_search":
        from archdsl.search import run_search

        return run_search
    raise AttributeError(name)
