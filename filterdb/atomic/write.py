"""Atomic writes: a temp file beside the target, renamed onto it only when writing succeeded.

:func:`atomic_path` writes one file; :func:`atomic_paths` writes several as one set (old set or
new set, never a mix) under a commit journal (:mod:`filterdb.atomic.journal`). Both remove the
temps killed runs left first, and raise a write that failed for lack of space as a one-line
:class:`~filterdb.atomic.diskfull.DiskFullError`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filterdb.atomic.diskfull import disk_full_as_error, raise_if_disk_full
from filterdb.atomic.files import FILE_MODE, alive, fsync, new_temp, real_path
from filterdb.atomic.journal import roll_forward, settle, write_journals

__all__ = [
    "atomic_path",
    "atomic_paths",
    "remove_stale_temps",
    "write_atomic_netcdf",
    "write_atomic_text",
]


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files of ``path`` left by killed writers (their process no longer exists).

    Temp names carry the writer's pid (``.NAME.PID.XXXX.tmp``), so a live writer's temp file is
    never touched. Commit journals of killed writers in the folder are settled first (see
    :func:`roll_forward`), so a temp that belongs to a committed set is renamed into place, not
    deleted.

    Raises
    ------
    JournalError
        A killed writer's commit journal in the folder cannot be read (the message names it).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / ".x.nc.999999999.abc.tmp").write_text("left by a killed run")
    >>> [p.name for p in remove_stale_temps(d / "x.nc")]
    ['.x.nc.999999999.abc.tmp']
    """
    path = Path(path)
    roll_forward(path.parent)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        parts = tmp.name[len(path.name) + 2 :].split(".")  # PID.RANDOM.tmp
        if len(parts) == 3 and parts[0].isdigit() and not alive(int(parts[0])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temp file is removed when the block raises, so a failed write leaves the previous
    version (or nothing) in place. A failure for lack of space is raised as a
    :class:`DiskFullError` naming ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> out.read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp_path = new_temp(path)
    try:
        with disk_full_as_error(path, tmp_path):
            yield tmp_path
            # mkstemp makes the file private (0600); give it the usual mode under the umask
            os.chmod(tmp_path, FILE_MODE)
            os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_paths(*targets: str | os.PathLike[str]) -> Iterator[tuple[Path, ...]]:
    """Yield temp paths beside ``targets``; rename them all into place only if the block succeeds.

    The files are committed as one set: after the block, every temp is synced to disk, a
    journal listing the renames is written (atomically, into every folder that holds a target,
    the first target's folder first), the temps are renamed onto their targets, and the journal
    is removed. If the writer is killed during the renames, the next atomic write into any of
    these folders (or :func:`roll_forward`) completes them; if the block raises or the writer is
    killed before the journal exists, the temps are removed (at once, or as stale by the next
    write) and the previous set stays. So readers see the old set or the new set, never a mix.

    Parameters
    ----------
    *targets : path-like
        The files of the set (distinct).

    Yields
    ------
    tuple of Path
        One temp path per target, in order.

    Raises
    ------
    DiskFullError
        A write in the block failed for lack of space (the message names the targets; wrap
        each write in :func:`disk_full_as_error` to name the one file).

    Notes
    -----
    If a rename fails (the error is raised) before any rename happened, the commit is
    withdrawn at once: the old set stays. After some renames, the journal stays, and is
    completed once this process has exited (e.g. an interactive session), unless a newer write
    has replaced the set meanwhile (then it is dropped).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_paths(d / "a.txt", d / "b.txt") as (a, b):
    ...     _ = a.write_text("A")
    ...     _ = b.write_text("B")
    >>> sorted(p.name for p in d.iterdir())
    ['a.txt', 'b.txt']
    """
    paths = tuple(Path(t) for t in targets)
    if not paths:
        raise ValueError("atomic_paths needs at least one target")
    if len({real_path(p.absolute()) for p in paths}) != len(paths):  # through symlinks too
        raise ValueError(f"atomic_paths: a target is named twice in {[str(p) for p in paths]}")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
    temps: list[Path] = []
    try:
        for path in paths:
            temps.append(new_temp(path))
        try:
            yield tuple(temps)
            for tmp in temps:
                os.chmod(tmp, FILE_MODE)
                fsync(tmp)
            journals = write_journals(paths, temps)
        except (OSError, RuntimeError) as exc:
            named = {str(t): p for t, p in zip(temps, paths, strict=True)}
            raise_if_disk_full(exc, named, ", ".join(map(str, paths)), paths[0].parent)
            raise
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    # committed: from here on a kill leaves the journal, and the next write completes the set
    try:
        settle(journals[0], own=True)
    except BaseException:
        if all(t.exists() for t in temps):  # no rename happened: withdraw the commit
            for copy in journals:  # copies first: a kill in between still finds every temp
                copy.unlink(missing_ok=True)
            for tmp in temps:
                tmp.unlink(missing_ok=True)
        raise


def write_atomic_netcdf(ds: Any, path: str | os.PathLike[str]) -> Path:
    """Write an xarray dataset to netCDF at ``path`` atomically."""
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp)
    return Path(path)


def write_atomic_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
