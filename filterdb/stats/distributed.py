"""Dask driver of the statistics.

The statistics of :func:`filterdb.stats.compute.compute_stats` (degeneracy and distribution
shifts, three passes) run here as dask tasks over *partitions* of the ``filter`` dimension. Every
task opens the netCDF file itself (it gets a path, never an open handle), reads its filter range
in slices aligned with the on-disk chunks and returns small accumulators; a tree of merge tasks
combines them. The three passes are three rounds of tasks. The same code runs on the threaded,
synchronous or multiprocessing schedulers, on a ``dask.distributed.LocalCluster`` or on a remote
scheduler (``tcp://host:port``).

Partitions hold whole layers (degeneracy needs a layer at once): they are cut at the layer start
nearest to each multiple of ``partition_filters`` (a multiple of the on-disk chunk). The results
are **bit-identical** to the single-process path, not merely close:

- per-layer statistics are computed from the whole layer by the same function;
- the PCA sums are kept per on-disk chunk (``StreamingPCA`` of exactly the slice the sequential
  reader sees; a partition also reads the rest of a chunk that starts inside it and ends in the
  next partition) and folded on the driver in file order, so the floating-point summation order
  is the sequential one;
- the coefficient range (min/max), the peak coefficient per component (ties broken by the
  filter index, so the u-based signs are the sequential ones), the histogram counts and the
  clipped-coefficient counts (integers) are order-independent, and the coefficients are
  computed from the same chunk-aligned slices, so even BLAS blocking cannot differ;
- the population (which models enter the PCA, the range and each axis) is decided per filter
  by the same :class:`filterdb.stats.shifts.ShiftsPasses` methods in every task.

Memory per task is one chunk plus the largest layer, whatever the partition size. The scheduler
is chosen by :func:`filterdb.stats.schedulers.scheduler_context`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from filterdb.dataset.reading import chunk_size_of, iter_chunks, iter_layers, layer_table
from filterdb.params import section_params
from filterdb.stats.accumulators import CoefficientRange, StreamingPCA
from filterdb.stats.binning import histogram_edges
from filterdb.stats.degeneracy import DegeneracyPass
from filterdb.stats.params import DegeneracyParams, ShiftsParams, blas_limit
from filterdb.stats.schedulers import Scheduler, scheduler_context
from filterdb.stats.shifts import ShiftsPasses, apply_sign_rule, assemble_shifts
from filterdb.stats.write import write_results

__all__ = [
    "DaskParams",
    "Partition",
    "compute_stats_dask",
    "partitions",
    "write_stats_dask",
]

#: Default partition size in on-disk chunks (32 x 65,536 = 2,097,152 filters, 75 MB float32).
DEFAULT_CHUNKS_PER_PARTITION = 32


@dataclass(frozen=True)
class DaskParams:
    """Settings of the dask driver (``params.yaml`` section ``dask:``).

    Attributes
    ----------
    scheduler : str or None
        ``None`` (dask's default: the current ``distributed.Client`` if any, else threads),
        ``"threads"``, ``"synchronous"``, ``"processes"``, or a scheduler address
        ``"tcp://host:port"``.
    partition_filters : int or None
        Target filters per task, rounded up to a multiple of the on-disk chunk (``None``:
        ``32`` chunks). Partitions are cut at the nearest layer start.
    """

    scheduler: str | None = None
    partition_filters: int | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DaskParams:
        """Build from a mapping (e.g. ``params.yaml: dask``); unknown keys raise.

        Examples
        --------
        >>> DaskParams.from_dict({"scheduler": "tcp://10.0.0.1:8786"}).partition_filters is None
        True
        """
        return section_params(cls, values, "dask")


def _tree_reduce(items: Sequence[Any], merge: Callable[..., Any], fan_in: int = 8) -> Any:
    """Combine delayed ``items`` with ``merge(*group)`` tasks in a tree of width ``fan_in``."""
    level = list(items)
    if not level:
        raise ValueError("nothing to reduce")
    task = dask.delayed(merge, pure=True)
    while len(level) > 1:
        level = [task(*level[i : i + fan_in]) for i in range(0, len(level), fan_in)]
    return level[0]


# --------------------------------------------------------------------------------------------
# partitions


@dataclass(frozen=True)
class Partition:
    """A filter range holding whole layers, and the on-disk chunks it owns.

    Attributes
    ----------
    index : int
        Position in file order.
    layer_start, layer_stop : int
        Layers ``[layer_start, layer_stop)`` (their filters lie in ``[start, stop)``).
    start, stop : int
        Filter range of the partition's layers.
    chunk_start, read_stop : int
        Chunks whose first filter lies in ``[start, stop)`` are owned by this partition for the
        per-chunk statistics (PCA sums, coefficients); they cover ``[chunk_start, read_stop)``,
        which may end inside the next partition. ``chunk_start == read_stop`` when no chunk
        starts here.
    """

    index: int
    layer_start: int
    layer_stop: int
    start: int
    stop: int
    chunk_start: int
    read_stop: int


def partitions(
    first: np.ndarray, count: np.ndarray, n_filters: int, chunk: int, partition_filters: int
) -> list[Partition]:
    """Cut ``[0, n_filters)`` into partitions of whole layers near multiples of a size.

    Parameters
    ----------
    first, count : numpy.ndarray
        Per-layer first filter and filter count (contiguous ragged layout, in order).
    n_filters : int
        Size of the ``filter`` dimension.
    chunk : int
        Filters per on-disk chunk.
    partition_filters : int
        Target partition size; rounded up to a multiple of ``chunk``.

    Returns
    -------
    list of Partition
        Contiguous, covering ``[0, n_filters)`` and all layers; each cut is the layer start
        nearest to a multiple of the (rounded) size, so a layer larger than the size makes a
        larger partition, and cuts fall on chunk boundaries wherever a layer starts there.

    Examples
    --------
    >>> first, count = np.array([0, 6, 10, 16]), np.array([6, 4, 6, 2])
    >>> [(p.start, p.stop) for p in partitions(first, count, 18, 4, 8)]
    [(0, 6), (6, 16), (16, 18)]
    """
    first = np.asarray(first, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    n_layers = first.size
    size = max(int(chunk), -(-max(int(partition_filters), 1) // chunk) * chunk)
    cuts = [0]  # layer indices where a partition starts
    if n_layers:
        for target in range(size, int(n_filters), size):
            i = int(np.searchsorted(first, target))
            cand = [j for j in (i - 1, i) if 0 <= j < n_layers]
            best = min(cand, key=lambda j: (abs(int(first[j]) - target), j))
            if best > cuts[-1]:
                cuts.append(best)
    cuts = sorted(set(cuts))
    out = []
    for k, l0 in enumerate(cuts):
        l1 = cuts[k + 1] if k + 1 < len(cuts) else n_layers
        a = 0 if k == 0 else int(first[l0])
        b = int(first[l1]) if l1 < n_layers else int(n_filters)
        c0 = -(-a // chunk) * chunk
        c_last = -(-b // chunk) * chunk  # first chunk start at or after b
        if c0 < b:
            read_stop = min(c_last, int(n_filters))
        else:  # no chunk starts here: nothing to read beyond the layers
            c0 = read_stop = b
        out.append(Partition(k, l0, l1, a, b, c0, read_stop))
    return out


# --------------------------------------------------------------------------------------------
# tasks (run on the workers: open the file, read a range, return small accumulators)


@dataclass
class _Pass1:
    """Pass-1 result of one or more partitions: degeneracy rows and PCA sums per chunk."""

    rows: dict[int, dict[str, Any]]
    pca_by_chunk: dict[int, StreamingPCA]
    n_nonfinite: int


def _merge_pass1(*parts: _Pass1) -> _Pass1:
    rows: dict[int, dict[str, Any]] = {}
    pca: dict[int, StreamingPCA] = {}
    bad = 0
    for p in parts:
        rows.update(p.rows)
        pca.update(p.pca_by_chunk)
        bad += p.n_nonfinite
    return _Pass1(rows, pca, bad)


#: One re-entrant lock per process, held by a task for as long as it has the file open:
#: netCDF-C/HDF5 are not thread-safe, and serialising single calls was not enough (reads still
#: segfaulted now and then with two tasks' handles open in two threads, netCDF-C 4.10,
#: HDF5 2.2). Threads of one process therefore run the tasks one after the other; parallelism
#: comes from worker processes.
_NC_LOCK = threading.RLock()


class _LockedWeight(BackendArray):
    """``weight`` of an open ``netCDF4.Dataset``, read under :data:`_NC_LOCK`."""

    def __init__(self, var: Any) -> None:
        self._var = var
        self.shape = tuple(var.shape)
        self.dtype = np.dtype(var.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._raw
        )

    def _raw(self, key: tuple[Any, ...]) -> np.ndarray:
        with _NC_LOCK:
            return np.asarray(self._var[key])


@contextlib.contextmanager
def _open(path: str) -> Iterator[xr.Dataset]:
    """The dataset with its tables in memory and ``weight`` lazily read under a lock."""
    import netCDF4
    from xarray.backends import NetCDF4DataStore

    with _NC_LOCK:
        nc = netCDF4.Dataset(path)
        try:
            store = NetCDF4DataStore(nc)
            meta = xr.open_dataset(store).drop_dims("filter").load()
            nc.set_auto_maskandscale(False)
            var = nc.variables["weight"]
            attrs = {k: var.getncattr(k) for k in var.ncattrs()}
            dims = tuple(var.dimensions)
            lazy = indexing.LazilyIndexedArray(_LockedWeight(var))
            # CF decoding (fill values, scaling) exactly as xarray.open_dataset applies it
            weight = xr.conventions.decode_cf_variable("weight", xr.Variable(dims, lazy, attrs))
            yield meta.assign(weight=weight)
        finally:
            nc.close()


def _task_pass1(
    path: str, part: Partition, chunk: int, dp: DegeneracyParams, sp: ShiftsParams
) -> _Pass1:
    with _open(path) as ds, blas_limit(sp.blas_threads):
        deg = DegeneracyPass(ds, dp)
        passes = ShiftsPasses(ds, sp)
        first = deg.first[part.layer_start : part.layer_stop]
        count = deg.count[part.layer_start : part.layer_stop]
        pca: dict[int, StreamingPCA] = {}
        bad = 0

        def layer_slices() -> Iterator[tuple[int, np.ndarray]]:
            nonlocal bad
            stop = max(part.stop, part.read_stop)
            for start, arr in iter_chunks(ds, chunk, part.start, stop):
                if start % chunk == 0 and start >= part.chunk_start:
                    # the kernel of compute_stats: one accumulator per on-disk chunk
                    pca[start // chunk], n_bad = passes.pca_partial(start, arr)
                    bad += n_bad
                if start < part.stop:
                    yield start, arr[: part.stop - start]

        for li, w in iter_layers(layer_slices(), first, count):
            deg.layer(part.layer_start + li, w)
        rows = {part.layer_start + i: deg.rows[part.layer_start + i] for i in range(first.size)}
    return _Pass1(rows, pca, bad)


def _task_range(
    path: str, part: Partition, chunk: int, sp: ShiftsParams, pca: StreamingPCA
) -> CoefficientRange:
    rng = CoefficientRange()
    if part.chunk_start >= part.read_stop:
        return rng
    with _open(path) as ds, blas_limit(sp.blas_threads):
        passes = ShiftsPasses(ds, sp)
        passes.pca = pca
        for start, arr in iter_chunks(ds, chunk, part.chunk_start, part.read_stop):
            rng.merge(passes.range_partial(start, arr))  # the kernel of compute_stats
    return rng


def _merge_range(*parts: CoefficientRange) -> CoefficientRange:
    out = CoefficientRange()
    for p in parts:
        out.merge(p)
    return out


@dataclass
class _SlotCounts:
    """Histogram counts of the contiguous slot range ``[offset, offset + len(counts))``."""

    offset: int
    counts: np.ndarray | None  # (slots, components, bins) int64, or None when empty
    outside: np.ndarray | None = None  # (components, 2) clipped coefficients, None: none seen


def _merge_counts(*parts: _SlotCounts) -> _SlotCounts:
    outs = [p.outside for p in parts if p.outside is not None]
    outside = np.sum(outs, axis=0) if outs else None
    full = [(p.offset, p.counts) for p in parts if p.counts is not None]
    if not full:
        return _SlotCounts(0, None, outside)
    lo = min(off for off, _ in full)
    hi = max(off + c.shape[0] for off, c in full)
    out = np.zeros((hi - lo, *full[0][1].shape[1:]), np.int64)
    for off, c in full:
        out[off - lo : off - lo + c.shape[0]] += c
    return _SlotCounts(lo, out, outside)


def _task_hist(
    path: str,
    part: Partition,
    chunk: int,
    sp: ShiftsParams,
    pca: StreamingPCA,
    edges: np.ndarray,
) -> _SlotCounts:
    if part.chunk_start >= part.read_stop:
        return _SlotCounts(0, None, None)
    k, bins = sp.n_components, edges.size - 1
    counts: np.ndarray | None = None
    outside = np.zeros((k, 2), np.int64)
    lo = hi = 0
    with _open(path) as ds, blas_limit(sp.blas_threads):
        passes = ShiftsPasses(ds, sp)
        passes.pca = pca
        for start, arr in iter_chunks(ds, chunk, part.chunk_start, part.read_stop):
            s0, local, out = passes.hist_partial(edges, start, arr)  # the kernel of compute_stats
            outside += out
            if local is None:
                continue
            s1 = s0 + local.shape[0]
            if counts is None:
                lo, hi = s0, s1
                counts = np.zeros((hi - lo, k, bins), np.int64)
            elif s0 < lo or s1 > hi:
                nlo, nhi = min(lo, s0), max(hi, s1)
                grown = np.zeros((nhi - nlo, k, bins), np.int64)
                grown[lo - nlo : hi - nlo] = counts
                counts, lo, hi = grown, nlo, nhi
            counts[s0 - lo : s1 - lo] += local
    return _SlotCounts(lo, counts, outside)


# --------------------------------------------------------------------------------------------
# the driver


def _resolve(path: str | os.PathLike[str]) -> str:
    return str(Path(path).expanduser().resolve())


def compute_stats_dask(
    path: str | os.PathLike[str],
    degeneracy_params: DegeneracyParams | Mapping[str, Any] | None = None,
    shifts_params: ShiftsParams | Mapping[str, Any] | None = None,
    scheduler: Scheduler = None,
    partition_filters: int | None = None,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Degeneracy and shift statistics of a file, as dask tasks (three rounds).

    Parameters
    ----------
    path : path-like
        The dataset (``data/filters.nc``). Every task opens it by this path (made absolute), so
        on a cluster it must be visible at the same path on the driver and on all workers.
    degeneracy_params, shifts_params : params or dict, optional
        ``params.yaml: degeneracy`` and ``shifts`` (as
        :func:`filterdb.stats.compute.compute_stats`).
    scheduler : None, str or distributed.Client, optional
        See :func:`scheduler_context`: ``None``, ``"threads"``, ``"synchronous"``,
        ``"processes"``, ``"tcp://host:port"`` or a ``Client``.
    partition_filters : int, optional
        Target filters per task (see :func:`partitions`); default 32 on-disk chunks.

    Returns
    -------
    degeneracy, shifts : xarray.Dataset
        Bit-identical to :func:`filterdb.stats.compute.compute_stats` on the same file
        and parameters.

    Examples
    --------
    >>> deg, sh = compute_stats_dask("data/filters.nc", scheduler="threads")  # doctest: +SKIP
    """
    path = _resolve(path)
    dp = DegeneracyParams.coerce(degeneracy_params)
    sp = ShiftsParams.coerce(shifts_params)
    with xr.open_dataset(path) as ds:
        chunk = chunk_size_of(ds, sp.chunk_size if sp.chunk_size is not None else dp.chunk_size)
        first, count = layer_table(ds)
        n = int(ds["weight"].shape[0])
    size = partition_filters or DEFAULT_CHUNKS_PER_PARTITION * chunk
    parts = partitions(first, count, n, chunk, size)
    task1 = dask.delayed(_task_pass1, pure=True)
    task2 = dask.delayed(_task_range, pure=True)
    task3 = dask.delayed(_task_hist, pure=True)
    with scheduler_context(scheduler) as kw:
        (p1,) = dask.compute(
            _tree_reduce([task1(path, p, chunk, dp, sp) for p in parts], _merge_pass1), **kw
        )
        pca = StreamingPCA(sp.n_components)
        for k in sorted(p1.pca_by_chunk):  # file order: the sequential summation order
            pca.merge(p1.pca_by_chunk[k])
        pca.finalize()
        (rng,) = dask.compute(
            _tree_reduce([task2(path, p, chunk, sp, pca) for p in parts], _merge_range), **kw
        )
        rng = apply_sign_rule(pca, rng.finalize(sp.n_components), sp.sign_rule)
        edges = histogram_edges(rng.min_, rng.max_, sp.bins)
        (hist,) = dask.compute(
            _tree_reduce([task3(path, p, chunk, sp, pca, edges) for p in parts], _merge_counts),
            **kw,
        )
    with xr.open_dataset(path) as ds:
        deg = DegeneracyPass(ds, dp)
        for li, row in p1.rows.items():
            deg.rows[li] = row
        passes = ShiftsPasses(ds, sp)
        passes.pca, passes.n_nonfinite = pca, p1.n_nonfinite
        n_slots = passes.n_models * passes.n_depth_slots
        counts = np.zeros((n_slots, sp.n_components, sp.bins), np.int64)
        if hist.counts is not None:
            counts[hist.offset : hist.offset + hist.counts.shape[0]] = hist.counts
        counts = counts.reshape(passes.n_models, passes.n_depth_slots, sp.n_components, sp.bins)
        outside = (
            hist.outside if hist.outside is not None else np.zeros((sp.n_components, 2), np.int64)
        )
        return deg.result(), assemble_shifts(passes, rng, edges, counts, outside)


def write_stats_dask(
    path_in: str | os.PathLike[str],
    degeneracy_nc: str | os.PathLike[str],
    degeneracy_json: str | os.PathLike[str] | None,
    shifts_nc: str | os.PathLike[str],
    degeneracy_params: DegeneracyParams | Mapping[str, Any] | None = None,
    shifts_params: ShiftsParams | Mapping[str, Any] | None = None,
    scheduler: Scheduler = None,
    partition_filters: int | None = None,
) -> dict[str, Any]:
    """:func:`compute_stats_dask`, then write the results as
    :func:`filterdb.stats.write.write_stats`.

    Parameters
    ----------
    path_in : path-like
        ``data/filters.nc``.
    degeneracy_nc, degeneracy_json, shifts_nc : path-like
        Outputs (``stats/degeneracy.nc``, ``metrics/degeneracy.json`` or None,
        ``stats/shifts.nc``), committed as one set by
        :func:`filterdb.stats.write.write_results` (:func:`filterdb.atomic.atomic_paths`:
        the previous set or the new one, even if the process is killed while renaming).
    degeneracy_params, shifts_params, scheduler, partition_filters
        As :func:`compute_stats_dask`.

    Returns
    -------
    dict
        The degeneracy summary (also written to ``degeneracy_json`` when given).
    """
    deg, shifts = compute_stats_dask(
        path_in, degeneracy_params, shifts_params, scheduler, partition_filters
    )
    return write_results(deg, shifts, degeneracy_nc, degeneracy_json, shifts_nc)
