"""The package's import order (docs/architecture.md): a module imports only from its own layer or the
layers below it, and imports archdsl modules at the top of the file (function-local imports hide
cycles) except where a comment in LAZY says why."""
import ast
from pathlib import Path

import archdsl

ROOT = Path(archdsl.__file__).parent

# bottom -> top; keep in sync with docs/architecture.md
ORDER = [
    ["archdsl.errors", "archdsl.files"],
    ["archdsl.registry"],
    ["archdsl.ops"],
    ["archdsl.layers"],
    ["archdsl.layouts"],
    ["archdsl.language", "archdsl.spec"],  # archdsl.spec: the old name, an alias kept for one release
    ["archdsl.compiler"],
    ["archdsl.analysis"],
    ["archdsl.convert"],
    ["archdsl.data"],
    ["archdsl.train"],
    ["archdsl.search"],
    ["archdsl.export"],
    ["archdsl.integrations"],
    ["archdsl.cli", "archdsl.__main__"],
]

# modules allowed to import archdsl modules inside functions, and why
LAZY = {
    "archdsl": "public API resolved on first use (importing archdsl must not import torch)",
    "archdsl.cli.*": "sub-commands import their torch-heavy modules when run (`archdsl --help` stays fast)",
    "archdsl.search": "package __getattr__: run_search / results on first use",
}


def _lazy_ok(module: str) -> bool:
    return any(module == k or (k.endswith(".*") and module.startswith(k[:-1])) or module == k[:-2]
               for k in LAZY)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, mod: str | None = None):
    """-> [(imported module, line, top_level)] for archdsl imports (``from archdsl import x`` -> archdsl.x)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    mod = mod or _module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    top = {id(n) for n in tree.body}
    for n in tree.body:  # `if TYPE_CHECKING:` / try blocks at module level count as top level
        if isinstance(n, (ast.If, ast.Try)):
            top |= {id(c) for c in ast.walk(n)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if base == "archdsl" else base for a in node.names]
        else:
            continue
        out += [(n, node.lineno, id(node) in top) for n in names if n == "archdsl" or n.startswith("archdsl.")]
    return out


def _layer(name: str) -> int:
    best = None
    for i, group in enumerate(ORDER):
        for prefix in group:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    return -1 if best is None else best[0]


FILES = sorted(p for p in ROOT.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = [_module_name(f) for f in FILES if f.name != "__init__.py" or f.parent != ROOT]
    missing = [m for m in missing if _layer(m) < 0]
    assert missing == [], f"modules outside the documented order (add them to ORDER and docs): {missing}"


def test_imports_only_go_up():
    assert len(FILES) > 60
    bad = []
    for f in FILES:
        me = _module_name(f)
        mine = _layer(me) if me != "archdsl" else len(ORDER)
        for name, line, _ in _imports(f):
            if name == "archdsl":
                continue
            theirs = _layer(name)
            if theirs > mine:
                bad.append(f"{f.relative_to(ROOT.parent)}:{line} ({ORDER[mine][0]}) imports {name} ({ORDER[theirs][0]})")
    assert bad == []


def test_no_function_local_imports_of_archdsl():
    bad = []
    for f in FILES:
        me = _module_name(f)
        if _lazy_ok(me):
            continue
        bad += [f"{f.relative_to(ROOT.parent)}:{line} imports {name} inside a function"
                for name, line, top in _imports(f) if not top]
    assert bad == []


def test_the_checker_sees_violations(tmp_path):
    """The checker itself: an upward import and a function-local import are both found."""
    assert _layer("archdsl.ops.rope") < _layer("archdsl.compiler.core") < _layer("archdsl.cli.build")
    assert _layer("archdsl.language.schema") == _layer("archdsl.spec.schema")
    f = tmp_path / "probe.py"
    f.write_text("from ..compiler import build_model\n\ndef g():\n    from archdsl.errors import SpecError\n")
    found = _imports(f, "archdsl.ops.probe")
    assert ("archdsl.compiler", 1, True) in found and ("archdsl.errors", 4, False) in found
