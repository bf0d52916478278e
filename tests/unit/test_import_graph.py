"""The repository's own modules import each other without a cycle, and the layer imports nothing inside a function
but a few heavy optional libraries.

The graph is read from the source with ``ast``, not by importing it: every ``import`` and ``from ... import``
counts as an edge wherever it stands (at module level, under ``if TYPE_CHECKING:``, inside a function), because an
import moved into a function still joins the two modules; it only hides the cycle from the interpreter. When two
modules import each other, the module that serves both ends wants splitting (docs/architecture.md, "Where code
lives").
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (directory holding the top-level package, the package) for every tree the check covers.
TREES = (
    (ROOT / "layers" / "common", "fanout"),
    (ROOT / "cli", "fanout_cli"),
    (ROOT, "local"),
)

# The only libraries the layer may import inside a function: heavy ones that some functions never use, so a
# handler that does not need them does not pay for them at cold start (milliseconds: `python -X importtime`,
# a fresh interpreter, this machine). Never a module of the repository: an import inside a function that names
# one of ours is a cycle being dodged or a dependency being hidden.
LAZY_IN_LAYER = {
    "opensearchpy": "~210 ms; the parser, the sweeper and a DynamoDB-only fetcher never talk to OpenSearch",
    "boto3": "~18 ms over botocore (s3transfer); only reconcile's resource and readers use it (fanout.aws: clients)",
    "botocore": "~40 ms after a handler's import; loaded where a client is built (fanout.aws), its errors caught there",
    "jsonschema": "~35 ms; only loading a mapping uses it, once per execution environment on the first invocation",
    "aws_lambda_powertools": "~375 ms for utilities.parameters, ~60 ms for the SQS data class: one function each",
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # a dotted name as written, resolved when relative
    line: int
    in_function: bool


def module_files() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for parent, package in TREES:
        for path in sorted((parent / package).rglob("*.py")):
            parts = path.relative_to(parent).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"

    def walk(node: ast.AST, in_function: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(name, alias.name, child.lineno, in_function)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    # `from package import module` imports that module; `from module import name` the module
                    yield Import(name, f"{base}.{alias.name}", child.lineno, in_function)
            yield from walk(child, inside)

    yield from walk(tree, False)


def _resolve(dotted: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``dotted`` that is one of our modules (None: a library's)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imp in _imports(name, path):
            target = _resolve(imp.imported, modules)
            while target is not None:
                # importing a.b.c runs a and a.b first: an edge to each package the importer is not inside
                if target != name and not name.startswith(target + "."):
                    graph[name].add(target)
                target = target.rpartition(".")[0] or None
                if target is not None and target not in modules:
                    break
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component of more than one module, as one cycle through it (Tarjan, then a walk)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_through(component, graph) for component in sorted(components)]


def _cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle from the component's first module back to it, for the failure message."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no cycle through {component}")  # a component of two or more always has one


def lazy_imports_in_layer(modules: dict[str, Path]) -> list[str]:
    """Imports inside a function in the layer that the allow-list does not cover, as ``module:line imports x``."""
    found = []
    for name, path in modules.items():
        if not name.startswith("fanout."):
            continue
        for imp in _imports(name, path):
            if imp.in_function and (
                _resolve(imp.imported, modules) is not None or imp.imported.split(".")[0] not in LAZY_IN_LAYER
            ):
                found.append(f"{name}:{imp.line} imports {imp.imported}")
    return found


def test_the_repository_has_no_import_cycle() -> None:
    found = cycles(import_graph(module_files()))

    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_the_layer_imports_inside_a_function_only_heavy_optional_libraries() -> None:
    found = lazy_imports_in_layer(module_files())

    assert not found, "imports inside a function (move them to the top; split a module if that makes a cycle):\n" + (
        "\n".join(found)
    )


# The check itself, on planted trees: it must see what it is there to catch.


def _plant(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    modules = {}
    for name, text in files.items():
        path = tmp_path / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        modules[name] = path
    return modules


def test_a_cycle_closed_by_an_import_inside_a_function_is_named(tmp_path: Path) -> None:
    modules = _plant(
        tmp_path,
        {
            "pkg.a": "from pkg.b import thing\n",
            "pkg.b": "def thing():\n    from pkg import c\n    return c\n",
            "pkg.c": "import pkg.a as a\n",
            "pkg.d": "from pkg.a import thing\n",
        },
    )

    assert cycles(import_graph(modules)) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert lazy_imports_in_layer({f"fanout.{k}": v for k, v in modules.items()}) == [
        "fanout.pkg.b:2 imports pkg.c"  # pkg.* is not ours once renamed, but not an allowed library either
    ]


def test_a_cycle_behind_type_checking_or_a_relative_import_is_named(tmp_path: Path) -> None:
    modules = _plant(
        tmp_path,
        {
            "pkg.__init__": "",
            "pkg.a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
            "pkg.b": "from . import a\n",
        },
    )
    modules = {name.removesuffix(".__init__"): path for name, path in modules.items()}

    assert cycles(import_graph(modules)) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_an_allowed_library_may_be_imported_lazily_but_not_one_of_our_modules(tmp_path: Path) -> None:
    modules = _plant(
        tmp_path,
        {
            "fanout.x": "def f():\n    from opensearchpy import OpenSearch\n    import boto3\n",
            "fanout.y": "def g():\n    from fanout.x import f\n\ndef h():\n    import json\n",
        },
    )

    assert cycles(import_graph(modules)) == []
    assert lazy_imports_in_layer(modules) == ["fanout.y:2 imports fanout.x.f", "fanout.y:5 imports json"]


def test_the_real_tree_is_read_with_its_packages_and_imports_inside_functions() -> None:
    graph = import_graph(module_files())

    assert {"fanout", "fanout.source.reader", "fanout_cli.main", "local.stack"} <= set(graph)
    assert {"fanout.source.composition_read", "fanout.source.rows", "fanout.model.mapping"} <= graph[
        "fanout.source.reader"
    ]
    # the CLI imports the maintenance object inside its command function: an edge all the same
    assert "fanout.operations.maintenance" in graph["fanout_cli.commands.reconcile"]
