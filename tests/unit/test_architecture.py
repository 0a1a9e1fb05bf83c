"""djworker's import graph: no cycles, and the pools know nothing of the worker around them.

Every ``import`` statement in the package counts: at module level, inside a function (a local
import that closes a cycle at run time is still a cycle) and under ``if TYPE_CHECKING:``. The
graph is read with ``ast``, so nothing is imported and the test cannot be fooled by import order.
A package's ``__init__`` that Python runs before one of its modules is not an edge: only what a
module names counts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import djworker

PACKAGE_DIR = Path(djworker.__file__).parent
ROOT = PACKAGE_DIR.parent

#: what ``djworker.concurrency`` must not import: a pool is handed what it needs (its executor,
#: its settings) and never reaches back into the worker that runs it
CONCURRENCY = "djworker.concurrency"
OFF_LIMITS_TO_CONCURRENCY = (
    "djworker.worker",
    "djworker.consumer",
    "djworker.control",
    "djworker.execution",
    "djworker.models",
)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    #: ``djworker/x.py:12``
    where: str


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _resolve_from(node: ast.ImportFrom, source: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(source: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """The djworker modules ``source`` imports anywhere in its file, with the line."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, source, path.name == "__init__.py")
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in known:  # from djworker import message
                    yield submodule, node.lineno
                elif base in known:  # from djworker.message import build
                    yield base, node.lineno


def import_graph() -> list[Edge]:
    found = modules()
    known = set(found)
    return [
        Edge(source, target, f"{path.relative_to(ROOT)}:{line}")
        for source, path in found.items()
        for target, line in imported_modules(source, path, known)
        if target != source
    ]


def strongly_connected(edges: list[Edge]) -> list[list[str]]:
    """The groups of modules that import each other, directly or around a loop (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def one_cycle(group: list[str], edges: list[Edge]) -> list[Edge]:
    """A shortest loop through the group's first module, as the import statements that close it."""
    inside = set(group)
    by_source: dict[str, list[Edge]] = {}
    for edge in edges:
        if edge.source in inside and edge.target in inside:
            by_source.setdefault(edge.source, []).append(edge)
    start = group[0]
    paths: dict[str, list[Edge]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in sorted(by_source.get(node, []), key=lambda e: e.target):
                if edge.target == start:
                    return [*paths[node], edge]
                if edge.target not in paths:
                    paths[edge.target] = [*paths[node], edge]
                    following.append(edge.target)
        frontier = following
    raise AssertionError(f"no loop through {start} in {group}")  # Tarjan said there is one


def describe(cycle: list[Edge]) -> str:
    chain = " -> ".join([cycle[0].source, *(edge.target for edge in cycle)])
    return f"{chain} (at {', '.join(edge.where for edge in cycle)})"


def describe_group(group: list[str], edges: list[Edge]) -> str:
    """One loop of the group, and the group's members when the loop is not all of it."""
    cycle = one_cycle(group, edges)
    text = describe(cycle)
    if len(group) > len(cycle):
        text += f"; the loop is one of several among {', '.join(group)}"
    return text


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_local_relative_and_type_checking_imports_are_all_read(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import djworker.job\n"
        "def later():\n"
        "    from djworker import message\n"
        "    from .conf import WorkerSettings\n"
        "    from djworker.concurrency.base import BasePool\n"
    )
    found = {target for target, _ in imported_modules("djworker.probe", probe, set(modules()))}
    assert found == {
        "djworker.job",
        "djworker.message",
        "djworker.conf",
        "djworker.concurrency.base",
    }


def test_a_loop_is_found_and_named_by_the_imports_that_close_it() -> None:
    edges = [
        Edge("djworker.a", "djworker.b", "djworker/a.py:1"),
        Edge("djworker.b", "djworker.c", "djworker/b.py:2"),
        Edge("djworker.c", "djworker.a", "djworker/c.py:3"),
        Edge("djworker.c", "djworker.d", "djworker/c.py:4"),
    ]
    groups = strongly_connected(edges)
    assert groups == [["djworker.a", "djworker.b", "djworker.c"]]
    assert describe(one_cycle(groups[0], edges)) == (
        "djworker.a -> djworker.b -> djworker.c -> djworker.a "
        "(at djworker/a.py:1, djworker/b.py:2, djworker/c.py:3)"
    )


def test_no_djworker_module_imports_itself_back_around_a_loop() -> None:
    edges = import_graph()
    cycles = [describe_group(group, edges) for group in strongly_connected(edges)]
    assert not cycles, "import cycles between djworker modules (break each one):\n" + "\n".join(
        cycles
    )


def test_the_pools_import_nothing_from_the_worker_consumer_control_execution_or_models() -> None:
    wrong = sorted(
        f"{edge.source} imports {edge.target} ({edge.where})"
        for edge in import_graph()
        if is_within(edge.source, CONCURRENCY)
        and any(is_within(edge.target, banned) for banned in OFF_LIMITS_TO_CONCURRENCY)
    )
    assert not wrong, (
        f"{CONCURRENCY} must not import {', '.join(OFF_LIMITS_TO_CONCURRENCY)}; "
        "hand the pool what it needs instead:\n" + "\n".join(wrong)
    )
