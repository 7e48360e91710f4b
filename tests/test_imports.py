"""One-way imports (DESIGN.md): leaves import no other tinyasc module but errors; models never import
data/training/compression; data never imports models; nothing imports cli."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tinyasc"
LEAVES = {"audio", "features", "augment", "complexity", "models.norm", "errors"}
FORBIDDEN = {
    "models": ("tinyasc.data", "tinyasc.train", "tinyasc.compress", "tinyasc.evaluate", "tinyasc.export"),
    "data": ("tinyasc.models", "tinyasc.train", "tinyasc.compress", "tinyasc.evaluate"),
}


def module_name(path):
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def tinyasc_imports(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("tinyasc")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tinyasc"):
            names.add(node.module)
    return names


FILES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[module_name(p) or "tinyasc" for p in FILES])
def test_import_direction(path):
    name, imports = module_name(path), tinyasc_imports(path)
    assert "tinyasc.cli" not in imports or name == "__main__"
    if name in LEAVES:
        assert imports <= {"tinyasc.errors"}, f"{name} is a leaf but imports {imports}"
    for prefix, banned in FORBIDDEN.items():
        if name == prefix or name.startswith(prefix + "."):
            bad = [i for i in imports if i.startswith(banned)]
            assert not bad, f"{name} must not import {bad}"
