"""Commit journals: several files renamed as one set, completed after a kill, never over newer.

:func:`filterdb.atomic.write.atomic_paths` writes a journal (``.NAME.PID.TOKEN.journal``, one copy
in every folder of the set) before it renames the set's temps onto their targets, and removes it
after. A journal whose writer is gone is settled by the next write into, or read from, any of
those folders (:func:`roll_forward`, :func:`settle_for_reading`): completed, undone, or dropped
when a newer write has replaced the set since.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filterdb.atomic.files import alive, dead_writer, fsync, pid_scope, process_started, real_path
from filterdb.errors import FilterDBError

__all__ = [
    "JOURNAL_SUFFIX",
    "JournalError",
    "roll_forward",
    "settle",
    "settle_for_reading",
    "write_journals",
]

#: Ending of commit journals (``.NAME.PID.TOKEN.journal``).
JOURNAL_SUFFIX = ".journal"
_JOURNAL_VERSION = 2  # 2: identities of targets and temps


class JournalError(FilterDBError):
    """A commit journal of :func:`atomic_paths` cannot be read (the message names it)."""


def _rel(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder``, both resolved through symlinks, so that the ``..`` in it
    may be applied as text to the journal's resolved folder (see :func:`_at`)."""
    return os.path.relpath(real_path(path), os.path.realpath(folder))


def _at(journal: Path, relative: str) -> Path:
    """A path of a journal entry (relative to the journal's folder, resolved through symlinks)."""
    return Path(os.path.normpath(os.path.join(os.path.realpath(journal.parent), relative)))


def _identity(path: Path) -> list[int] | None:
    """What tells one version of a file from another: inode, size and mtime (None: no file).

    A rename keeps all three; a newer write is a new file, with another inode. (Not the device
    number: a temp and its target share a folder, and the number a network or overlay file
    system gets can differ after a remount or on another client.)
    """
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _same(now: list[int], recorded: Any) -> bool:
    """Whether a file's identity is the recorded one (the last three numbers: inode, size,
    mtime)."""
    return isinstance(recorded, list) and now[-3:] == recorded[-3:]


#: errnos of a folder this process may read but not change
_READ_ONLY = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def _discard(path: Path) -> None:
    """Remove a leftover (a temp or journal copy of a settled set), if this process may."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        if exc.errno not in _READ_ONLY:
            raise


def write_journals(targets: Sequence[Path], temps: Sequence[Path]) -> list[Path]:
    """Write the commit journal into every folder holding a target; return the copies.

    Each copy is written atomically and synced. The first target's folder gets the first copy.
    Each rename is recorded with the identity (:func:`_identity`) of the target before it and
    of the temp, so that settling can tell a set a newer write has since replaced. On failure
    the copies written so far are removed.
    """
    folders: dict[str, tuple[Path, Path]] = {}  # folder -> (folder, first target in it)
    for target in targets:
        folders.setdefault(os.path.realpath(target.parent), (target.parent, target))
    token = secrets.token_hex(4)
    copies = [
        folder / f".{first.name}.{os.getpid()}.{token}{JOURNAL_SUFFIX}"
        for folder, first in folders.values()
    ]
    before = [_identity(t) for t in targets]
    made = [_identity(t) for t in temps]
    writer = {"started": process_started(os.getpid()), **pid_scope()}
    written: list[Path] = []
    try:
        for copy in copies:
            doc = {
                "filterdb_journal": _JOURNAL_VERSION,
                "writer": writer,
                "renames": [
                    [_rel(t, copy.parent), _rel(p, copy.parent), b, m]
                    for t, p, b, m in zip(temps, targets, before, made, strict=True)
                ],
                "journals": [_rel(c, copy.parent) for c in copies],
            }
            fd, tmp = tempfile.mkstemp(
                prefix=f".{copy.name}.{os.getpid()}.", suffix=".tmp", dir=copy.parent
            )
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(json.dumps(doc, indent=1) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, copy)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            written.append(copy)
            fsync(copy.parent)
    except BaseException:
        for copy in written:
            copy.unlink(missing_ok=True)
        raise
    return copies


def _read_journal(journal: Path) -> tuple[list[tuple[Path, Path, Any, Any]], list[Path]] | None:
    """The renames (temp, target, target before, temp) and copies of a journal; None if gone."""
    try:
        doc = json.loads(journal.read_text(encoding="utf-8"))
        renames = []
        for entry in doc["renames"]:
            tmp, target, *identities = entry
            before, made = identities if identities else (False, False)  # 1: not recorded
            renames.append((_at(journal, tmp), _at(journal, target), before, made))
        copies = [_at(journal, c) for c in doc["journals"]]
    except FileNotFoundError:  # settled by another process meanwhile
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise JournalError(
            f"{journal}: unreadable commit journal of a killed writer ({exc}); check the files "
            "it names, then delete it"
        ) from None
    return renames, copies


def settle(journal: Path, own: bool = False) -> list[Path]:
    """Complete, undo or drop the commit of ``journal`` (``own``: just written by this process,
    which completes it unconditionally).

    Every copy of a journal is written before the first rename and removed after the last.
    The journal records each target's identity before the commit and each temp's (which a
    rename keeps), so each target is either still the old file or already the new one. Only
    the targets are looked at (a temp may be renamed by another settler meanwhile):

    - if a target (that exists) is neither, a newer write has replaced it since: the journal
      is stale (e.g. left by a process whose renames failed and that kept running) and is
      dropped with its remaining temps, so old work never overwrites newer;
    - else if a target is the new file, or every copy of the journal is there, or every temp
      is there, the set is completed: every remaining temp is renamed (roll forward);
    - else (a copy missing and a temp gone: the writer died while writing the journal, and a
      temp the journal had not reached was removed as stale) the set stays the old one and
      its remaining temps are removed.

    A target that no longer exists (e.g. its folder was deleted) tells nothing and is skipped.
    Leftovers this process may not remove (a read-only folder) are left.

    Returns
    -------
    list of Path
        The targets renamed into place.
    """
    read = _read_journal(journal)
    if read is None:
        return []
    renames, copies = read
    started = stale = False
    for _, target, before, made in renames:
        if own or before is False:  # journal format 1: no identities recorded
            continue
        now = _identity(target)  # the target alone: a temp may be renamed meanwhile
        if now is None:
            continue
        if _same(now, made):
            started = True
        elif before is None or not _same(now, before):
            stale = True
    forward = own or (
        not stale
        and (started or all(c.exists() for c in copies) or all(t.exists() for t, *_ in renames))
    )
    done = []
    for tmp, target, *_ in renames:
        if not tmp.exists():
            continue  # renamed before the writer died (or, rolling back, never there)
        try:
            if forward:
                os.replace(tmp, target)
                done.append(target)
            else:
                _discard(tmp)
        except FileNotFoundError:  # another process settling the same journal
            continue
    for folder in {os.path.abspath(t.parent): t.parent for _, t, *_ in renames}.values():
        fsync(folder)
    for copy in copies:
        _discard(copy)
    return done


def roll_forward(folder: str | os.PathLike[str]) -> list[Path]:
    """Settle the commit journals that killed writers left in ``folder``.

    A journal of :func:`~filterdb.atomic.write.atomic_paths` whose writer no longer runs (its pid
    is free, or was reused by a process started later) is completed: its remaining temps are
    renamed onto their targets, so the set is the new one throughout. A journal whose own
    writing was cut short is undone instead (the set stays the old one), and a journal whose
    targets a newer write has replaced since is dropped (see :func:`settle`). Journals of live
    writers are left alone. :func:`~filterdb.atomic.write.remove_stale_temps` (and so every
    atomic write) and :func:`settle_for_reading` call this first.

    Parameters
    ----------
    folder : path-like
        A folder that holds targets of atomic writes.

    Returns
    -------
    list of Path
        The targets renamed into place.

    Raises
    ------
    JournalError
        A killed writer's journal cannot be read (the message names it).
    """
    folder = Path(folder)
    done: list[Path] = []
    if not folder.is_dir():
        return done
    for tmp in folder.glob(f".*{JOURNAL_SUFFIX}.*.tmp"):  # a journal being written when killed
        if dead_writer(tmp.name, ".tmp"):
            _discard(tmp)
    for journal in sorted(folder.glob(f".*{JOURNAL_SUFFIX}"), key=_newest_first):
        if _writer_gone(journal):
            done += settle(journal)
    return done


def _newest_first(journal: Path) -> tuple[int, str]:
    """Order journals newest first: a newer set settled first makes an older one stale."""
    try:
        return -journal.stat().st_mtime_ns, journal.name
    except FileNotFoundError:  # settled by another process meanwhile
        return 0, journal.name


def _writer_gone(journal: Path) -> bool:
    """Whether the process that wrote ``journal`` has ended: its pid (in the name) is free or a
    zombie, or, seen from the writer's pid namespace and boot, now names a process that started
    at another time (a reused pid).
    """
    parts = journal.name[: -len(JOURNAL_SUFFIX)].rsplit(".", 2)  # ".X", PID, TOKEN
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if not alive(pid):
        return True
    try:
        writer = json.loads(journal.read_text(encoding="utf-8")).get("writer")
    except (OSError, ValueError, AttributeError):
        return False  # being replaced, or unreadable: settle() names it once its writer is gone
    if not isinstance(writer, dict) or writer.get("started") is None:
        return False
    here = pid_scope()
    if None in here.values() or any(writer.get(k) != v for k, v in here.items()):
        return False  # another pid namespace or boot: the pid may name another process
    return process_started(pid) not in (None, writer["started"])


def settle_for_reading(*paths: str | os.PathLike[str]) -> list[Path]:
    """Complete a set that a killed writer left half renamed, before reading its files.

    Writers roll killed sets forward before they write; a reader calls this so that it, too,
    sees the old set or the new one, never a mix (:func:`roll_forward` on each file's folder).

    Parameters
    ----------
    *paths : path-like
        The files about to be read.

    Returns
    -------
    list of Path
        The targets renamed into place.

    Raises
    ------
    JournalError
        A killed writer's journal cannot be read, or the reader may not complete it (a
        read-only folder): the message names the journal's folder.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> settle_for_reading(d / "degeneracy.nc", d / "shifts.nc")  # no journal: nothing to do
    []
    """
    done: list[Path] = []
    for folder in {os.path.realpath(Path(p).parent): Path(p).parent for p in paths}.values():
        try:
            done += roll_forward(folder)
        except OSError as exc:
            if exc.errno not in _READ_ONLY:
                raise
            raise JournalError(
                f"{folder}: a killed writer left a set of files half renamed here, and this "
                f"process may not complete it ({exc.strerror}); re-run the writer (or any "
                "filterdb command that writes there) as the files' owner"
            ) from None
    return done
