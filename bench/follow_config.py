"""Follow `config` through the code, statically, from an entry point: how many modules a reader
visits, how often they come back to one, how often they climb back up (issue 35's measure).

    python bench/follow_config.py                    # the working tree, from the one-process train
    python bench/follow_config.py --rev 1ae78b1 --entry atari_dqn.train:train   # a commit
    python bench/follow_config.py --path             # also print the walks, one stop a line

The walk: start in the entry function with `config` tracked; read its body in source order; at
each call that passes a tracked value (the name `config`, or `self.config`) and whose callee is
defined in the project, go into the callee with the parameter that receives it tracked, read that
body the same way, then come back to the caller and read on. Every function is read once (a
second call to it is a reference the reader already knows); back from a callee, the reader climbs
back up to the caller only if it calls something more. A *stop* is a stay in one module: the
walk's modules with consecutive repeats merged. *Re-entries* = stops - distinct modules; *climbs*
= stops reached by returning to a caller. Callees are resolved from imports (module level and
inside functions), `self.method`, `Class(...)` (its `__init__`) and `Class.method`; a method called
on an object of unknown type is not followed, one on an object built here with config is when
the method reads its own `self.config`. The second walk follows every call the first can resolve,
config or not (an upper bound: a reader skips most of those). Neither reproduces issue 35's figures
for 1ae78b1 (48 stops, 35 re-entries), which were counted by a method it does not state; they
bracket them.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "atari_dqn"
TRACKED_ATTRIBUTES = {"config", "_config"}  # self.config, self._config


@dataclass
class Module:
    name: str
    tree: ast.Module
    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)  # "f", "Class.f"
    classes: set[str] = field(default_factory=set)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # alias -> (module, attr)


def _source_files(rev: str | None) -> dict[str, str]:
    """module name -> source text, for main.py and atari_dqn/**.py, at a commit or on disk."""
    if rev is None:
        paths = [ROOT / "main.py", *sorted((ROOT / PACKAGE).rglob("*.py"))]
        return {_module_name(p.relative_to(ROOT).as_posix()): p.read_text() for p in paths}
    listing = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", rev],
                             check=True, capture_output=True, text=True).stdout.split()
    wanted = [p for p in listing if p == "main.py" or (p.startswith(PACKAGE + "/")
                                                       and p.endswith(".py"))]
    return {_module_name(p): subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{p}"],
                                            check=True, capture_output=True, text=True).stdout
            for p in wanted}


def _module_name(path: str) -> str:
    name = path[:-3].replace("/", ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    parts = module.split(".") if is_package else module.split(".")[:-1]
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _index(name: str, text: str, is_package: bool) -> Module:
    module = Module(name, ast.parse(text))
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module.imports[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0], None)
        elif isinstance(node, ast.ImportFrom):
            source = (_resolve_relative(name, is_package, node.level, node.module) if node.level
                      else node.module or "")
            for alias in node.names:
                module.imports[alias.asname or alias.name] = (source, alias.name)
    for node in module.tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            module.functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            module.classes.add(node.name)
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    module.functions[f"{node.name}.{item.name}"] = item
    return module


class Walker:
    def __init__(self, modules: dict[str, Module], every_call: bool = False) -> None:
        self.modules = modules
        self.every_call = every_call
        self.read: set[tuple[str, str]] = set()
        self.path: list[tuple[str, str, bool]] = []  # (module, function, reached by a return)
        self.attributes: dict[tuple[str, str, str], tuple[str, str]] = {}  # self.x built with config

    def _lookup(self, module: str, name: str) -> tuple[str, str] | None:
        """A name in a module -> (module, function key) it defines or imports, or None."""
        here = self.modules.get(module)
        if here is None:
            return None
        if name in here.functions:
            return module, name
        if name in here.classes:
            return (module, f"{name}.__init__") if f"{name}.__init__" in here.functions else None
        if name in here.imports:
            source, attr = here.imports[name]
            if attr is None:
                return None
            if f"{source}.{attr}" in self.modules:  # `from package import module`
                return None
            return self._lookup(source, attr)
        return None

    def _callee(self, module: str, cls: str | None, call: ast.Call) -> tuple[str, str] | None:
        func = call.func
        if isinstance(func, ast.Name):
            return self._lookup(module, func.id)
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner, attr = func.value.id, func.attr
            if owner == "self" and cls and f"{cls}.{attr}" in self.modules[module].functions:
                return module, f"{cls}.{attr}"
            here = self.modules[module]
            if owner in here.imports:  # module.function or an imported Class.method
                source, name = here.imports[owner]
                target = source if name is None else f"{source}.{name}"
                if target in self.modules:
                    return self._lookup(target, attr)
                found = self._lookup(source, name) if name else None
                if found and found[1].endswith(".__init__"):
                    key = f"{found[1].rsplit('.', 1)[0]}.{attr}"
                    if key in self.modules[found[0]].functions:
                        return found[0], key
            if owner in here.classes and f"{owner}.{attr}" in here.functions:
                return module, f"{owner}.{attr}"
        return None

    @staticmethod
    def _carries(node: ast.expr, tracked: set[str]) -> bool:
        if isinstance(node, ast.Name):
            return node.id in tracked
        if isinstance(node, ast.Starred):
            return Walker._carries(node.value, tracked)
        return (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "self" and node.attr in TRACKED_ATTRIBUTES)

    def _parameter(self, callee: ast.FunctionDef, call: ast.Call, tracked: set[str],
                   bound: bool) -> set[str]:
        """The callee's parameter names that receive a tracked value."""
        params = [a.arg for a in callee.args.posonlyargs + callee.args.args]
        if bound and params and params[0] in ("self", "cls"):
            params = params[1:]
        names = {params[i] for i, arg in enumerate(call.args)
                 if i < len(params) and self._carries(arg, tracked)}
        names |= {kw.arg for kw in call.keywords if kw.arg and self._carries(kw.value, tracked)}
        return names

    def _holder_method(self, module: str, cls: str | None, call: ast.Call,
                       holders: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
        """`obj.method(...)` or `self.obj.method(...)` where obj was built with config and the
        method reads its own config: the call follows config as surely as passing it."""
        func = call.func
        if not isinstance(func, ast.Attribute):
            return None
        owner = func.value
        name = (owner.id if isinstance(owner, ast.Name) else
                f"self.{owner.attr}" if isinstance(owner, ast.Attribute)
                and isinstance(owner.value, ast.Name) and owner.value.id == "self" else None)
        holder = holders.get(name) or (self.attributes.get((module, cls, name)) if cls else None)
        if holder is None:
            return None
        key = f"{holder[1]}.{func.attr}"
        method = self.modules[holder[0]].functions.get(key)
        if method is None or not any(
                isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                and n.value.id == "self" and n.attr in TRACKED_ATTRIBUTES
                for n in ast.walk(method)):
            return None
        return holder[0], key

    def walk(self, module: str, key: str, tracked: set[str]) -> None:
        self.read.add((module, key))
        self.path.append((module, key, False))
        function = self.modules[module].functions[key]
        cls = key.split(".")[0] if "." in key else None
        holders: dict[str, tuple[str, str]] = {}  # local name -> (module, class) built with config
        for node in _in_source_order(function):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                built = self._callee(module, cls, node.value)
                carried = any(self._carries(a, tracked) for a in
                              [*node.value.args, *(k.value for k in node.value.keywords)])
                if built and built[1].endswith(".__init__") and carried:
                    for t in node.targets:
                        holder = (built[0], built[1].rsplit(".", 1)[0])
                        if isinstance(t, ast.Name):
                            holders[t.id] = holder
                        elif (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                              and t.value.id == "self" and cls):
                            self.attributes[(module, cls, f"self.{t.attr}")] = holder
                continue
            if not isinstance(node, ast.Call):
                continue
            args = [*node.args, *(kw.value for kw in node.keywords)]
            target = self._holder_method(module, cls, node, holders)
            if target is not None:
                if target not in self.read:
                    self._go_into(module, key, target, set())
                continue
            if not self.every_call and not any(self._carries(a, tracked) for a in args):
                continue
            target = self._callee(module, cls, node)
            if target is None or target in self.read:
                continue
            callee = self.modules[target[0]].functions[target[1]]
            bound = "." in target[1] and not any(
                isinstance(d, ast.Name) and d.id == "staticmethod" for d in callee.decorator_list)
            self._go_into(module, key, target,
                          self._parameter(callee, node, tracked, bound) or {"config"})

    def _go_into(self, module: str, key: str, target: tuple[str, str], tracked: set[str]) -> None:
        """Walk into target from (module, key); a reader back from deeper calls climbs back up
        to this function first (a stop when it is another module)."""
        if self.path[-1][:2] != (module, key):
            self.path.append((module, key, True))
        self.walk(*target, tracked)


def _in_source_order(function: ast.FunctionDef) -> list[ast.AST]:
    """The nodes of a function's body in source order, those of functions nested in it too (a
    reader reads a nested function where it stands)."""
    nodes: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                continue
            visit(child)
            nodes.append(child)  # after its arguments: the call is reached when they are read

    visit(function)
    return nodes


def stops(path: list[tuple[str, str, bool]]) -> list[tuple[str, bool]]:
    """The walk's modules with consecutive repeats merged: (module, reached by a return)."""
    merged: list[tuple[str, bool]] = []
    for module, _, returned in path:
        if not merged or merged[-1][0] != module:
            merged.append((module, returned))
    return merged


def measure(rev: str | None, entry: str, every_call: bool) -> tuple[Walker, list]:
    sources = _source_files(rev)
    packages = {n for n in sources if any(k.startswith(n + ".") for k in sources)}
    modules = {n: _index(n, t, n in packages) for n, t in sources.items()}
    walker = Walker(modules, every_call)
    entry_module, entry_function = entry.split(":")
    if entry_module not in modules or entry_function not in modules[entry_module].functions:
        raise SystemExit(f"follow_config.py: error: no {entry} in {rev or 'the working tree'}")
    walker.walk(entry_module, entry_function, {"config"})
    return walker, stops(walker.path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="a git commit to read instead of the working tree")
    parser.add_argument("--entry", default="atari_dqn.modes.one_process:train",
                        help="module:function (default: the one-process mode's train)")
    parser.add_argument("--path", action="store_true", help="print each walk, a stop a line")
    args = parser.parse_args()
    rows = []
    for every_call in (False, True):
        walker, merged = measure(args.rev, args.entry, every_call)
        if args.path:
            print("every call:" if every_call else "calls that pass config:")
            for module, returned in merged:
                print(("  <- " if returned else "  -> ") + module)
        distinct = len({m for m, _ in merged})
        rows.append(f"| {'every call' if every_call else 'calls that pass config'} | "
                    f"{len(walker.read)} | {distinct} | {len(merged)} | {len(merged) - distinct} "
                    f"| {sum(r for _, r in merged)} |")
    print(f"{args.rev or 'working tree'}, from {args.entry}:")
    print("| followed | functions read | modules | stops | re-entries | climbs |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
