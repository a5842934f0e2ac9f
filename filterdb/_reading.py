"""Chunked, sequential readers over the ``weight`` variable of the filterdb data contract.

Statistics never hold all filters in memory: they read ``weight(filter, ky, kx)`` in slices
aligned with its on-disk chunking (one sequential pass per call), and regroup those slices into
whole layers when a statistic needs a layer at once. Only the netCDF layout of
``docs/data-layout.md`` is used here; nothing from the extraction code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import xarray as xr

from filterdb._atomic import atomic_path, write_atomic_netcdf, write_atomic_text

__all__ = [
    "DEFAULT_CHUNK",
    "atomic_path",
    "chunk_size_of",
    "iter_chunks",
    "iter_layers",
    "layer_table",
    "tap",
    "write_atomic_netcdf",
    "write_atomic_text",
]

#: Filters per chunk when the ``weight`` variable does not say (the store's default).
DEFAULT_CHUNK = 65_536


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
            raise ValueError(f"chunk size must be >= 1, got {override}")
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
        raise ValueError("layer_first_filter and layer_filter_count differ in shape")
    if np.any(count < 0):
        raise ValueError("layer_filter_count has negative entries")
    if first.size and np.any(first[1:] < first[:-1] + count[:-1]):
        raise ValueError("layers are not in filter order or overlap (contiguous ragged layout)")
    n = ds["weight"].shape[0]
    if first.size and first[-1] + count[-1] > n:
        raise ValueError("a layer extends past the end of the filter dimension")
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
        raise ValueError(f"data ended before layer {li} was complete")
