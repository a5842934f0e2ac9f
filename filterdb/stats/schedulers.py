"""Choosing a dask scheduler, and the environment of the workers it starts.

:func:`scheduler_context` turns ``None``, a local scheduler name, a scheduler address or a
``distributed.Client`` into the keyword arguments of ``dask.compute``; :func:`worker_config` gives
nanny-started workers :data:`WORKER_ENVIRON`. Both dask drivers use them: the statistics
(:mod:`filterdb.stats.distributed`) and the extraction fan-out (:mod:`filterdb.stats.fanout`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import dask

__all__ = ["LOCAL_SCHEDULERS", "WORKER_ENVIRON", "Scheduler", "scheduler_context", "worker_config"]

#: Local scheduler names accepted by ``scheduler``.
LOCAL_SCHEDULERS = (
    "threads",
    "threading",
    "synchronous",
    "sync",
    "single-threaded",
    "processes",
    "multiprocessing",
)


#: Environment for worker processes. dask's nanny starts workers with
#: ``MALLOC_TRIM_THRESHOLD_=65536``, which (glibc) also pins the mmap threshold at 128 KiB: every
#: chunk-sized temporary array is then a fresh ``mmap`` that is page-faulted and zeroed, which
#: more than doubled the CPU time of the statistics on a worker (measured: 2.5 s -> 5.8 s CPU
#: for 5.5M filters, almost all of it system time). Raising both thresholds to 64 MiB restores
#: heap reuse; memory stays flat (``docs/scaling.md``).
WORKER_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": 64 << 20, "MALLOC_MMAP_THRESHOLD_": 64 << 20}


def worker_config() -> dict[str, Any]:
    """dask configuration giving nanny-started workers :data:`WORKER_ENVIRON`.

    Use it around the creation of a ``LocalCluster``; for ``dask worker`` put the same keys
    in a dask YAML config file (``docs/scaling.md``): environment variables
    ``DASK_DISTRIBUTED__...`` lower-case the variable name and do not work.

    Examples
    --------
    >>> import dask
    >>> with dask.config.set(worker_config()):
    ...     dask.config.get("distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_")
    67108864
    """
    return {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENVIRON.items()}


Scheduler = Any  # None, a scheduler name, an address "tcp://host:port" or a distributed.Client


@contextlib.contextmanager
def scheduler_context(scheduler: Scheduler = None) -> Iterator[dict[str, Any]]:
    """Keyword arguments for ``dask.compute`` that select ``scheduler``.

    Parameters
    ----------
    scheduler : None, str or distributed.Client
        ``None`` (dask's default), a local scheduler name (:data:`LOCAL_SCHEDULERS`), a
        distributed scheduler address (``"tcp://host:port"``, ``"host:port"``), or a
        ``distributed.Client`` (used as is, not closed). ``"processes"`` keeps one process
        pool for the whole block.

    Yields
    ------
    dict
        ``{}`` or ``{"scheduler": ...}``. For an address a ``Client`` is connected for the
        duration of the block and closed afterwards.

    Examples
    --------
    >>> with scheduler_context("synchronous") as kw:
    ...     kw
    {'scheduler': 'synchronous'}
    """
    if scheduler is None:
        yield {}
    elif isinstance(scheduler, str) and scheduler.lower() in ("processes", "multiprocessing"):
        # one pool for every ``dask.compute`` of the block (not one spawn per round)
        from concurrent.futures import ProcessPoolExecutor

        from dask.multiprocessing import get_context

        workers = dask.config.get("num_workers", None) or os.cpu_count() or 1
        with ProcessPoolExecutor(workers, mp_context=get_context()) as pool:
            yield {"scheduler": "processes", "pool": pool}
    elif isinstance(scheduler, str) and scheduler.lower() in LOCAL_SCHEDULERS:
        yield {"scheduler": scheduler.lower()}
    elif isinstance(scheduler, str) and ":" in scheduler:
        from distributed import Client

        with Client(scheduler, set_as_default=False) as client:
            yield {"scheduler": client}
    elif "Client" in type(scheduler).__name__ and hasattr(scheduler, "get"):
        yield {"scheduler": scheduler}
    else:
        raise ValueError(
            f"scheduler must be None, one of {LOCAL_SCHEDULERS}, an address 'tcp://host:port' "
            f"or a distributed.Client; got {scheduler!r}"
        )
