"""The house's rooms and the arrows allowed between them (docs/architecture.md): every room imports
only rooms on a lower floor (the CLI and the benches sit on top and may import any), none reaches
sideways, and no module imports another that imports it back, however lazily."""

from __future__ import annotations

import ast
from pathlib import Path

from ffwatt.settings import REPO

# Top floor first. A room may import its own modules and the rooms of lower floors.
FLOORS: list[set[str]] = [
    {"cli", "bench"},
    {"flows", "agent"},
    {"tasks", "master"},
    {"exporters"},
    {"analysis", "testbed"},
    {"ffwatt"},
]
ROOMS = set().union(*FLOORS)


def _floor(room: str) -> int:
    return next(index for index, rooms in enumerate(FLOORS) if room in rooms)


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every module of the rooms, with the modules of ours it imports (inside functions too)."""
    graph: dict[str, set[str]] = {}
    for room in ROOMS:
        for path in (REPO / room).rglob("*.py"):
            module = _module(path)
            found = graph.setdefault(module, set())
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                found.update(name for name in names if name.split(".")[0] in ROOMS)
    for module, targets in graph.items():  # "from pkg import name" names a module only where one exists
        graph[module] = {t for t in targets if t in graph}
    return graph


def test_every_room_imports_only_rooms_below_it():
    wrong = []
    for module, targets in _imports().items():
        room = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != room and (_floor(other) <= _floor(room)) and _floor(room) != 0:
                wrong.append(f"{module} -> {target}")
    assert wrong == [], "a room imports a room on its own floor or above it (see docs/architecture.md)"


def test_no_module_imports_one_that_imports_it_back():
    graph = _imports()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if target == module or target.startswith(module + ".") or module.startswith(target + "."):
                continue  # a package and its own modules
            if state.get(target) == 1:
                circles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_shared_ground_floor_is_under_thirty_percent_of_the_code():
    """What only one room uses lives in that room: the ground floor holds the words they share."""
    lines = {room: sum(len(p.read_text().splitlines()) for p in (REPO / room).rglob("*.py")) for room in ROOMS}
    assert lines["ffwatt"] / sum(lines.values()) < 0.30, lines
