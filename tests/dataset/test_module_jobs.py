"""filterdb/dataset/ keeps one job per module: the readers import nothing from the writer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DATASET = Path(__file__).resolve().parents[2] / "filterdb" / "dataset"
WRITER = {"filterdb.dataset.write", "filterdb.dataset.assemble"}
READERS = ["tables", "reading", "accessor", "info", "export", "content_hash", "flags", "contract"]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return found


@pytest.mark.parametrize("name", READERS)
def test_readers_do_not_import_the_writer(name: str) -> None:
    assert not _imports(DATASET / f"{name}.py") & WRITER


def test_no_dataset_module_is_over_600_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in DATASET.glob("*.py")}
    assert max(sizes.values()) <= 600, sizes
