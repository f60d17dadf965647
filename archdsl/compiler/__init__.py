"""Spec -> ``nn.Module``: the compiler of the archdsl language.

    core.py        Compiler (components, blocks), compile_spec, build_model, init_weights
    nodes.py       a block template's body -> program (widths inferred, located errors)
    graph.py       the program's node types and the Scope / TemplateBlock modules that run them
    context.py     BuildContext (what a primitive builder sees), option checking
    primitives.py  the registered template primitives (linear, conv, norm, mlp, mixer, gate, ...)
    optimize.py    optimize(model, for_inference=True): conv+BN folding, shared-input linears fused

Importing this package registers every built-in component (``archdsl.layers``) and primitive.
"""
from archdsl.compiler.context import BuildContext, check_options
from archdsl.compiler.core import Compiler, build_model, compile_spec, init_weights
from archdsl.compiler.graph import Scope, TemplateBlock
from archdsl.compiler.optimize import optimize

__all__ = ["compile_spec", "build_model", "Compiler", "BuildContext", "Scope", "TemplateBlock", "init_weights",
           "check_options", "optimize"]
