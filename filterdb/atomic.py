"""Atomic writes: a temp file beside the target, renamed onto it only when writing succeeded.

Three tools share the temp naming (``.NAME.PID.RANDOM.tmp``, the writer's pid in the name, so a
live writer's temp is never touched):

- :func:`atomic_path` writes one file;
- :func:`atomic_paths` writes several files as one set (old set or new set, never a mix), with a
  commit journal that a later run completes if the writer was killed while renaming;
- :func:`disk_full_as_error` turns a write that failed for lack of space, including the
  ``NetCDF: HDF error`` that netCDF-C/HDF5 report instead of the errno, into a one-line
  :class:`DiskFullError` naming the target. Both context managers above apply it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from filterdb.errors import FilterDBError

__all__ = [
    "DIR_MODE",
    "DISK_FULL_BELOW",
    "JOURNAL_SUFFIX",
    "DiskFullError",
    "JournalError",
    "atomic_path",
    "atomic_paths",
    "disk_full_as_error",
    "disk_full_error",
    "remove_stale_temps",
    "roll_forward",
    "settle_for_reading",
    "write_atomic_netcdf",
    "write_atomic_text",
]


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: read once at import: changing the umask later, even briefly, would race with other threads
_UMASK = _read_umask()

#: Mode of a folder created under the process umask (``tempfile.mkdtemp`` makes them 0700).
DIR_MODE = 0o777 & ~_UMASK

#: Mode of a written file under the process umask (``tempfile.mkstemp`` makes them 0600).
_FILE_MODE = 0o666 & ~_UMASK

#: A write error without an errno (netCDF-C reports a failed ``write(2)`` inside HDF5 as
#: ``RuntimeError: NetCDF: HDF error``) is blamed on a full disk when less than this many bytes
#: are free to unprivileged users in the folder written to. A failed write fills the disk up to
#: its last block, so far less than this is left (0 bytes on a full tmpfs); 64 MiB leaves room
#: for a write larger than what was left, e.g. a whole weight chunk (2.4 MB at the default
#: 65,536 filters, 36 MiB at 2**20) or a statistics variable written by xarray at once.
DISK_FULL_BELOW = 64 * 2**20

#: Ending of commit journals of :func:`atomic_paths` (``.NAME.PID.TOKEN.journal``).
JOURNAL_SUFFIX = ".journal"
_JOURNAL_VERSION = 2  # 2: identities of targets and temps

#: errnos that mean "out of space" whatever the free space shows (EDQUOT: a quota, not statvfs)
_SPACE_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
#: words of the messages netCDF-C and HDF5 (via h5py) give for a write they could not finish
_LIBRARY_WORDS = ("netcdf", "hdf")


class DiskFullError(FilterDBError, OSError):
    """Writing a file failed for lack of space (the message names the file and the free space).

    An :class:`OSError` too (``errno`` is ``ENOSPC``), so code that handles disk errors as
    ``OSError`` keeps working.

    Attributes
    ----------
    target : str
        The file that could not be written.
    reason : str
        The message after ``target: ``.
    """

    target: str = ""
    reason: str = ""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.errno = errno.ENOSPC

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    @classmethod
    def about(cls, target: str | os.PathLike[str], reason: str) -> DiskFullError:
        """The error ``"<target>: <reason>"``."""
        error = cls(f"{target}: {reason}")
        error.target, error.reason = str(target), reason
        return error


class JournalError(FilterDBError):
    """A commit journal of :func:`atomic_paths` cannot be read (the message names it)."""


# ------------------------------------------------------------------------------ disk full


def _free_bytes(folder: Path) -> int | None:
    """Bytes free to unprivileged users in ``folder`` (statvfs ``f_bavail``), None if unknown."""
    try:
        return int(shutil.disk_usage(folder).free)
    except OSError:
        return None


def _library_failure(exc: BaseException, code: int | None, folder: Path) -> bool:
    """Whether ``exc`` may be netCDF-C/HDF5 reporting a failed write without its errno.

    A ``RuntimeError`` or errno-less ``OSError`` counts only if its message is netCDF's or
    HDF5's; a netCDF code (negative) and ``EIO`` count; ``EACCES`` (netCDF creating a file on a
    full disk) only if the folder is writable, so a real permission error stays one.
    """
    if code is not None and code < 0:
        return True
    if code == errno.EIO:
        return True
    if code == errno.EACCES:
        return os.access(folder, os.W_OK | os.X_OK)
    if isinstance(exc, RuntimeError) or code is None:
        return any(word in str(exc).lower() for word in _LIBRARY_WORDS)
    return False


def disk_full_error(
    exc: BaseException,
    target: str | os.PathLike[str],
    folder: str | os.PathLike[str] | None = None,
) -> DiskFullError | None:
    """The :class:`DiskFullError` that ``exc`` stands for, or None if it is not about space.

    Call it before the partly written file is removed (removing it frees space again).

    Parameters
    ----------
    exc : BaseException
        What the write raised.
    target : path-like
        The file being written (named in the message).
    folder : path-like, optional
        Where the bytes went (default: the folder of ``exc.filename`` if any, else of
        ``target``).

    Returns
    -------
    DiskFullError or None
        An error for an ``OSError`` with errno ``ENOSPC`` or ``EDQUOT``, and for a netCDF/HDF5
        failure while less than :data:`DISK_FULL_BELOW` bytes are free in ``folder``: a
        ``RuntimeError`` or errno-less ``OSError`` whose message names netCDF or HDF, an
        ``OSError`` with a netCDF code or ``EIO``, or ``EACCES`` in a folder that is writable
        (netCDF's error for creating a file on a full disk). None otherwise (other errors, a
        real permission error, or free space plenty).

    Examples
    --------
    >>> import errno, tempfile
    >>> d = tempfile.mkdtemp()
    >>> enospc = OSError(errno.ENOSPC, "No space left on device")
    >>> print(disk_full_error(enospc, "x.nc", d))  # doctest: +ELLIPSIS
    x.nc: No space left on device (... bytes free in ...)
    >>> disk_full_error(ValueError("bad value"), "x.nc", d) is None
    True
    """
    if isinstance(exc, FilterDBError) or not isinstance(exc, OSError | RuntimeError):
        return None
    code = exc.errno if isinstance(exc, OSError) else None
    if folder is None:
        filename = getattr(exc, "filename", None)
        folder = Path(filename).parent if filename else Path(target).parent
    folder = Path(folder)
    free = _free_bytes(folder)
    where = f"{free:,} bytes free in {folder}" if free is not None else f"in {folder}"
    if code in _SPACE_ERRNOS:
        return DiskFullError.about(target, f"{os.strerror(code)} ({where})")
    if not _library_failure(exc, code, folder) or free is None or free >= DISK_FULL_BELOW:
        return None
    said = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
    return DiskFullError.about(
        target, f"{os.strerror(errno.ENOSPC)} ({where}; the write failed with {said})"
    )


def _raise_for_space(
    exc: BaseException, temps: Mapping[str, Path], fallback: str, folder: Path
) -> None:
    """Raise the :class:`DiskFullError` for ``exc`` (naming the target of a temp), if any."""
    if isinstance(exc, DiskFullError):
        if exc.target in temps:  # a nested atomic write's target is our temp: name ours
            raise DiskFullError.about(temps[exc.target], exc.reason) from exc.__cause__
        return
    filename = getattr(exc, "filename", None)
    name = temps.get(str(filename), fallback) if filename else fallback
    error = disk_full_error(exc, name, Path(filename).parent if filename else folder)
    if error is not None:
        raise error from exc


@contextlib.contextmanager
def disk_full_as_error(
    target: str | os.PathLike[str], tmp: str | os.PathLike[str] | None = None
) -> Iterator[None]:
    """Re-raise a write failure for lack of space in the block as a :class:`DiskFullError`.

    Other errors pass unchanged. :func:`atomic_path` and :func:`atomic_paths` apply it
    already; use it directly around one write inside :func:`atomic_paths` to name that file.

    Parameters
    ----------
    target : path-like
        The file written in the block (named in the message).
    tmp : path-like, optional
        The temp it is written to: an error about ``tmp`` (e.g. from an atomic write nested in
        the block) names ``target`` instead.

    Examples
    --------
    >>> import errno
    >>> with disk_full_as_error("out.nc"):  # doctest: +ELLIPSIS
    ...     raise OSError(errno.ENOSPC, "No space left on device")
    Traceback (most recent call last):
    ...
    filterdb.atomic.DiskFullError: out.nc: No space left on device (...)
    """
    target = Path(target)
    temps = {str(tmp): target} if tmp is not None else {}
    folder = Path(tmp).parent if tmp is not None else target.parent
    try:
        yield
    except (OSError, RuntimeError) as exc:
        _raise_for_space(exc, temps, str(target), folder)
        raise


# ------------------------------------------------------------------------------ temps


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _dead_writer(name: str, suffix: str) -> bool:
    """Whether ``.X.PID.RANDOM<suffix>`` names a file of a process that no longer exists."""
    parts = name[: -len(suffix)].rsplit(".", 2)  # ".X", PID, RANDOM
    return len(parts) == 3 and parts[1].isdigit() and not _alive(int(parts[1]))


def _new_temp(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    return Path(tmp)


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
        if len(parts) == 3 and parts[0].isdigit() and not _alive(int(parts[0])):
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
    tmp_path = _new_temp(path)
    try:
        with disk_full_as_error(path, tmp_path):
            yield tmp_path
            # mkstemp makes the file private (0600); give it the usual mode under the umask
            os.chmod(tmp_path, _FILE_MODE)
            os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------ sets of files


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (best effort for folders; a missing folder,
    e.g. one a user deleted after a kill, is skipped)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir() or not path.exists():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():  # some file systems cannot sync a folder
            raise
    finally:
        os.close(fd)


def _real(path: Path) -> str:
    """``path`` with its folder resolved through symlinks (the file itself is not followed: a
    rename replaces a symlink, not what it points to)."""
    return os.path.join(os.path.realpath(path.parent), path.name)


def _rel(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder``, both resolved through symlinks, so that the ``..`` in it
    may be applied as text to the journal's resolved folder (see :func:`_at`)."""
    return os.path.relpath(_real(path), os.path.realpath(folder))


def _at(journal: Path, relative: str) -> Path:
    """A path of a journal entry (relative to the journal's folder, resolved through symlinks)."""
    return Path(os.path.normpath(os.path.join(os.path.realpath(journal.parent), relative)))


def _identity(path: Path) -> list[int] | None:
    """What tells one version of a file from another: device, inode, size and mtime (None:
    no file). A rename keeps all four; a newer write is a new file, with another inode."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _write_journals(targets: Sequence[Path], temps: Sequence[Path]) -> list[Path]:
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
    written: list[Path] = []
    try:
        for copy in copies:
            doc = {
                "filterdb_journal": _JOURNAL_VERSION,
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
            _fsync(copy.parent)
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


def _settle(journal: Path, own: bool = False) -> list[Path]:
    """Complete, undo or drop the commit of ``journal`` (``own``: just written by this process,
    which completes it unconditionally).

    Every copy of a journal is written before the first rename and removed after the last.
    The journal records each target's identity before the commit and each temp's (which a
    rename keeps), so each target is either still the old file with its temp pending, or
    already the new one:

    - if a target (that exists) is neither, a newer write has replaced it since: the journal
      is stale (e.g. left by a process whose renames failed and that kept running) and is
      dropped with its remaining temps, so old work never overwrites newer;
    - else if a rename is seen done, or every copy of the journal is there, or every temp is
      there, the set is completed: every remaining temp is renamed (roll forward);
    - else (a copy missing and a temp gone: the writer died while writing the journal, and a
      temp the journal had not reached was removed as stale) the set stays the old one and
      its remaining temps are removed.

    A target that no longer exists (e.g. its folder was deleted) tells nothing and is skipped.

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
    for tmp, target, before, made in renames:
        if own or before is False:  # journal format 1: no identities recorded
            continue
        now = _identity(target)
        pending = tmp.exists()
        if not pending and now is not None and now == made:
            started = True
        elif now is not None and now != (before if pending else made):
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
                tmp.unlink()
        except FileNotFoundError:  # another process settling the same journal
            continue
    for folder in {os.path.abspath(t.parent): t.parent for _, t, *_ in renames}.values():
        _fsync(folder)
    for copy in copies:
        copy.unlink(missing_ok=True)
    return done


def roll_forward(folder: str | os.PathLike[str]) -> list[Path]:
    """Settle the commit journals that killed writers left in ``folder``.

    A journal of :func:`atomic_paths` whose writer no longer runs is completed: its remaining
    temps are renamed onto their targets, so the set is the new one throughout. A journal whose
    own writing was cut short is undone instead (the set stays the old one), and a journal
    whose targets a newer write has replaced since is dropped (see :func:`_settle`). Journals
    of live writers are left alone. :func:`remove_stale_temps` (and so every atomic write) and
    :func:`settle_for_reading` call this first.

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
        if _dead_writer(tmp.name, ".tmp"):
            tmp.unlink(missing_ok=True)
    for journal in sorted(folder.glob(f".*{JOURNAL_SUFFIX}")):
        if _dead_writer(journal.name, JOURNAL_SUFFIX):
            done += _settle(journal)
    return done


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
        except PermissionError as exc:
            raise JournalError(
                f"{folder}: a killed writer left a set of files half renamed here, and this "
                f"process may not complete it ({exc.strerror}); re-run the writer (or any "
                "filterdb command that writes there) as the files' owner"
            ) from None
    return done


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
    A journal left by a rename that failed in a process that is still running (e.g. an
    interactive session) is completed only after that process exits.

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
    if len({os.path.abspath(p) for p in paths}) != len(paths):
        raise ValueError(f"atomic_paths: a target is named twice in {[str(p) for p in paths]}")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
    temps: list[Path] = []
    try:
        for path in paths:
            temps.append(_new_temp(path))
        try:
            yield tuple(temps)
            for tmp in temps:
                os.chmod(tmp, _FILE_MODE)
                _fsync(tmp)
            journals = _write_journals(paths, temps)
        except (OSError, RuntimeError) as exc:
            named = {str(t): p for t, p in zip(temps, paths, strict=True)}
            _raise_for_space(exc, named, ", ".join(map(str, paths)), paths[0].parent)
            raise
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    # committed: from here on a kill leaves the journal, and the next write completes the set
    _settle(journals[0], own=True)


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
