"""The import rules of docs/architecture.md that ruff cannot check.

No import circles: a module never imports one that imports it back, counting
the imports inside functions (a lazy import is still a dependency, only a
later one). Each layer imports only the layers below it. And cli/app.py
imports every command module, since the commands register themselves on
import: a module it missed would be a command that `git claim` never runs and
completion never offers.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "git_claim"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that `name` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            # `from . import board_cmd` imports the submodule, not only the package
            targets += [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                        for alias in node.names]
    found = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = _graph()
    assert "git_claim.lock" in graph["git_claim.backlog"]  # the graph sees imports at all
    assert "git_claim.liveness" in graph["git_claim.lock"]  # and those inside functions
    circles = _circles(graph)
    assert circles == [], "\n".join(
        " <-> ".join(circle) + ": " + "; ".join(f"{a} imports {b}" for a in circle
                                               for b in sorted(graph[a] & set(circle)))
        for circle in circles)


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


# entry.py, cli/, ops/, the protocol and loop, gateway/: from the top; errors.py and
# safetext.py import nothing of ours and serve every layer
SHARED = {"git_claim.errors", "git_claim.safetext"}


def _layer(name: str) -> int:
    if name == "git_claim.entry":
        return 4
    for prefix, layer in (("git_claim.cli", 3), ("git_claim.ops", 2), ("git_claim.gateway", 0)):
        if name == prefix or name.startswith(prefix + "."):
            return layer
    return 1


def test_each_layer_imports_only_the_layers_below() -> None:
    graph = _graph()
    upward = [f"{name} imports {target}" for name, targets in sorted(graph.items())
              for target in sorted(targets - SHARED) if _layer(target) > _layer(name)]
    assert upward == []
    assert all(graph[name] == set() for name in SHARED)


def test_app_imports_every_command_module() -> None:
    graph = _graph()
    commands = {name for name in graph
                if name.startswith("git_claim.cli.") and name.endswith("_cmd")}
    assert {"git_claim.cli.claim_cmd", "git_claim.cli.release_cmd"} <= commands
    assert commands - graph["git_claim.cli.app"] == set()
