"""Extraction fan-out on dask: one task per zoo model, each writing the model's own shard.

:func:`extract_many` imports the extraction code (and torch) lazily, inside the task, so the
statistics never import torch; the shards it returns in zoo order assemble to the same bytes as a
sequential build.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask

from filterdb.stats.schedulers import Scheduler, scheduler_context

__all__ = ["extract_many"]


_LOAD_LOCK = threading.Lock()


def _extract_one(
    model_id: str, entry: Mapping[str, Any], out: str, store: Mapping[str, Any] | None
) -> str:
    """Load, extract and write one model's shard (imports torch lazily, in the worker)."""
    from filterdb.extract.build import build_shard

    # sources seed torch's global RNG before a random init: serialise builds within a process
    with _LOAD_LOCK:
        build_shard(model_id, entry, out, store)
    return out


def extract_many(
    zoo: Mapping[str, Mapping[str, Any]],
    shards_dir: str | os.PathLike[str],
    scheduler: Scheduler = "processes",
    store: Mapping[str, Any] | None = None,
    order: Sequence[str] | None = None,
) -> list[Path]:
    """Extract every zoo model to its own shard, in parallel, one dask task per model.

    Parameters
    ----------
    zoo : mapping
        ``model_id -> zoo entry`` (``params.yaml: zoo``).
    shards_dir : path-like
        Directory of the shards; model ``m`` goes to ``shards_dir / f"{m}.nc"`` (atomically).
    scheduler : None, str or distributed.Client
        As :func:`scheduler_context`; default ``"processes"``. With ``"threads"`` model loading
        is serialised within the process (sources seed torch's global RNG), extraction is not.
    store : mapping, optional
        ``params.yaml: store`` (chunking of the shards).
    order : sequence of str, optional
        Submission order of the tasks (default: zoo order); it does not affect the result.

    Returns
    -------
    list of Path
        The shards in **zoo order**, whatever the order of submission or completion, ready for
        :func:`filterdb.dataset.assemble.assemble` (whose output is then byte-identical to a
        sequential build).
    """
    shards_dir = Path(shards_dir)
    shards_dir.mkdir(parents=True, exist_ok=True)
    ids = list(zoo)
    submit = list(order) if order is not None else ids
    if sorted(submit) != sorted(ids):
        raise ValueError("order must be a permutation of the zoo's model ids")
    task = dask.delayed(_extract_one, pure=False)
    jobs = [
        task(m, dict(zoo[m]), str((shards_dir / f"{m}.nc").resolve()), dict(store or {}))
        for m in submit
    ]
    with scheduler_context(scheduler) as kw:
        done = dask.compute(*jobs, **kw)
    by_id = dict(zip(submit, done, strict=True))
    return [Path(by_id[m]) for m in ids]
