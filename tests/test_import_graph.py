"""The package graph: cnnzoo below zoo below serving and tuning, no cycles, no private reach-ins.

Read from the source with `ast` (no imports run), so the test sees function-level imports too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cnnzoo", "zoo", "tuning", "serving")
# Which packages each package may import (besides itself).
ALLOWED = {"cnnzoo": set(), "zoo": {"cnnzoo"}, "serving": {"cnnzoo", "zoo"},
           "tuning": {"cnnzoo", "zoo", "serving"}}
# tuning reaches serving through this one module: the export of the winners.
TUNING_SERVING_BRIDGE = "tuning.export_winners"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Project modules imported anywhere in the file (absolute names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        # "from pkg import name" names a module only when that module exists.
        edges[name] = {m for m in _imports(path, name) if m in modules and m != name}
    return edges


def test_packages_import_only_what_lies_below(graph):
    bad = [(m, t) for m, targets in graph.items() for t in targets
           if t.split(".")[0] != m.split(".")[0] and t.split(".")[0] not in ALLOWED[m.split(".")[0]]]
    assert bad == []


def test_tuning_reaches_serving_through_one_bridge(graph):
    users = sorted({m for m, targets in graph.items() if m.startswith("tuning")
                    for t in targets if t.startswith("serving")})
    assert users in ([], [TUNING_SERVING_BRIDGE])


def test_no_private_module_is_imported_from_another_package(graph):
    bad = [(m, t) for m, targets in graph.items() for t in targets
           if t.split(".")[0] != m.split(".")[0] and any(p.startswith("_") and p != "__init__"
                                                        for p in t.split(".")[1:])]
    assert bad == []


def test_no_import_cycles(graph):
    # Package __init__ modules re-export lazily; an edge to a package means "some module in it".
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in PACKAGES:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))
