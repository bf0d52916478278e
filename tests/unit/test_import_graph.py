"""No import cycle through the capture and pipeline packages, and none dodged by an import inside a function.

Two modules that import each other want splitting (the forwarder apart from the fetcher's entry, a trigger's
SQL apart from the migration writer), not an import hidden in a function. The rest of the layer (model/,
source/) is split by its own change; then this check covers every package.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.files import ROOT

LAYER = ROOT / "layers" / "common"
CHECKED = ("fanout.capture", "fanout.pipeline")


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(LAYER).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return []


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in (LAYER / "fanout").rglob("*.py")}
    return {
        name: {target for node in ast.walk(ast.parse(path.read_text())) for target in imported(node)}
        & set(modules) - {name}
        for name, path in modules.items()
    }


def cycle_through(graph: dict[str, set[str]], start: str) -> list[str]:
    """A path start -> ... -> start, or [] when the module is on no cycle."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        module, path = stack.pop()
        for target in graph[module]:
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return []


def test_no_module_of_capture_or_pipeline_is_on_an_import_cycle() -> None:
    graph = import_graph()
    cycles = [cycle_through(graph, module) for module in sorted(graph) if module.startswith(CHECKED)]
    assert [" -> ".join(cycle) for cycle in cycles if cycle] == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycle_through(graph, "a") == ["a", "b", "c", "a"] and cycle_through(graph, "d") == []


def test_no_module_of_capture_or_pipeline_imports_fanout_inside_a_function() -> None:
    hidden = []
    for path in (LAYER / "fanout").rglob("*.py"):
        if not module_name(path).startswith(CHECKED):
            continue
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(function):
                    hidden += [f"{module_name(path)}: {name}" for name in imported(node) if name.startswith("fanout")]
    assert hidden == []
