"""Zarr export of a filterdb dataset (netCDF stays the release format).

The Zarr store holds the same variables, attributes and values as the netCDF file, with
``weight`` (and every other variable on ``filter``) chunked along ``filter`` like the netCDF
chunks, and consolidated metadata so opening it reads one small document. Object stores and
cloud-native readers (xarray, dask) read it chunk by chunk in parallel without HDF5.

Requires the optional ``zarr`` package.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import xarray as xr

from filterdb.dataset.reading import chunk_size_of

__all__ = ["export_zarr", "open_zarr"]

#: Zarr format written: v2 keeps consolidated metadata part of the format and is read by every
#: Zarr implementation; v3 needs zarr-python >= 3 and marks consolidation as unstable.
ZARR_FORMAT = 2

# netCDF/HDF5 storage details that do not apply to Zarr
_DROP_ENCODING = (
    "chunksizes",
    "contiguous",
    "zlib",
    "complevel",
    "shuffle",
    "fletcher32",
    "szip_coding",
    "szip_pixels_per_block",
    "blosc_shuffle",
    "compression",
    "compression_opts",
    "source",
    "original_shape",
    "preferred_chunks",
    "endian",
    "least_significant_digit",
    "significant_digits",
    "quantize_mode",
)


def export_zarr(
    nc_path: str | os.PathLike[str],
    zarr_path: str | os.PathLike[str],
    chunk_filters: int | None = None,
) -> Path:
    """Write a filterdb netCDF file as a Zarr store with consolidated metadata.

    Parameters
    ----------
    nc_path : path-like
        The dataset (``data/filters.nc``).
    zarr_path : path-like
        The Zarr directory to create. It is written beside as ``<name>.tmp`` and renamed into
        place when complete (an existing store is replaced).
    chunk_filters : int, optional
        Filters per Zarr chunk of the ``filter`` variables; default the netCDF chunking of
        ``weight``. Data are streamed chunk by chunk (memory of a few chunks).

    Returns
    -------
    Path
        ``zarr_path``.

    Examples
    --------
    >>> export_zarr("data/filters.nc", "data/filters.zarr")  # doctest: +SKIP
    PosixPath('data/filters.zarr')
    """
    final = Path(zarr_path)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    with xr.open_dataset(nc_path) as src:
        chunk = chunk_size_of(src, chunk_filters)
        n = int(src.sizes.get("filter", 0))
        ds = src.chunk({"filter": max(1, min(chunk, n))}) if n else src
        for var in ds.variables.values():
            for key in _DROP_ENCODING:
                var.encoding.pop(key, None)
        encoding = {}
        for name, var in ds.variables.items():
            if "filter" in var.dims and n:
                encoding[name] = {
                    "chunks": tuple(
                        max(1, min(chunk, n)) if d == "filter" else s
                        for d, s in zip(var.dims, var.shape, strict=True)
                    )
                }
        ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=ZARR_FORMAT, encoding=encoding)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def open_zarr(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a Zarr export lazily (dask arrays chunked as stored), decoded as the netCDF is.

    Parameters
    ----------
    path : path-like
        A store written by :func:`export_zarr`.

    Returns
    -------
    xarray.Dataset
        Same variables and attributes as the netCDF dataset; ``filterdb.dataset.tables.read_tables``
        and the ``ds.filterdb`` accessor work on it.
    """
    return xr.open_zarr(path, consolidated=True)
