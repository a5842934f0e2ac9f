"""Atomic writes: a temp file beside the target, renamed onto it only when writing succeeded."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "DIR_MODE",
    "atomic_path",
    "remove_stale_temps",
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files of ``path`` left by killed writers (their process no longer exists).

    Temp names carry the writer's pid (``.NAME.PID.XXXX.tmp``), so a live writer's temp file is
    never touched.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / ".x.nc.999999999.abc.tmp").write_text("left by a killed run")
    >>> [p.name for p in remove_stale_temps(d / "x.nc")]
    ['.x.nc.999999999.abc.tmp']
    """
    path = Path(path)
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
    version (or nothing) in place.

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
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the usual mode under the umask
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
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
