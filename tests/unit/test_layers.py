"""Imports run one way: edges (gRPC, REST/WS) → core → engines and animation → shared value types.

Read from the source (ast), so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lower number = lower layer. A module may import only from its own layer or below.
SERVER_LAYERS: list[tuple[str, int]] = [
    ("avatar_server.values", 0),
    ("avatar_server.errors", 0),
    ("avatar_server.cooperation", 0),
    ("avatar_server.settings", 1),
    ("avatar_server.models", 1),
    ("avatar_server.memory", 1),
    ("avatar_server.session_ids", 1),  # issues and checks session ids; the transport calls it
    ("avatar_server.observability", 1),  # metrics and traces: the core calls in; nothing here imports the core
    ("avatar_server.personas", 1),
    ("avatar_server.languages", 1),
    ("avatar_server.character", 1),
    ("avatar_server.media", 1),
    ("avatar_server.animation", 1),
    ("avatar_server.engines", 2),
    ("avatar_server.core", 3),
    ("avatar_server.transport", 4),
    ("avatar_server.server", 4),
    ("avatar_server.healthcheck", 4),
    ("avatar_server.__main__", 5),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(package: str) -> dict[str, set[str]]:
    """module → the modules of `package` it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        name = _module_name(path)
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith(package):
                    targets.add(node.module)
                    targets.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith(package))
        modules = {p for p in (_module_name(q) for q in (ROOT / package).rglob("*.py"))}
        graph[name] = {t for t in targets if t in modules and t not in (name, package)}
    return graph


def _layer(module: str) -> int:
    for prefix, layer in SERVER_LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} has no layer in SERVER_LAYERS: add it")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    return found


def test_server_imports_only_downward() -> None:
    graph = _imports("avatar_server")
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in graph.items()
        if module != "avatar_server"
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_cycles_between_modules_or_packages() -> None:
    for package in ("avatar_server", "rest_bridge"):
        graph = _imports(package)
        assert _cycles(graph) == [], package

        # Package level: e.g. animation ↔ engines through a pair of modules is a cycle too.
        def top(module: str, package: str = package) -> str:
            parts = module.split(".")
            return ".".join(parts[:2]) if len(parts) > 1 else module

        packages: dict[str, set[str]] = {}
        for module, targets in graph.items():
            packages.setdefault(top(module), set()).update(top(t) for t in targets if top(t) != top(module))
        assert _cycles(packages) == [], package


def test_the_bridge_never_imports_the_server() -> None:
    graph = _imports("rest_bridge")
    for path in (ROOT / "rest_bridge").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [n for n in names if n.startswith("avatar_server")], path  # it speaks gRPC only
    assert all(
        "rest_bridge.app" not in targets for module, targets in graph.items() if module != "rest_bridge.__main__"
    )
