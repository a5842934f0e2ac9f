"""`atomic_paths`: several files committed as one set under a journal (filterdb/atomic/journal.py).

Writers are child processes killed with SIGKILL at a chosen ``os.replace`` (a real kill: the
journal then belongs to a process that no longer exists, as after a crash).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from filterdb.atomic import (
    JOURNAL_SUFFIX,
    JournalError,
    atomic_paths,
    remove_stale_temps,
    roll_forward,
    settle_for_reading,
)
from filterdb.atomic.files import process_started
from tests.conftest import REPO, run_killed

CHILD = r"""
from filterdb.atomic import atomic_paths

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


# ------------------------------------------------------------------ faults found by review

FAIL_THEN_WAIT = r"""
import os, sys
from filterdb.atomic import atomic_paths

real = os.replace

def replace(src, dst):  # every rename of a temp onto its target fails (e.g. EACCES)
    if ".journal." not in os.fspath(src):
        raise PermissionError(13, "Permission denied", os.fspath(dst))
    return real(src, dst)

os.replace = replace
try:
    with atomic_paths(*a["targets"]) as temps:
        for tmp in temps:
            tmp.write_text("stale")
except PermissionError:
    print("failed", flush=True)
sys.stdin.readline()  # alive until told to exit, as an interactive session would be
"""


def test_a_journal_left_by_a_live_writer_never_overwrites_a_newer_commit(tmp_path: Path) -> None:
    """A writer whose renames failed keeps running (its journal is left, being live); a newer
    commit then succeeds; once that writer exits, the next write drops its journal and temps
    instead of rolling the older set forward over the newer one."""
    import subprocess
    import sys

    targets = _old_set(tmp_path)
    args = json.dumps({"targets": [str(p) for p in targets]})
    prelude = "import json, sys\na = json.loads(sys.argv[1])\n"
    child = subprocess.Popen(
        [sys.executable, "-c", prelude + FAIL_THEN_WAIT, args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "failed\n"
        assert any(p.name.endswith(".journal") for p in tmp_path.rglob(".*"))
        with atomic_paths(*targets) as temps:  # the newer commit, while the writer lives
            for tmp in temps:
                tmp.write_text("newer")
        assert _texts(targets) == ["newer"] * 3
    finally:
        child.communicate("\n", timeout=60)
    assert child.returncode == 0

    assert roll_forward(tmp_path / "one") == []  # the writer is gone: its journal is dropped
    remove_stale_temps(targets[2])
    assert _texts(targets) == ["newer"] * 3
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize(("rename", "expected"), [(1, "old"), (3, "new")])
def test_a_deleted_target_folder_does_not_block_writes_into_the_other(
    tmp_path: Path, rename: int, expected: str
) -> None:
    """Killed before rename ``rename``, then folder ``two`` deleted: writes into ``one`` go on,
    and ``one`` holds one whole set (nothing renamed yet: the old; a and b renamed: the new)."""
    targets = _old_set(tmp_path)
    _kill_at(targets, ["set", rename])
    shutil.rmtree(tmp_path / "two")

    with atomic_paths(tmp_path / "one" / "other.txt") as (tmp,):
        tmp.write_text("x")

    assert _texts(targets[:2]) == [expected] * 2
    assert _hidden(tmp_path) == []


def test_a_folder_reached_through_a_symlink_settles_the_whole_set(tmp_path: Path) -> None:
    """Folder ``one`` is ``deep/one`` reached through the symlink ``link``: the journal's paths
    are resolved through it, so settling from the real folder finds the temp in ``two``."""
    (tmp_path / "deep" / "one").mkdir(parents=True)
    (tmp_path / "two").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "deep" / "one")
    targets = [tmp_path / "link" / "a.txt", tmp_path / "two" / "c.txt"]
    for path in targets:
        path.write_text("old")
    _kill_at(targets, ["set", 2])
    assert _texts(targets) == ["new", "old"]

    assert roll_forward(tmp_path / "deep" / "one") == [tmp_path / "two" / "c.txt"]

    assert _texts(targets) == ["new", "new"]
    assert _hidden(tmp_path) == []


def test_a_reader_settles_a_killed_set_before_reading(tmp_path: Path) -> None:
    targets = _old_set(tmp_path)
    _kill_at(targets, ["set", 2])
    assert _texts(targets) == ["new", "old", "old"]

    settle_for_reading(*targets)

    assert _texts(targets) == ["new"] * 3
    assert _hidden(tmp_path) == []


def test_a_reader_that_may_not_complete_a_set_is_told_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets = _old_set(tmp_path)
    _kill_at(targets, ["set", 2])

    def refused(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied", os.fspath(dst))  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(JournalError, match=r"one: a killed writer left a set .* half renamed"):
        settle_for_reading(*targets)


def _as_if_written_by(pid: int, root: Path) -> list[Path]:
    """Rename the journal copies under ``root`` as if process ``pid`` had written them."""
    copies = sorted(root.rglob(f".*{JOURNAL_SUFFIX}"))
    renamed = {}
    for copy in copies:
        head, _, token = copy.name[: -len(JOURNAL_SUFFIX)].rsplit(".", 2)
        renamed[copy] = copy.with_name(f"{head}.{pid}.{token}{JOURNAL_SUFFIX}")
    for copy, new in renamed.items():
        doc = json.loads(copy.read_text())
        doc["journals"] = [
            os.path.relpath(renamed[Path(os.path.normpath(copy.parent / c))], copy.parent)
            for c in doc["journals"]
        ]
        new.write_text(json.dumps(doc))
        copy.unlink()
    return list(renamed.values())


@pytest.mark.skipif(process_started(os.getpid()) is None, reason="no /proc start times here")
def test_a_killed_writers_journal_under_a_reused_pid_is_settled(tmp_path: Path) -> None:
    """The killed writer's pid now names a live process (here: this one, started earlier than
    that writer): the start time recorded in the journal tells them apart."""
    targets = _old_set(tmp_path)
    _kill_at(targets, ["set", 2])
    _as_if_written_by(os.getpid(), tmp_path)

    assert roll_forward(tmp_path / "one") == targets[1:]

    assert _texts(targets) == ["new"] * 3
    assert _hidden(tmp_path) == []


def test_a_live_writers_journal_with_its_start_time_is_left_alone(tmp_path: Path) -> None:
    targets = _old_set(tmp_path)
    _kill_at(targets, ["set", 2])
    journals = _as_if_written_by(os.getpid(), tmp_path)
    for journal in journals:
        doc = json.loads(journal.read_text())
        journal.write_text(json.dumps({**doc, "writer_started": process_started(os.getpid())}))

    assert roll_forward(tmp_path / "one") == []
    assert _texts(targets) == ["new", "old", "old"]
