"""The package's shape: no two modules import each other, directly or in a longer circle, the
folders import one way (learn/ and envs/ never import run/ or modes/, run/ never imports modes/),
and nothing in the package imports main.py."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "atari_dqn"
FOLDERS = ("envs", "learn", "run", "modes")
MAY_NOT_IMPORT = {"learn": {"run", "modes"}, "envs": {"run", "modes"}, "run": {"modes"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The package modules a module imports (at any level: inside functions and type-checking
    imports included). `from atari_dqn.learn import registry` is the module learn.registry;
    `from atari_dqn.config import X` is config."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("atari_dqn"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("atari_dqn"))
    return found - {name}


def folder_of(name: str) -> str:
    """envs, learn, run or modes for a module in one of them (or the folder itself); top else."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FOLDERS else "top"


GRAPH = {name: imports_of(name) for name in MODULES}


def test_no_module_imports_in_a_circle():
    # the walk sees imports, inside functions too (main.py's modes are imported there)
    assert GRAPH["atari_dqn.modes.one_process"] >= {
        "atari_dqn.run.checkpoint", "atari_dqn.run.updates", "atari_dqn.run.telemetry"}
    assert "atari_dqn.envs.atari" in GRAPH["atari_dqn.suite"]  # imported inside a function
    for start in GRAPH:
        reachable, todo = set(), list(GRAPH[start])
        while todo:
            module = todo.pop()
            if module not in reachable:
                reachable.add(module)
                todo.extend(GRAPH.get(module, ()))
        assert start not in reachable, f"{start} imports itself through {sorted(reachable)}"


def test_the_folders_import_one_way():
    assert {folder_of(name) for name in MODULES} == {"top", *FOLDERS}
    wrong = [f"{name} imports {target}" for name, targets in sorted(GRAPH.items())
             for target in sorted(targets)
             if folder_of(target) in MAY_NOT_IMPORT.get(folder_of(name), ())]
    assert not wrong, wrong


def test_nothing_in_the_package_imports_main_py():
    """main.py uses the package, never the other way: no `import main`, and no module loaded from
    a file path (the suite runs main.py as a child process, and takes its flags from flags.py)."""
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name != "main" for a in node.names), name
            elif isinstance(node, ast.ImportFrom):
                assert node.module != "main", name
            elif isinstance(node, ast.Attribute):
                assert node.attr not in ("spec_from_file_location", "run_path"), name
