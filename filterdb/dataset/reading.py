"""Chunked, sequential readers over the ``weight`` variable of the filterdb data contract.

Statistics never hold all filters in memory: they read ``weight(filter, ky, kx)`` in slices
aligned with its on-disk chunking (one sequential pass per call), and regroup those slices into
whole layers when a statistic needs a layer at once. Only the netCDF layout of
``docs/data-layout.md`` is used here; nothing from the extraction code.

:class:`FoldScales` gives the BatchNorm fold scale of every filter of a slice, so a statistic can
work on folded filters (``weight * scale``) slice by slice in the same fixed memory.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:  # not at run time: the accessor (registered on xarray's import) needs this
    import xarray as xr

from filterdb.errors import InputError

__all__ = [
    "DEFAULT_CHUNK",
    "FILTER_VIEWS",
    "FoldScales",
    "check_filter_view",
    "chunk_size_of",
    "default_workers",
    "iter_chunks",
    "iter_layers",
    "layer_table",
    "ordered_map",
    "tap",
]

#: Filters per chunk when the ``weight`` variable does not say (the store's default).
DEFAULT_CHUNK = 65_536

#: Values of the statistics' ``filters`` parameter: the conv's own weights, or BN-folded.
FILTER_VIEWS = ("raw", "folded")

#: Environment variable overriding the number of compute threads of the statistics.
THREADS_ENV = "FILTERDB_THREADS"

_T = TypeVar("_T")


def default_workers() -> int:
    """Compute threads for the statistics: ``$FILTERDB_THREADS``, else the usable cores.

    Returns
    -------
    int
        At least 1. The cores are those this process may run on (``os.sched_getaffinity``
        where available, else ``os.cpu_count()``).

    Raises
    ------
    InputError
        If ``FILTERDB_THREADS`` is set to something other than a positive integer.
    """
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise InputError(f"{THREADS_ENV} must be a positive integer, got {env!r}")
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def ordered_map(
    fn: Callable[..., _T], jobs: Iterable[tuple[Any, ...]], workers: int = 1
) -> Iterator[_T]:
    """``fn(*job)`` for every job, on ``workers`` threads, yielded in the order of ``jobs``.

    The jobs are drawn (and so the data read) in the calling thread, one after the other, in
    file order; only the computations run on the pool. At most ``2 * workers`` jobs are in
    flight, so memory stays at a few chunks whatever the data size. Because results come back
    in job order, a caller that folds them in that order gets the same floating-point result
    as a sequential loop, whatever the thread scheduling. numpy's array kernels and BLAS release
    the GIL, so the threads share the cores.

    Parameters
    ----------
    fn : callable
        The per-job computation; it must not touch shared state.
    jobs : iterable of tuple
        Positional arguments of each call.
    workers : int
        Threads; ``1`` runs everything in the calling thread (no pool).

    Yields
    ------
    object
        ``fn(*job)``, in job order. An exception of a job is raised when its result is due;
        jobs not yet started are then cancelled.

    Examples
    --------
    >>> list(ordered_map(pow, [(2, 3), (3, 2), (5, 1)], workers=2))
    [8, 9, 5]
    """
    if workers <= 1:
        for job in jobs:
            yield fn(*job)
        return
    pending: deque[Future[_T]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="filterdb-stats") as pool:
        try:
            for job in jobs:
                pending.append(pool.submit(fn, *job))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


def check_filter_view(value: object, section: str) -> str:
    """Return ``value`` if it is one of :data:`FILTER_VIEWS`, else raise a ``ValueError``.

    Parameters
    ----------
    value : object
        The ``filters`` parameter.
    section : str
        The params.yaml section, named in the error (``degeneracy``, ``shifts``).

    Examples
    --------
    >>> check_filter_view("folded", "shifts")
    'folded'
    >>> check_filter_view("fold", "shifts")
    Traceback (most recent call last):
    ...
    filterdb.errors.InputError: shifts.filters must be one of raw, folded; got 'fold'
    """
    if not isinstance(value, str) or value not in FILTER_VIEWS:
        kind = "" if isinstance(value, str) else f" ({type(value).__name__})"
        raise InputError(
            f"{section}.filters must be one of {', '.join(FILTER_VIEWS)}; got {value!r}{kind}"
        )
    return value


def chunk_size_of(ds: xr.Dataset, override: int | None = None) -> int:
    """Return the number of filters per read for ``ds["weight"]``.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset following the filterdb layout.
    override : int, optional
        Use this many filters per read instead of the on-disk chunking.

    Returns
    -------
    int
        ``override`` when given, else the ``filter`` chunk size from the variable's encoding
        (``chunksizes``), else the dask chunk size, else :data:`DEFAULT_CHUNK`.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"weight": (("filter", "ky", "kx"), np.zeros((4, 3, 3), "f4"))})
    >>> chunk_size_of(ds)
    65536
    >>> chunk_size_of(ds, 2)
    2
    """
    if override is not None:
        if int(override) < 1:
            raise InputError(f"chunk size must be >= 1, got {override}")
        return int(override)
    var = ds["weight"]
    sizes = var.encoding.get("chunksizes")
    if sizes:
        return max(int(sizes[0]), 1)
    if var.chunks:
        return max(int(var.chunks[0][0]), 1)
    return DEFAULT_CHUNK


def iter_chunks(
    ds: xr.Dataset, chunk: int, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_filter, weights)`` for consecutive chunk-aligned slices of ``weight``.

    Slices start at multiples of ``chunk`` (the first one may be shorter when ``start`` is not
    aligned), so every on-disk chunk is read exactly once, in file order.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset with ``weight(filter, ky, kx)``; lazily opened datasets are read slice by slice.
    chunk : int
        Filters per slice (use :func:`chunk_size_of`).
    start, stop : int, optional
        Filter range to read (default: all filters).

    Yields
    ------
    tuple of (int, numpy.ndarray)
        First filter index of the slice and its ``(n, 3, 3)`` weights (as stored, float32).
    """
    var = ds["weight"].variable
    n = var.shape[0]
    stop = n if stop is None else min(int(stop), n)
    pos = int(start)
    while pos < stop:
        end = min((pos // chunk + 1) * chunk, stop)
        yield pos, np.asarray(var[pos:end].values)
        pos = end


def tap(
    chunks: Iterable[tuple[int, np.ndarray]], fn: Callable[[int, np.ndarray], None]
) -> Iterator[tuple[int, np.ndarray]]:
    """Pass chunks through unchanged, calling ``fn(first_filter, weights)`` on each first.

    This lets one sequential read feed both a per-chunk accumulator and a per-layer statistic.
    """
    for start, arr in chunks:
        fn(start, arr)
        yield start, arr


def layer_table(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(layer_first_filter, layer_filter_count)`` as int64 arrays.

    Raises
    ------
    ValueError
        If the layers are not contiguous, in order and non-overlapping (the layout's contiguous
        ragged array), which the per-layer reader relies on.
    """
    first = np.asarray(ds["layer_first_filter"].values, dtype=np.int64)
    count = np.asarray(ds["layer_filter_count"].values, dtype=np.int64)
    if first.shape != count.shape:
        raise InputError("layer_first_filter and layer_filter_count differ in shape")
    if np.any(count < 0):
        raise InputError("layer_filter_count has negative entries")
    if first.size and np.any(first[1:] < first[:-1] + count[:-1]):
        raise InputError("layers are not in filter order or overlap (contiguous ragged layout)")
    n = ds["weight"].shape[0]
    if first.size and first[-1] + count[-1] > n:
        raise InputError("a layer extends past the end of the filter dimension")
    return first, count


def iter_layers(
    chunks: Iterable[tuple[int, np.ndarray]], first: np.ndarray, count: np.ndarray
) -> Iterator[tuple[int, np.ndarray]]:
    """Regroup chunk-aligned slices into whole layers.

    Parameters
    ----------
    chunks : iterable of (int, numpy.ndarray)
        Consecutive slices covering the filters, as from :func:`iter_chunks`.
    first, count : numpy.ndarray
        Per-layer first filter and filter count (see :func:`layer_table`), in filter order.

    Yields
    ------
    tuple of (int, numpy.ndarray)
        Layer index and its ``(n, 3, 3)`` weights. Layers inside one chunk are views into it;
        a layer spanning chunks is concatenated, so peak memory is about one chunk plus the
        largest layer.
    """
    n_layers = len(first)
    li = 0
    while li < n_layers and count[li] == 0:
        yield li, np.empty((0, 3, 3), np.float32)
        li += 1
    pieces: list[np.ndarray] = []
    for start, arr in chunks:
        end = start + arr.shape[0]
        while li < n_layers:
            f0, f1 = int(first[li]), int(first[li] + count[li])
            if f1 <= start:  # finished before this chunk (cannot happen in order)
                li += 1
                continue
            if f0 >= end:
                break
            a, b = max(f0, start) - start, min(f1, end) - start
            pieces.append(arr[a:b])
            if f1 <= end:
                out = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
                pieces = []
                yield li, out
                li += 1
                while li < n_layers and count[li] == 0:
                    yield li, np.empty((0, 3, 3), np.float32)
                    li += 1
            else:
                break
    if li < n_layers:
        raise InputError(f"data ended before layer {li} was complete")


class FoldScales:
    """BatchNorm fold scale of every filter, for any slice ``[start, start + n)`` of filters.

    Filter ``f`` of layer ``l`` (``k = f - layer_first_filter[l]``) is output channel
    ``k // (in_channels[l] / groups[l])``; its scale is
    ``fold_scale[layer_first_channel[l] + k // (in_channels[l] / groups[l])]``. Only the
    per-layer arrays and ``fold_scale`` (one float32 per output channel) are held in memory; the
    layer of each filter (the values of ``filter_layer``) is found by a vectorised search in
    ``layer_first_filter``, so no per-filter variable is read. A dataset without ``fold_scale``
    (schema version 1) has scale 1 everywhere, and filters outside every layer get 1.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the filterdb layout.

    Attributes
    ----------
    trivial : bool
        Every scale is exactly 1 (folding changes nothing; :meth:`apply` returns its input).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({
    ...     "weight": (("filter", "ky", "kx"), np.ones((6, 3, 3), "f4")),
    ...     "layer_first_filter": ("layer", np.array([0, 4])),
    ...     "layer_filter_count": ("layer", np.array([4, 2])),
    ...     "in_channels": ("layer", np.array([2, 1], "i4")),
    ...     "out_channels": ("layer", np.array([2, 2], "i4")),
    ...     "groups": ("layer", np.array([1, 1], "i4")),
    ...     "layer_first_channel": ("layer", np.array([0, 2])),
    ...     "fold_scale": ("channel", np.array([1, 2, 3, -4], "f4")),
    ... })
    >>> FoldScales(ds).for_chunk(1, 5).tolist()
    [1.0, 2.0, 2.0, 3.0, -4.0]
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self.first, self.count = layer_table(ds)
        n_layers = self.first.size
        out_ch = np.asarray(ds["out_channels"].values, dtype=np.int64)
        in_ch = np.asarray(ds["in_channels"].values, dtype=np.int64)
        groups = np.asarray(ds["groups"].values, dtype=np.int64)
        if "fold_scale" in ds.variables:
            self.scale = np.asarray(ds["fold_scale"].values, dtype=np.float32)
            self.first_channel = np.asarray(ds["layer_first_channel"].values, dtype=np.int64)
        else:  # schema version 1: no fold, scale 1
            self.scale = np.ones(int(out_ch.sum()), np.float32)
            self.first_channel = np.concatenate([[0], np.cumsum(out_ch)[:-1]])[:n_layers]
        self.per_group = np.where(groups > 0, in_ch // np.maximum(groups, 1), 0)
        ends = self.first_channel + out_ch
        if n_layers and (
            np.any(self.per_group <= 0)
            or np.any(self.count != out_ch * self.per_group)
            or np.any(self.first_channel < 0)
            or int(ends.max()) > self.scale.size
        ):
            raise InputError(
                "fold scales: layer_filter_count, out_channels, in_channels/groups and "
                "layer_first_channel do not match fold_scale"
            )
        self.trivial = bool(np.all(self.scale == 1.0))

    def for_chunk(self, start: int, n: int) -> np.ndarray:
        """The ``(n,)`` float32 fold scales of filters ``start .. start + n - 1``."""
        out = np.ones(max(int(n), 0), np.float32)
        if self.trivial or n <= 0 or not self.first.size:
            return out
        idx = np.arange(int(start), int(start) + int(n), dtype=np.int64)
        layer = np.searchsorted(self.first, idx, side="right") - 1
        safe = np.maximum(layer, 0)
        local = idx - self.first[safe]
        inside = (layer >= 0) & (local < self.count[safe])
        channel = self.first_channel[safe] + local // np.maximum(self.per_group[safe], 1)
        out[inside] = self.scale[channel[inside]]
        return out

    def apply(self, start: int, w: np.ndarray) -> np.ndarray:
        """Folded filters ``w * scale`` (float32) of the slice beginning at filter ``start``.

        ``w`` is ``(n, 3, 3)`` or ``(n, 9)`` as read; returned unchanged (not copied) when
        every scale is 1, else a new array of the same shape.
        """
        arr = np.asarray(w)
        if self.trivial or arr.shape[0] == 0:
            return arr
        scale = self.for_chunk(start, arr.shape[0])
        return arr * scale.reshape((-1,) + (1,) * (arr.ndim - 1))
