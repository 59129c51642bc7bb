"""The package's import graph: no circles between modules, and rooms import only what docs/architecture.md allows.

Imports are read from the source with `ast`, those inside functions and `TYPE_CHECKING` blocks included: an import
moved into a function still ties two modules together, it only hides the circle until the function runs.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import qwen_tool

PACKAGE_DIR = Path(qwen_tool.__file__).parent

KNOWN_CIRCLES: set[frozenset[str]] = {
    frozenset({"qwen_tool.codec", "qwen_tool.codec.auto"}),
    frozenset({"qwen_tool.codec.base", "qwen_tool.codec.tool_signatures"}),
}
"""Circles inside codec/, which is being reworked on its own; remove an entry once it is broken. Any other circle
fails the test."""

SHARED = {"qwen_tool", "log", "files"}
"""What any room may import: the package root (its errors and did_you_mean), logging, and users' files."""

ROOM_IMPORTS: dict[str, set[str]] = {
    "codec": set(),
    "tools": {"codec"},
    "env": {"tools", "codec", "rewards"},
    "data": {"tools", "codec", "env"},
    "rewards": {"tools"},
    "decode": {"codec", "models"},
    "sft": {"data", "codec", "models", "config", "cost", "hardware", "checkpoints"},
    "rl": {"env", "rewards", "decode", "models", "codec", "tools", "config", "hardware", "checkpoints"},
    "eval": {"env", "codec", "decode", "models", "data", "tools", "hardware"},
    "serve": {"codec", "decode", "models", "hardware"},
    "models": {"codec"},
    "config": {"data", "env", "eval", "models"},
    "hardware": set(),
    "cost": {"decode"},
    "checkpoints": set(),
}
"""docs/architecture.md's table with its listed departures. `cli`, `pipeline`, `ablation` (the places that wire rooms
together) and `testing` (test support) may import anything."""
UNRESTRICTED = {"ablation", "cli", "pipeline", "testing"}


def _module_files() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = ["qwen_tool", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `module` imports anywhere in its source (`from a import b` names a.b when b is a
    module, else a)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            targets = [source, *(f"{source}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(target for target in targets if target in known and target != module)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _module_files()
    return {name: _imported(name, path, set(modules)) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))
    return found


def room_of(module: str) -> str:
    """`qwen_tool.env.suites.weather` → env; `qwen_tool.files` → files; the package root → qwen_tool."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_the_circle_finder_finds_circles_and_only_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}, "f": {"a"}}
    assert sorted(sorted(c) for c in circles(graph)) == [["a", "b", "c"], ["e", "e2"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_imports_inside_functions_count(tmp_path: Path):
    path = tmp_path / "m.py"
    path.write_text("import json\n\ndef f():\n    from qwen_tool.b import thing\n    from .c import other\n")
    known = {"qwen_tool.b", "qwen_tool.pkg.c"}
    assert _imported("qwen_tool.pkg.m", path, known) == {"qwen_tool.b", "qwen_tool.pkg.c"}


def test_no_import_circles_between_modules():
    new = [sorted(c) for c in circles(import_graph()) if c not in KNOWN_CIRCLES]
    assert new == [], f"import circles {new}; fix: move what both sides need into a module that imports neither"


@pytest.mark.parametrize("room", sorted(ROOM_IMPORTS))
def test_rooms_import_only_what_the_architecture_allows(room: str):
    allowed = ROOM_IMPORTS[room] | SHARED | {room}
    wrong: dict[str, set[str]] = defaultdict(set)
    for module, imported in import_graph().items():
        if room_of(module) == room:
            for target in imported:
                if room_of(target) not in allowed:
                    wrong[module].add(target)
    assert not wrong, f"{room} imports outside its rooms: {dict(wrong)}; fix: see docs/architecture.md"


def test_every_module_belongs_to_a_room_of_the_table():
    rooms = {room_of(module) for module in import_graph()}
    assert rooms - set(ROOM_IMPORTS) - SHARED - UNRESTRICTED == set()
