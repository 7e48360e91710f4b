"""Import structure (DESIGN.md): every module has a level and imports only modules of a lower level
(so there is no cycle), lazy imports inside functions included; leaves import only `errors`; models
never import data/training/compression; data never imports models; nothing imports cli."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tinyasc"

# module → level; a module may import (at top level or inside a function) only lower levels.
# A new module must be placed here: the test fails for a module without a level.
LEVELS = {
    "errors": 0,
    # leaves: the standard library, numpy, torch (and the modules above them in this list)
    "config": 1, "dcase": 1, "rundir": 1, "paths": 1, "lock": 1, "system": 1, "data": 1, "compress": 1,
    "audio": 2, "augment": 2, "complexity": 2, "features": 2, "models.norm": 2, "evaluate": 2,
    "data.synthetic": 2, "compress.prune": 2, "onnxmodel": 2,
    "submission": 3, "rules": 3, "distill": 2, "device_response": 3, "models.bc_resnet": 3, "data.tau": 3, "compress.distill": 3,
    "models.baselines": 4, "data.cache": 4, "frontend": 3,
    "models": 5,  # the registry
    "checkpoint": 6,
    "compress.quantize": 7, "predict": 7, "train": 7,
    "experiment": 8, "export": 8, "export_c": 8, "stream": 8, "figure": 8,
    "report": 9, "devices": 11,
    "runs": 10,
    "compress.pipeline": 11, "dcase2025": 8,
    "cli": 12,
    "__main__": 13, "tinyasc": 13,  # `python -m tinyasc`; the package exposes tinyasc.load lazily
}
LEAVES = {"audio", "features", "augment", "complexity", "models.norm", "errors", "onnxmodel", "paths", "lock",
          "config", "dcase", "rundir", "system"}
FORBIDDEN = {
    "models": ("tinyasc.data", "tinyasc.train", "tinyasc.compress", "tinyasc.evaluate", "tinyasc.export"),
    "data": ("tinyasc.models", "tinyasc.train", "tinyasc.compress", "tinyasc.evaluate"),
}


def module_name(path):
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__") or "tinyasc"


def tinyasc_imports(path):
    """Every tinyasc module `path` imports, anywhere in the file (function-level imports too), as
    names relative to the package ('tinyasc.data.tau' → 'data.tau'); `from tinyasc import x` → 'x'."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == "tinyasc"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tinyasc":
            if node.module == "tinyasc":
                names |= {f"tinyasc.{a.name}" for a in node.names}
            else:
                names.add(node.module)
    return {n.removeprefix("tinyasc.") if n != "tinyasc" else n for n in names}


FILES = sorted(SRC.rglob("*.py"))
GRAPH = {module_name(p): tinyasc_imports(p) for p in FILES}


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_every_module_imports_only_lower_levels(name):
    assert name in LEVELS, f"{name} has no level: place it in tests/test_imports.py LEVELS"
    for imported in GRAPH[name]:
        assert imported in LEVELS, f"{name} imports {imported}, which has no level"
        assert LEVELS[imported] < LEVELS[name], \
            f"{name} (level {LEVELS[name]}) imports {imported} (level {LEVELS[imported]})"


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_import_direction(name):
    imports = {f"tinyasc.{i}" for i in GRAPH[name]}
    assert "tinyasc.cli" not in imports or name == "__main__"
    if name in LEAVES:
        assert imports <= {"tinyasc.errors", "tinyasc.config"}, f"{name} is a leaf but imports {imports}"
    for prefix, banned in FORBIDDEN.items():
        if name == prefix or name.startswith(prefix + "."):
            bad = [i for i in imports if i.startswith(banned)]
            assert not bad, f"{name} must not import {bad}"


def find_cycle(graph):
    """One import cycle as a list of modules, or None (depth-first search; lazy imports count)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    assert find_cycle(GRAPH) is None, " → ".join(find_cycle(GRAPH))


def test_the_cycle_finder_sees_a_lazy_import_cycle(tmp_path):
    # the former export ⇄ predict cycle went through a function-level import: it must be found
    (tmp_path / "a.py").write_text("from tinyasc.b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    from tinyasc.a import g\n")
    graph = {p.stem: tinyasc_imports(p) for p in tmp_path.glob("*.py")}
    assert find_cycle(graph) in (["a", "b", "a"], ["b", "a", "b"])
