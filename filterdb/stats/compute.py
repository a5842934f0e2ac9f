"""The single-process plan of both statistics: degeneracy and shifts over one sequential read.

:func:`compute_stats` reads ``weight`` once per pass, in file order and chunk-aligned slices. The
first pass is shared: each chunk feeds the PCA sums of the shifts, each whole layer the degeneracy
statistics, computed on threads and folded in file order; passes 2 and 3 of the shifts follow
(:meth:`filterdb.stats.shifts.ShiftsPasses.run_after_pass1`). The dask driver
(:mod:`filterdb.stats.distributed`) runs the same kernels as tasks, with bit-identical results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import xarray as xr

from filterdb.dataset.reading import (
    chunk_size_of,
    default_workers,
    iter_chunks,
    iter_layers,
    ordered_map,
    tap,
)
from filterdb.stats.degeneracy import DegeneracyPass
from filterdb.stats.params import DegeneracyParams, ShiftsParams, blas_limit
from filterdb.stats.shifts import ShiftsPasses

__all__ = ["compute_stats"]


def compute_stats(
    ds: xr.Dataset,
    degeneracy_params: DegeneracyParams | Mapping[str, Any] | None = None,
    shifts_params: ShiftsParams | Mapping[str, Any] | None = None,
    workers: int | None = None,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Degeneracy and shift statistics with the degeneracy sharing the first pass.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the filterdb layout, typically opened lazily.
    degeneracy_params, shifts_params : params or dict, optional
        ``params.yaml: degeneracy`` and ``shifts``.
    workers : int, optional
        Compute threads (default :func:`filterdb.dataset.reading.default_workers`: the usable
        cores, or ``$FILTERDB_THREADS``). The calling thread reads the chunks in file order; chunks
        and layers are computed on the threads and their partial results folded in file order,
        so the results are bit-identical for any number of threads.

    Returns
    -------
    degeneracy, shifts : xarray.Dataset
        As :func:`filterdb.stats.degeneracy.compute_degeneracy` and
        :func:`filterdb.stats.shifts.compute_shifts`.
    """
    dp = DegeneracyParams.coerce(degeneracy_params)
    sp = ShiftsParams.coerce(shifts_params)
    chunk = chunk_size_of(ds, sp.chunk_size if sp.chunk_size is not None else dp.chunk_size)
    n_workers = default_workers() if workers is None else max(int(workers), 1)
    deg = DegeneracyPass(ds, dp)
    passes = ShiftsPasses(ds, sp)
    with blas_limit(sp.blas_threads):
        jobs = _pass1_jobs(iter_chunks(ds, chunk), deg, passes)
        for kind, a, b in ordered_map(_run_job, jobs, n_workers):  # pass 1, shared
            if kind == "pca":
                passes.merge_pca(a, b)  # file order: the sequential summation order
            else:
                deg.set_row(a, b)
        return deg.result(), passes.run_after_pass1(chunk, n_workers)


def _run_job(kind: str, fn: Callable[..., Any], *args: Any) -> tuple[str, Any, Any]:
    """Run one job of :func:`_pass1_jobs`: ``("pca", sums, n_bad)`` or ``("layer", li, row)``."""
    out = fn(*args)
    return (kind, *out) if kind == "pca" else (kind, args[0], out)


def _pass1_jobs(
    chunks: Iterator[tuple[int, np.ndarray]], deg: DegeneracyPass, passes: ShiftsPasses
) -> Iterator[tuple[Any, ...]]:
    """The jobs of the shared first pass, in file order: each chunk's PCA sums, and each
    layer's degeneracy statistics as soon as its last chunk is read."""
    read: list[tuple[int, np.ndarray]] = []
    for li, w in iter_layers(tap(chunks, lambda s, a: read.append((s, a))), deg.first, deg.count):
        for start, arr in read:
            yield ("pca", passes.pca_partial, start, arr)
        read.clear()
        yield ("layer", deg.layer_row, li, w)
    for start, arr in read:  # chunks after the last layer
        yield ("pca", passes.pca_partial, start, arr)
