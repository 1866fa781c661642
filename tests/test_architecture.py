"""The package's layers, checked on its source: imports point one way and never go round in a circle.

docs/ARCHITECTURE.md describes the layers; this test is what keeps them. Every `import` of a
`flowforge` module counts, at the top of a module or inside a function (a lazy import is still a
dependency), except those under `if TYPE_CHECKING:`, which exist only for the type checker.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "flowforge"

# The layer of a module is its first component under flowforge/ ("store", "engine", "cli", ...),
# and a layer may import only the layers listed for it (and itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "queues": {"core"},
    "store": {"core"},
    "settings": {"core"},
    "logsetup": {"core", "settings"},
    "metrics": {"core", "store", "queues", "settings"},
    "engine": {"core", "store", "queues", "settings", "metrics", "logsetup"},
    "services": {"core", "store", "queues", "settings"},
    "operations": {"core", "store", "queues", "settings", "services", "operations_stats"},
    # below operations: its run snapshot carries the slow notes
    "operations_stats": {"core", "store", "queues", "settings", "services"},
    "operations_explain": {"core", "store", "queues", "settings", "services", "operations"},
    "operations_prune": {"core", "store", "queues", "settings", "services", "operations"},
    "dagfolder": {"core", "store", "queues", "settings", "services", "operations"},
    "api.models": {"core"},
    "api": {
        "core",
        "store",
        "queues",
        "settings",
        "metrics",
        "logsetup",
        "services",
        "operations",
        "dagfolder",
        "operations_explain",
        "operations_prune",
        "operations_stats",
        "api.models",
    },
    "roles": {
        "core",
        "store",
        "queues",
        "settings",
        "metrics",
        "logsetup",
        "services",
        "operations",
        "dagfolder",
        "engine",
        "api",
    },
    "localrun": {"core", "store", "queues", "settings", "services", "operations", "roles"},
    "client": {"core", "api.models"},
    "tui": {"core", "client", "api.models"},
    "cli": {"core", "client", "api.models", "settings", "logsetup", "roles", "tui", "operations", "localrun"},
    "__main__": {"cli"},
}
# The root package (`flowforge/__init__.py`) holds only the version: anything may read it.
ROOT = "flowforge"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> set[str]:
    """Every flowforge module imported anywhere in the tree, but for TYPE_CHECKING blocks."""
    found: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == ROOT)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == ROOT:
            # `from flowforge.store import base` names a module; `from flowforge.x import f` a symbol.
            found.update(f"{node.module}.{a.name}" for a in node.names)
            found.add(node.module)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _graph() -> nx.DiGraph:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in _imports(ast.parse(path.read_text(), str(path))):
            # Resolve `flowforge.x.y` (a module) or `flowforge.x.f` (a symbol of module x).
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            # A package's own __init__ runs before any of its modules: not a dependency of them.
            if target != name and target in modules and not name.startswith(target + "."):
                graph.add_edge(name, target)
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return ""
    if parts[1] == "api" and len(parts) > 2 and parts[2] == "models":
        return "api.models"
    return parts[1]


def test_every_module_is_in_a_known_layer() -> None:
    layers = {_layer(m) for m in _graph().nodes} - {""}
    assert layers <= set(ALLOWED), f"modules outside any known layer: {sorted(layers - set(ALLOWED))}"


def test_imports_point_down_the_layers() -> None:
    upward = []
    for source, target in _graph().edges:
        src, dst = _layer(source), _layer(target)
        if dst not in ("", src) and dst not in ALLOWED[src]:
            upward.append(f"{source} imports {target}")
    assert not upward, "imports against the layers (see docs/ARCHITECTURE.md):\n" + "\n".join(sorted(upward))


def test_no_import_circles() -> None:
    cycles = list(nx.simple_cycles(_graph()))
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join([*c, c[0]]) for c in cycles[:20])


def test_the_checks_see_the_whole_package() -> None:
    # Guards the walk itself: a broken resolver would find no edges and pass everything above.
    graph = _graph()
    assert graph.has_edge("flowforge.engine.worker", "flowforge.engine.executor")
    assert graph.has_edge("flowforge.store.sqlite", "flowforge.store.sql")
    assert graph.number_of_edges() > 100
