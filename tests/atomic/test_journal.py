"""`atomic_paths`: several files committed as one set under a journal (filterdb/atomic/journal.py).

Writers are child processes killed with SIGKILL at a chosen ``os.replace`` (a real kill: the
journal then belongs to a process that no longer exists, as after a crash).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
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
from filterdb.atomic.files import pid_scope, process_started
from tests.conftest import KILL_ON_REPLACE, REPO, run_killed

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

real, seen = os.replace, [0]

def replace(src, dst):  # renames of temps onto targets fail (EACCES) from the first_failing-th on
    if ".journal." not in os.fspath(src):
        seen[0] += 1
        if seen[0] >= a["first_failing"]:
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


def _failing_writer(targets: list[Path], first_failing: int) -> subprocess.Popen[str]:
    """A live child whose renames fail from the ``first_failing``-th on; it has printed
    "failed" when this returns, and exits when sent a line."""
    args = json.dumps({"targets": [str(p) for p in targets], "first_failing": first_failing})
    prelude = "import json, sys\na = json.loads(sys.argv[1])\n"
    child = subprocess.Popen(
        [sys.executable, "-c", prelude + FAIL_THEN_WAIT, args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "failed\n"
    return child


def _journals(root: Path) -> list[Path]:
    return sorted(root.rglob(f".*{JOURNAL_SUFFIX}"))


def test_a_writer_whose_first_rename_fails_withdraws_its_commit(tmp_path: Path) -> None:
    targets = _old_set(tmp_path)
    child = _failing_writer(targets, first_failing=1)
    try:
        assert _texts(targets) == ["old"] * 3
        assert _hidden(tmp_path) == []  # no journal, no temp: nothing to settle later
    finally:
        child.communicate("\n", timeout=60)


def test_a_journal_left_by_a_live_writer_never_overwrites_a_newer_commit(tmp_path: Path) -> None:
    """A writer whose renames failed after the first keeps running (its journal is left, being
    live: a.txt is its set's, b and c are not); a newer commit then succeeds; once that writer
    exits, the next write drops its journal and temps instead of rolling the older set forward
    over the newer one."""
    targets = _old_set(tmp_path)
    child = _failing_writer(targets, first_failing=2)
    try:
        assert _texts(targets) == ["stale", "old", "old"] and _journals(tmp_path)
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


def test_of_two_left_journals_the_newer_set_wins(tmp_path: Path) -> None:
    """W1 renamed a.txt only and lives on; W2 then writes the whole set and is killed before its
    first rename. Whatever their names' order, W2's set is settled first, and W1's is then
    stale."""
    targets = _old_set(tmp_path)
    child = _failing_writer(targets, first_failing=2)
    try:
        time.sleep(0.01)  # W2's journal is younger by more than the clock's step
        _kill_at(targets, ["set", 1])
    finally:
        child.communicate("\n", timeout=60)
    assert len(_journals(tmp_path / "one")) == 2

    roll_forward(tmp_path / "one")
    roll_forward(tmp_path / "two")

    assert _texts(targets) == ["new"] * 3
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
        writer = {"started": process_started(os.getpid()), **pid_scope()}
        journal.write_text(json.dumps({**doc, "writer": writer}))

    assert roll_forward(tmp_path / "one") == []
    assert _texts(targets) == ["new", "old", "old"]


def test_a_journal_from_another_pid_namespace_is_judged_by_its_pid_alone(tmp_path: Path) -> None:
    """A writer in a container (another pid namespace) may be live under a pid that names
    another process here: its start time proves nothing, so only a free pid counts."""
    targets = _old_set(tmp_path)
    _kill_at(targets, ["set", 2])
    for journal in _as_if_written_by(os.getpid(), tmp_path):  # a pid that is alive here
        doc = json.loads(journal.read_text())
        doc["writer"]["pid_namespace"] = "elsewhere"
        journal.write_text(json.dumps(doc))

    assert roll_forward(tmp_path / "one") == []
    assert _texts(targets) == ["new", "old", "old"]


def test_a_killed_writer_not_yet_reaped_is_gone(tmp_path: Path) -> None:
    """Killed but not waited for by its parent, the writer is a zombie: its set is settled."""
    targets = _old_set(tmp_path)
    args = {"targets": [str(p) for p in targets], "kill_on": ["set", 2]}
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_ON_REPLACE + CHILD, json.dumps(args)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 60
        while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        if not stat.exists():
            pytest.skip("no /proc here")

        assert settle_for_reading(*targets) == targets[1:]
        assert _texts(targets) == ["new"] * 3
    finally:
        child.wait()


def test_a_reader_may_read_a_consistent_set_it_cannot_clean_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while writing its journal's first copy: the set is the old one, and only
    leftovers remain, which a reader without write access leaves (it does not refuse)."""
    targets = _old_set(tmp_path)
    _kill_at(targets, ["journal", 1])

    def refused(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refused)
    assert settle_for_reading(*targets) == []
    assert _texts(targets) == ["old"] * 3


def test_a_reader_on_a_read_only_file_system_is_told_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets = _old_set(tmp_path)
    _kill_at(targets, ["set", 2])

    def read_only(src: object, dst: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", os.fspath(dst))  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(JournalError, match=r"half renamed .*\(Read-only file system\)"):
        settle_for_reading(*targets)


def test_two_settlers_of_one_journal_complete_the_set(tmp_path: Path) -> None:
    """Settler A renames b's temp while settler B is deciding (between B reading the target and
    the temp): B must not take the set for stale and remove c's temp under A."""
    targets = _old_set(tmp_path)
    _kill_at(targets, ["set", 2])
    journal = _journals(tmp_path / "one")[0]
    renames = json.loads(journal.read_text())["renames"]
    tmp_b, tmp_c = (Path(os.path.normpath(tmp_path / "one" / r[0])) for r in renames[1:])

    real_exists, fired = Path.exists, []

    def exists(self: Path, **kwargs: object) -> bool:
        if self == tmp_b and not fired:  # A's rename of b lands inside B's decision
            fired.append(True)
            os.replace(tmp_b, targets[1])
        return real_exists(self, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "exists", exists)
        roll_forward(tmp_path / "one")  # B
    if tmp_c.exists():  # A goes on with c
        os.replace(tmp_c, targets[2])

    assert _texts(targets) == ["new"] * 3


def test_a_target_named_twice_through_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "one")
    with (
        pytest.raises(ValueError, match="named twice"),
        atomic_paths(tmp_path / "one" / "a", tmp_path / "link" / "a"),
    ):
        pass
