"""Atomic writes: nothing is ever half-written, and a write that fails for lack of space says so.

One module per job:

- :mod:`~filterdb.atomic.write`: :func:`atomic_path` (one file) and :func:`atomic_paths` (several
  files as one set), through temps beside their targets;
- :mod:`~filterdb.atomic.journal`: the commit journal of a set, settled after a kill
  (:func:`roll_forward`, :func:`settle_for_reading`);
- :mod:`~filterdb.atomic.files`: the temps' naming (the writer's pid in it), modes and fsync;
- :mod:`~filterdb.atomic.diskfull`: :class:`DiskFullError`, one line naming the file and the
  free space, also for netCDF's ``NetCDF: HDF error``.
"""

from filterdb.atomic.diskfull import (
    DISK_FULL_BELOW,
    DiskFullError,
    disk_full_as_error,
    disk_full_error,
)
from filterdb.atomic.files import DIR_MODE
from filterdb.atomic.journal import JOURNAL_SUFFIX, JournalError, roll_forward, settle_for_reading
from filterdb.atomic.write import (
    atomic_path,
    atomic_paths,
    remove_stale_temps,
    write_atomic_netcdf,
    write_atomic_text,
)

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
