"""Temp files named after their writer, and the file-system helpers the atomic writers share.

A temp is ``.NAME.PID.RANDOM.tmp`` beside its target: the writer's pid in the name tells a live
writer's temp (never touched) from one a killed run left (removed by the next write).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "alive",
    "dead_writer",
    "fsync",
    "new_temp",
    "process_started",
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
FILE_MODE = 0o666 & ~_UMASK


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def dead_writer(name: str, suffix: str) -> bool:
    """Whether ``.X.PID.RANDOM<suffix>`` names a file of a process that no longer exists."""
    parts = name[: -len(suffix)].rsplit(".", 2)  # ".X", PID, RANDOM
    return len(parts) == 3 and parts[1].isdigit() and not alive(int(parts[1]))


def process_started(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc``), or None.

    With the pid, it names a process uniquely: a pid the system reused for a new process has
    another start time.

    Examples
    --------
    >>> import os, sys
    >>> started = process_started(os.getpid())
    >>> started is None or started == process_started(os.getpid())
    True
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name may hold spaces
    except (OSError, IndexError, ValueError):
        return None


def new_temp(path: Path) -> Path:
    """A new empty temp file beside ``path``, named ``.NAME.PID.RANDOM.tmp``."""
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    return Path(tmp)


def fsync(path: Path) -> None:
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
