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
    "pid_scope",
    "process_started",
    "real_path",
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


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the process name (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()  # the name may hold spaces and parentheses


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (someone else's counts; a zombie, killed but not yet
    reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        pass
    fields = _stat_fields(pid)
    return not (fields and fields[0] in ("Z", "X"))


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
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def pid_scope() -> dict[str, object]:
    """Where this process's pids mean what they say: its pid namespace and the boot.

    A pid (and its start time) names the same process only for a reader in the same pid
    namespace of the same boot of the same machine; elsewhere (a container, another NFS
    client) only "no such pid" can be trusted, and not even that across machines.

    Examples
    --------
    >>> pid_scope() == pid_scope()
    True
    """
    try:
        namespace: object = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = None
    try:
        boot: object = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        boot = None
    return {"pid_namespace": namespace, "boot_id": boot}


def real_path(path: Path) -> str:
    """``path`` with its folder resolved through symlinks (the file itself is not followed: a
    rename replaces a symlink, not what it points to)."""
    return os.path.join(os.path.realpath(path.parent), path.name)


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
