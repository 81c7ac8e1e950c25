"""The package graph: cnnzoo below zoo below serving and tuning, no cycles, no private reach-ins,
and inside serving and tuning the rules their folders promise (clients, export, server and its
front ends; searches and comparisons side by side).

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
TUNING_SERVING_BRIDGE = "tuning.searches.export_winners"


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


def test_no_private_module_is_imported_from_outside_its_package(graph):
    # serving.exporter._signatures is private to serving.exporter; tuning._keras_tuner to tuning.
    def private_home(target: str) -> str | None:
        parts = target.split(".")
        for i, part in enumerate(parts[1:], start=1):
            if part.startswith("_") and part != "__init__":
                return ".".join(parts[:i])
        return None

    bad = [(m, t) for m, targets in graph.items() for t in targets
           if (home := private_home(t)) and not (m == home or m.startswith(home + "."))]
    assert bad == []


def _edges_between(graph, source: str, target: str) -> list[tuple[str, str]]:
    inside = lambda name, pkg: name == pkg or name.startswith(pkg + ".")  # noqa: E731
    return sorted((m, t) for m, targets in graph.items() if inside(m, source)
                  for t in targets if inside(t, target))


@pytest.mark.parametrize("source, target", [
    ("serving.client", "serving.server"),      # a client never imports the server
    ("serving.server", "serving.client"),      # the server never imports a client
    ("serving.exporter", "serving.server"),    # export never imports the server
    ("serving.exporter", "serving.client"),
    ("tuning.searches", "tuning.comparisons"),  # the two families share tuning's top, not each other
    ("tuning.comparisons", "tuning.searches"),
])
def test_sibling_packages_stay_apart(graph, source, target):
    assert _edges_between(graph, source, target) == []


FRONTENDS = "serving.server.frontends"
# What a front end may use of the server: the one service and the option defaults it is given.
FRONTEND_MAY_IMPORT = {"serving.server.service", "serving.server.options", FRONTENDS}


def test_front_ends_only_translate_into_the_one_service(graph):
    bad = [(m, t) for m, t in _edges_between(graph, FRONTENDS, "serving.server")
           if not t.startswith(FRONTENDS) and t not in FRONTEND_MAY_IMPORT]
    assert bad == []
    # ... and the data plane knows no protocol: only the server that wires them imports a front end.
    users = {m for m, _ in _edges_between(graph, "serving.server", FRONTENDS) if not m.startswith(FRONTENDS)}
    assert users == {"serving.server.model_server"}


def test_shared_serving_modules_import_no_subpackage(graph):
    # names, errors, tensors, protos, json_body and config_files sit at serving's top because
    # export, server and clients all use them: they must not pull one of those in.
    top = [m for m in graph if m.count(".") == 1 and m.startswith("serving.") and m != "serving.__main__"]
    bad = [(m, t) for m in top for t in graph[m] if t.startswith("serving.") and t.count(".") > 1]
    assert bad == []


@pytest.mark.parametrize("package", ["cnnzoo", "zoo", "tuning", "tuning.searches", "tuning.comparisons",
                                     "serving", "serving.exporter", "serving.server",
                                     "serving.server.frontends", "serving.client"])
def test_no_folder_holds_more_than_fifteen_modules(package):
    folder = ROOT.joinpath(*package.split("."))
    modules = [p for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(modules) <= 15, sorted(p.name for p in modules)


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
