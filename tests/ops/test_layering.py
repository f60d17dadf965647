"""archdsl/ops sits at the bottom of the package: it never imports the layers or the language."""
import ast
from pathlib import Path

import archdsl.ops

FORBIDDEN = ("archdsl.layers", "archdsl.spec", "archdsl.compiler", "archdsl.blocks", "archdsl.layouts")


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = "archdsl.ops." + ".".join(path.relative_to(Path(archdsl.ops.__file__).parent).with_suffix("").parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # resolve relative imports against the module's package
                base = pkg.split(".")[: -node.level]
                yield ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.module


def test_ops_never_import_upper_layers():
    root = Path(archdsl.ops.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 10
    bad = [
        f"{f.relative_to(root)} imports {name}"
        for f in files
        for name in _imports(f)
        if name and name.startswith(FORBIDDEN)
    ]
    assert bad == []
