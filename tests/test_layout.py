"""The package's shape (issue 15): no private name crosses a folder, and no import cycle.

Read statically from the source (``ast``), so the rules hold for every module, imported by a
test or not. A *folder* is a stage's subpackage (``filterdb/stats``, ...) or the top level
(``filterdb/*.py``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "filterdb"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _folder(module: str) -> str:
    """``filterdb.stats.shifts`` -> ``stats``; ``filterdb.cli`` and ``filterdb`` -> ``""``."""
    parts = module.split(".")
    if module in MODULES and MODULES[module].name == "__init__.py":
        return ".".join(parts[1:])
    return ".".join(parts[1:-1])


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(tree: ast.AST, module: str, top_only: bool) -> Iterator[tuple[str, str | None]]:
    """(imported filterdb module, imported name or None) for each import in ``tree``."""
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    nodes = tree.body if top_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("filterdb"):
                    yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if not base.startswith("filterdb"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub, None) if sub in MODULES else (base, alias.name)


def _trees() -> Iterator[tuple[str, ast.Module]]:
    for module, path in MODULES.items():
        yield module, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_no_private_name_or_module_is_imported_across_folders() -> None:
    crossings = []
    for module, tree in _trees():
        for target, name in _imports(tree, module, top_only=False):
            if _folder(target) == _folder(module):
                continue
            private_module = any(_private(part) for part in target.split("."))
            if private_module or (name is not None and _private(name)):
                crossings.append(f"{module} imports {target}{'.' + name if name else ''}")
    assert crossings == []


def test_module_level_imports_have_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for module, tree in _trees():
        body = ast.Module(
            body=[
                n
                for n in tree.body
                if not (isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))
            ],
            type_ignores=[],
        )
        graph[module] = {t for t, _ in _imports(body, module, top_only=True) if t in MODULES} - {
            module
        }
    cycles = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


#: the entry points, which import every stage: the package (``open_release``) and the CLI
ENTRY = ("filterdb", "filterdb.cli")


def _folder_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, tree in _trees():
        if module in ENTRY:
            continue
        here = _folder(module)
        graph.setdefault(here, set())
        for target, _ in _imports(tree, module, top_only=False):
            if target not in ENTRY and _folder(target) != here:
                graph[here].add(_folder(target))
    return graph


def test_the_shared_top_level_imports_no_stage() -> None:
    """``errors``, ``params``, ``version``, ... are below every folder (params names its section
    classes as strings, loaded on use)."""
    assert _folder_graph()[""] == set()


def test_folders_import_each_other_without_a_cycle() -> None:
    """The folders form layers: a folder never imports, directly or not, one that imports it."""
    graph = _folder_graph()

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert sorted(f for f in graph if f in reach(f)) == []
    assert "dataset" in reach("stats") and "stats" not in reach("dataset")  # sees the imports


@pytest.mark.parametrize("module", ["filterdb.stats.shifts", "filterdb.atomic"])
def test_the_checks_see_the_modules_they_judge(module: str) -> None:
    """The static reading finds the package's modules and their imports (so the checks above
    cannot pass by reading nothing)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    assert len(MODULES) > 50
    assert any(t.startswith("filterdb.") for t, _ in _imports(tree, module, top_only=False))
