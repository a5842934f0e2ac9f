"""A write that failed for lack of space, as one line naming the file and the free space.

:func:`disk_full_error` decides whether an exception stands for a full disk, including the
``NetCDF: HDF error`` that netCDF-C/HDF5 report instead of the errno;
:func:`disk_full_as_error` applies it to a block of writes. The atomic writers
(:mod:`filterdb.atomic.write`) apply it to every write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from filterdb.errors import FilterDBError

__all__ = [
    "DISK_FULL_BELOW",
    "DiskFullError",
    "disk_full_as_error",
    "disk_full_error",
    "raise_if_disk_full",
]

#: A write error without an errno (netCDF-C reports a failed ``write(2)`` inside HDF5 as
#: ``RuntimeError: NetCDF: HDF error``) is blamed on a full disk when less than this many bytes
#: are free to unprivileged users in the folder written to. A failed write fills the disk up to
#: its last block, so far less than this is left (0 bytes on a full tmpfs); 64 MiB leaves room
#: for a write larger than what was left, e.g. a whole weight chunk (2.4 MB at the default
#: 65,536 filters, 36 MiB at 2**20) or a statistics variable written by xarray at once.
DISK_FULL_BELOW = 64 * 2**20

_SPACE_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
#: words of the messages netCDF-C and HDF5 (via h5py) give for a write they could not finish
#: (netCDF classic files report a failed write by its errno's text alone)
_LIBRARY_WORDS = (
    "netcdf",
    "hdf",
    os.strerror(errno.ENOSPC).lower(),
    os.strerror(getattr(errno, "EDQUOT", errno.ENOSPC)).lower(),
)


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
        ``RuntimeError`` or errno-less ``OSError`` whose message names netCDF, HDF or no space, an
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


def raise_if_disk_full(
    exc: BaseException, temps: Mapping[str, Path], fallback: str, folder: Path
) -> None:
    """Raise the :class:`DiskFullError` for ``exc`` (naming the target of a temp), if any.

    ``temps`` maps temp paths to their targets, ``fallback`` names the target(s) otherwise and
    ``folder`` is where the bytes went.
    """
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
    filterdb.atomic.diskfull.DiskFullError: out.nc: No space left on device (...)
    """
    target = Path(target)
    temps = {str(tmp): target} if tmp is not None else {}
    folder = Path(tmp).parent if tmp is not None else target.parent
    try:
        yield
    except (OSError, RuntimeError) as exc:
        raise_if_disk_full(exc, temps, str(target), folder)
        raise
