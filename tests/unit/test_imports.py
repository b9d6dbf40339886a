"""The import graph of ``mfed``, read from the source: no circle of modules, no private name across modules.

Every ``import`` and ``from ... import`` of an ``mfed`` module counts, at module level, inside
functions and under ``TYPE_CHECKING`` alike: a function-level import that dodges a circle is still one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import mfed

ROOT = Path(mfed.__file__).resolve().parent

# Known exceptions, allowed only in files being rewritten (mfed/aggregation, mfed/federation/driver.py,
# mfed/run.py, mfed/systems); none remains. Remove an entry once its circle or private import is gone (the
# test fails on a stale one). A circle: its modules, sorted, e.g. ("mfed.aggregation.base",
# "mfed.aggregation.streaming"). A private import: (importing module, "module.name" it uses).
KNOWN_CYCLES: set[tuple[str, ...]] = set()
KNOWN_PRIVATE: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ["mfed", *path.relative_to(ROOT).with_suffix("").parts]
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name: str) -> Iterator[tuple[str, str | None, str, int]]:
    """``(module, name or None, bound as, line)`` for each mfed module that module ``name`` imports.

    ``name``: what a ``from`` import takes from the module; ``bound as``: the local name it gets.
    """
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mfed":
                    yield alias.name, None, alias.asname or "mfed", node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                above = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*above, base] if base else above)
            if base.split(".")[0] == "mfed":
                for alias in node.names:
                    yield base, alias.name, alias.asname or alias.name, node.lineno


def _target(module: str, name: str | None) -> str:
    """The mfed module an import loads: ``from mfed.x import y`` loads ``mfed.x.y`` where that is a module."""
    if name is not None and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    while module not in MODULES and "." in module:
        module = module.rpartition(".")[0]
    return module


def _graph() -> dict[str, set[str]]:
    """``{module: the mfed modules it imports}``."""
    return {m: {_target(t, n) for t, n, _, _ in _imports(m)} - {m} for m in MODULES}


def _components(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[tuple[str, ...]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in graph.get(node, ()):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            members = []
            while not members or members[-1] != node:
                members.append(stack.pop())
            if len(members) > 1:
                found.append(tuple(sorted(members)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _circle(component: tuple[str, ...], graph: dict[str, set[str]]) -> str:
    """One circle through the component's first module, as ``a -> b -> a`` (a breadth-first search)."""
    start, inside = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & inside):
            if child == start:
                return " -> ".join([*paths[node], start])
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    return " <-> ".join(component)


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _owner(dotted: str) -> str | None:
    """Where a dotted name stops being public: the module or package that owns its first private part."""
    parts = dotted.split(".")
    first = next((i for i, part in enumerate(parts) if _private(part)), None)
    return None if first is None else ".".join(parts[:first])


def _private_uses(name: str) -> Iterator[tuple[str, int]]:
    """``(module.name, line)`` for each private name of another mfed module that module ``name`` reaches."""
    bound: dict[str, str] = {}  # local name -> the mfed module it holds
    for module, imported, local, line in _imports(name):
        dotted = module if imported is None else f"{module}.{imported}"
        owner = _owner(dotted)
        if owner is not None and name != owner and not name.startswith(f"{owner}."):
            yield dotted, line
        if imported is None:  # import mfed.x.y binds mfed; import mfed.x.y as z binds z to mfed.x.y
            bound[local] = "mfed" if local == "mfed" else module
        elif dotted in MODULES:
            bound[local] = dotted
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node.value, bound)
            if dotted in MODULES and dotted != name:
                yield f"{dotted}.{node.attr}", node.lineno


def _dotted(node: ast.expr, bound: dict[str, str]) -> str | None:
    """``mfed.x.y`` for an expression ``y_alias`` or ``mfed.x.y`` naming an imported mfed module; else None."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value, bound)
        return f"{head}.{node.attr}" if head else None
    return None


def test_the_package_is_found():
    # Prepare / Execute: the modules the other tests walk
    names = set(MODULES)

    # Assert: the walk sees the package and its subpackages (an empty walk would pass everything)
    assert {"mfed", "mfed.config", "mfed.schema", "mfed.schema.checker", "mfed.sweeps.results"} <= names


def test_no_module_imports_itself_through_others():
    # Prepare
    graph = _graph()

    # Execute
    components = _components(graph)

    # Assert
    new = [f"[{', '.join(c)}], e.g. {_circle(c, graph)}" for c in components if c not in KNOWN_CYCLES]
    assert not new, "import circles (move what both sides need into a lower module): " + "; ".join(new)
    stale = sorted(KNOWN_CYCLES - set(components))
    assert not stale, f"no longer circles: remove them from KNOWN_CYCLES: {stale}"


def test_no_module_imports_a_private_name_of_another():
    # Prepare / Execute
    found = {(m, dotted): line for m in MODULES for dotted, line in _private_uses(m)}

    # Assert
    new = [f"{MODULES[m].relative_to(ROOT.parent)}:{line} uses {d}" for (m, d), line in found.items()
           if (m, d) not in KNOWN_PRIVATE]  # fmt: skip
    assert not new, "private names used across modules (make them public or move them): " + "; ".join(new)
    stale = sorted(KNOWN_PRIVATE - set(found))
    assert not stale, f"no longer used: remove them from KNOWN_PRIVATE: {stale}"


def test_the_checks_see_a_circle_and_a_private_import():
    # Prepare: a circle of three, and a module that imports it without being in it
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

    # Execute
    components = _components(graph)

    # Assert
    assert components == [("a", "b", "c")]
    assert _circle(components[0], graph) == "a -> b -> c -> a"
    assert _owner("mfed.schema.errors._join") == "mfed.schema.errors"
    assert _owner("mfed.metrics._util.count_nonfinite") == "mfed.metrics"  # its own package may use it
    assert _owner("mfed.schema.errors.did_you_mean") is None
