"""`atomic_paths`: several files committed as one set under a journal (filterdb/_atomic.py).

Writers are child processes killed with SIGKILL at a chosen ``os.replace`` (a real kill: the
journal then belongs to a process that no longer exists, as after a crash).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from filterdb._atomic import JournalError, atomic_paths, remove_stale_temps, roll_forward
from tests.conftest import REPO, run_killed

CHILD = r"""
from filterdb._atomic import atomic_paths

with atomic_paths(*a["targets"]) as temps:
    for tmp in temps:
        tmp.write_text("new")
"""

def _targets(root: Path) -> list[Path]:
    # two folders, as stats/ and metrics/ in the pipeline
    return [root / "one" / "a.txt", root / "one" / "b.txt", root / "two" / "c.txt"]


def _old_set(root: Path) -> list[Path]:
    targets = _targets(root)
    for path in targets:
        path.parent.mkdir(exist_ok=True)
        path.write_text("old")
    return targets


def _kill_at(targets: list[Path], kill_on: list[object]) -> None:
    run_killed(CHILD, {"targets": [str(p) for p in targets], "kill_on": kill_on})


def _texts(targets: list[Path]) -> list[str]:
    return [p.read_text() for p in targets]


def _hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*"))


def test_a_set_is_renamed_together_and_leaves_nothing_behind(tmp_path: Path) -> None:
    targets = _old_set(tmp_path)
    with atomic_paths(*targets) as temps:
        assert [t.parent for t in temps] == [p.parent for p in targets]
        for tmp in temps:
            tmp.write_text("new")
        assert _texts(targets) == ["old"] * 3  # nothing renamed inside the block
    assert _texts(targets) == ["new"] * 3
    assert _hidden(tmp_path) == []


def test_a_failing_block_leaves_the_old_set_and_no_temps(tmp_path: Path) -> None:
    targets = _old_set(tmp_path)
    with pytest.raises(KeyError), atomic_paths(*targets) as temps:
        temps[0].write_text("new")
        raise KeyError("boom")
    assert _texts(targets) == ["old"] * 3
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("rename", [1, 2, 3])
def test_killed_during_the_renames_any_folder_completes_the_new_set(
    tmp_path: Path, rename: int
) -> None:
    """Killed before rename ``rename`` of 3: the next write into folder ``two`` completes it."""
    targets = _old_set(tmp_path)
    _kill_at(targets, ["set", rename])
    assert _texts(targets) == ["new"] * (rename - 1) + ["old"] * (4 - rename)

    remove_stale_temps(tmp_path / "two" / "other.txt")  # any atomic write into `two` does this

    assert _texts(targets) == ["new"] * 3
    assert _hidden(tmp_path) == []


def test_killed_between_journal_copies_with_every_temp_there_commits(tmp_path: Path) -> None:
    """The journal reached folder ``one`` only; all temps are complete: the new set wins."""
    targets = _old_set(tmp_path)
    _kill_at(targets, ["journal", 2])
    assert _texts(targets) == ["old"] * 3
    assert roll_forward(tmp_path / "one") == targets
    assert _texts(targets) == ["new"] * 3
    remove_stale_temps(targets[2])  # the dead journal copy's own temp in `two`
    assert _hidden(tmp_path) == []


def test_killed_between_journal_copies_and_a_temp_removed_as_stale_keeps_the_old_set(
    tmp_path: Path,
) -> None:
    """The journal reached folder ``one`` only, so a write into ``two`` removed c's temp as stale
    (nothing there says it belongs to a set): the journal is then rolled back, not half applied.
    """
    targets = _old_set(tmp_path)
    _kill_at(targets, ["journal", 2])
    remove_stale_temps(targets[2])
    assert roll_forward(tmp_path / "one") == []
    assert _texts(targets) == ["old"] * 3
    assert _hidden(tmp_path) == []


def test_a_live_writers_journal_is_left_alone(tmp_path: Path) -> None:
    targets = _old_set(tmp_path)
    tmp = tmp_path / "one" / f".a.txt.{os.getpid()}.x1.tmp"
    tmp.write_text("new")
    journal = tmp_path / "one" / f".a.txt.{os.getpid()}.x1.journal"
    journal.write_text(json.dumps({"renames": [[tmp.name, "a.txt"]], "journals": [journal.name]}))
    assert roll_forward(tmp_path / "one") == []
    assert journal.exists() and tmp.exists() and targets[0].read_text() == "old"


def test_an_unreadable_journal_of_a_dead_writer_is_named(tmp_path: Path) -> None:
    journal = tmp_path / ".a.txt.999999999.x1.journal"
    journal.write_text("{ not json")
    with pytest.raises(JournalError, match=r"\.a\.txt\.999999999\.x1\.journal: unreadable"):
        remove_stale_temps(tmp_path / "a.txt")


def test_a_target_named_twice_is_refused(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="named twice"),
        atomic_paths(tmp_path / "a", tmp_path / "." / "a"),
    ):
        pass


def test_journal_and_temp_patterns_are_dvcignored() -> None:
    patterns = (REPO / ".dvcignore").read_text().splitlines()
    assert ".*.tmp" in patterns and ".*.journal" in patterns
