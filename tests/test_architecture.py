"""The layering the docs promise (docs/architecture.md), checked on the source itself.

- No runtime import cycle among coflow's modules (imports only a type checker
  reads, under ``if TYPE_CHECKING:``, do not count).
- The scheduler, the step handlers and the adapters touch no other object's
  private attributes: a task talks to its runner through ``Owner``, a child
  flow to its runner through the runner's core attributes, an adapter to the
  core through the kit.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "coflow"
ADAPTERS = ROOT / "backends"

#: Attributes coflow sets on objects that are not its own (an exception's note of where).
FOREIGN_MARKS = {"_coflow_where"}


def _module_name(path: Path) -> str:
    package = "coflow" if path.parent == CORE else "coflow.backends"
    return package if path.stem == "__init__" else f"{package}.{path.stem}"


def _sources() -> Iterator[Path]:
    yield from sorted(CORE.glob("*.py"))
    yield from sorted(ADAPTERS.glob("*.py"))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The coflow modules ``module`` imports when it runs, at any depth of its code.

    ``from package import name`` imports the submodule ``name`` when there is
    one, else (for a name the package defines) the package.
    """
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
        stack.extend(ast.iter_child_nodes(node))
    return {name for name in found if name.startswith("coflow")}


def _import_graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in _sources()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        imports = _runtime_imports(tree, name, path.stem == "__init__", set(modules))
        graph[name] = {other for other in imports if other in modules and other != name}
    return graph


def test_no_module_of_coflow_imports_itself_back_at_run_time() -> None:
    graph = _import_graph()
    assert "coflow._scheduler" in graph and "coflow.backends.virtual" in graph
    # ``coflow`` (the package) imports everything; nothing of the core imports it back.
    cycles = []
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        state[start] = 1
        iterators = [iter(sorted(graph[start]))]
        while iterators:
            following = next(iterators[-1], None)
            if following is None:
                state[path.pop()] = 2
                iterators.pop()
            elif state.get(following) == 1:
                cycles.append(" -> ".join([*path[path.index(following) :], following]))
            elif not state.get(following):
                state[following] = 1
                path.append(following)
                iterators.append(iter(sorted(graph[following])))
    assert cycles == []


@pytest.mark.parametrize(
    "module",
    ["_scheduler", "_dispatch", "_handlers", "_waking", "_children", "_steps", "_flow"],
)
def test_the_scheduler_and_its_handlers_touch_no_private_attribute_of_another_object(
    module: str,
) -> None:
    assert _foreign_private_attributes(CORE / f"{module}.py") == []


@pytest.mark.parametrize("path", sorted(ADAPTERS.glob("*.py")), ids=lambda path: path.stem)
def test_an_adapter_touches_no_private_attribute_of_the_core(path: Path) -> None:
    # asyncio's own, in asyncio.events.__all__ for loops written outside asyncio.
    allowed = {"asyncio._get_running_loop", "asyncio._set_running_loop"}
    found = [use for use in _foreign_private_attributes(path) if use.split(": ")[1] not in allowed]
    assert found == []


def _foreign_private_attributes(path: Path) -> list[str]:
    """Each ``obj._name`` in ``path`` where ``obj`` is not ``self`` or the class's own.

    ``super()._name`` is the object's own too: an override calling what it overrides.
    """
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in FOREIGN_MARKS:
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in {"self", "cls"}:
            continue
        if (
            isinstance(base, ast.Call)
            and isinstance(base.func, ast.Name)
            and base.func.id == "super"
            and not base.args
        ):
            continue
        if isinstance(base, ast.Attribute) and base.attr == "backend" and path.stem == "virtual":
            continue  # ``_Driving`` guards its own backend, in the adapter's module
        found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found
