"""The package's shape: no two modules import each other, directly or in a longer circle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "atari_dqn"


def imports_of(path: Path) -> set[str]:
    """The package modules a module imports (at any level, type-checking imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "atari_dqn":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("atari_dqn."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("atari_dqn."))
    return found - {path.stem}


def test_no_module_imports_in_a_circle():
    graph = {p.stem: imports_of(p) for p in PACKAGE.glob("*.py")}
    assert graph["train"] >= {"checkpoint", "learner", "telemetry"}  # the walk sees imports
    for start in graph:
        reachable, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            if module not in reachable:
                reachable.add(module)
                todo.extend(graph.get(module, ()))
        assert start not in reachable, f"{start} imports itself through {sorted(reachable)}"
