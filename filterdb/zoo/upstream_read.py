"""Read and check the original CNN Filter DB release (v1.0.0), the input of ``import-upstream``.

The upstream file (METHODS.md section 4; Zenodo doi:10.5281/zenodo.6371680) holds, in one HDF5
file:

- ``filters``: an HDF5 dataset of shape ``(N, 3, 3)`` (``(N, 9)`` is accepted too: the
  upstream README describes that shape), float64 in v1.0.0. Row ``i`` is filter id ``i``.
- ``meta``: a pandas table (``DataFrame.to_hdf``, PyTables, format fixed or table) with one row
  per conv layer, MultiIndex ``(model_id, conv_depth, conv_depth_norm, layer_id)`` and a column
  ``filter_ids`` ``"start:end"`` whose *end is inclusive*. Model-level columns (``model``,
  ``Name``, ``Task``, ``Datatype`` / ``Visual Category``, ``Training-Dataset``,
  ``Pretraining-Dataset``, ``Network``, ``Backbone``, ``(X, Y) filters``, ...) repeat on every
  row of a model. A ``meta`` stored as a byte array of CSV text (what upstream's own notebook
  reads) is accepted too.

:func:`read_meta` reads ``meta``, :func:`filters_node` finds ``filters``, :func:`parse_ranges`
checks the ``filter_ids``, :func:`column_of` finds the column of a role of
:data:`COLUMN_ROLES`, and :func:`weight_blocks` streams every layer's contiguous filter range in
blocks of at most ``chunk`` rows, so memory is bounded by the block, not by the 105 GB file. A
layer with NaN or Inf weights (or values beyond float32's range) stops the stream with
:class:`UpstreamWeightsError` naming the model, the layer and the count. A file without this
layout raises :class:`UpstreamFormatError`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from filterdb.errors import FilterDBError
from filterdb.zoo.labels import normalise_label

__all__ = [
    "COLUMN_ROLES",
    "FILTERS_KEYS",
    "INDEX_LEVELS",
    "UpstreamFormatError",
    "UpstreamWeightsError",
    "column_of",
    "filters_node",
    "format_error",
    "parse_ranges",
    "read_meta",
    "weight_blocks",
]

INDEX_LEVELS = ("model_id", "conv_depth", "conv_depth_norm", "layer_id")
FILTERS_KEYS = ("filters", "filter")  # v1.0.0 uses `filters`; the upstream README says `filter`


# Upstream column names (normalised) for each role; the first present wins.
COLUMN_ROLES: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "name": ("name",),
    "task": ("task",),
    "visual_category": ("visual-category", "datatype", "data-type", "visualcategory"),
    "training_dataset": ("training-dataset", "trainingdataset", "dataset"),
    "pretraining_dataset": ("pretraining-dataset", "pre-training-dataset", "pretrainingdataset"),
    "network": ("network", "architecture", "arch"),
    "backbone": ("backbone",),
    "training": ("training", "training-method"),
    "in_channels": ("in-channels", "in-channel", "input-channels", "c-in", "cin", "in"),
    "out_channels": ("out-channels", "out-channel", "output-channels", "c-out", "cout", "out"),
}


class UpstreamFormatError(FilterDBError, ValueError):
    """The file does not have the CNN Filter DB v1.0.0 layout (the message says what is wrong)."""


class UpstreamWeightsError(FilterDBError, ValueError):
    """A layer's weights hold NaN or Inf (the message names the file, model, layer and count)."""


def format_error(path: Path, message: str) -> UpstreamFormatError:
    """The :class:`UpstreamFormatError` for ``path``, saying what is wrong in ``message``."""
    return UpstreamFormatError(f"{path}: not a CNN Filter DB v1.0.0 file: {message}")


def read_meta(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read upstream's ``meta`` table, one row per layer, index levels as columns.

    Parameters
    ----------
    path : path-like
        The upstream HDF5 file.

    Returns
    -------
    pandas.DataFrame
        The table with ``model_id``, ``conv_depth``, ``conv_depth_norm``, ``layer_id`` and
        ``filter_ids`` as columns (plus every other upstream column).

    Raises
    ------
    UpstreamFormatError
        No ``meta``, an unreadable one, or missing index levels / columns.
    """
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "meta" not in f:
                raise format_error(path, f"no 'meta' table (top-level keys: {sorted(f.keys())})")
            node = f["meta"]
            csv_bytes = bytes(bytearray(node[...])) if isinstance(node, h5py.Dataset) else None
    except OSError as exc:
        raise format_error(path, f"cannot open as HDF5 ({exc})") from None
    try:
        if csv_bytes is not None:
            meta = pd.read_csv(io.StringIO(csv_bytes.decode("utf-8")))
        else:
            try:
                import tables  # noqa: F401  (pandas.read_hdf needs PyTables)
            except ImportError:  # pragma: no cover - a packaging problem, not a data problem
                raise ImportError(
                    "reading upstream's 'meta' table needs PyTables: pip install tables"
                ) from None
            meta = pd.read_hdf(path, "meta")
    except ImportError:
        raise
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise format_error(path, f"cannot read 'meta' as a pandas table ({why})") from None
    if not isinstance(meta, pd.DataFrame):
        raise format_error(path, f"'meta' is a {type(meta).__name__}, not a DataFrame")
    names = [n for n in meta.index.names if n is not None]
    if names:
        meta = meta.reset_index()
    else:
        meta = meta.reset_index(drop=True)
    missing = [c for c in (*INDEX_LEVELS, "filter_ids") if c not in meta.columns]
    if missing:
        raise format_error(
            path,
            f"'meta' lacks {missing} (expected MultiIndex {list(INDEX_LEVELS)} and a column "
            f"'filter_ids'; found index {names} and columns {[str(c) for c in meta.columns]})",
        )
    return meta


def filters_node(path: Path, f: h5py.File) -> h5py.Dataset:
    """The ``filters`` dataset of the open file ``f``, its shape and dtype checked."""
    for key in FILTERS_KEYS:
        if key in f and isinstance(f[key], h5py.Dataset):
            node = f[key]
            ok_shape = (node.ndim == 3 and node.shape[1:] == (3, 3)) or (
                node.ndim == 2 and node.shape[1] == 9
            )
            if not ok_shape:
                raise format_error(
                    path, f"'{key}' has shape {node.shape}, expected (N, 3, 3) or (N, 9)"
                )
            if node.dtype.kind != "f":
                raise format_error(path, f"'{key}' has dtype {node.dtype}, expected floating point")
            return node
    raise format_error(path, f"no 'filters' dataset (top-level keys: {sorted(f.keys())})")


def parse_ranges(path: Path, meta: pd.DataFrame, n_filters: int) -> tuple[np.ndarray, np.ndarray]:
    """``filter_ids`` "start:end" (inclusive end) -> (start, count); checks range and overlap."""
    text = meta["filter_ids"].astype(str).str.strip()
    parts = text.str.extract(r"^(\d+)\s*:\s*(\d+)$")
    bad = parts[0].isna().to_numpy()
    if bad.any():
        rows = np.flatnonzero(bad)[:5]
        raise format_error(
            path,
            f"{int(bad.sum())} filter_ids not of the form 'start:end', e.g. "
            + ", ".join(f"row {r}: {text.iloc[r]!r}" for r in rows),
        )
    start = parts[0].astype(np.int64).to_numpy()
    end = parts[1].astype(np.int64).to_numpy()  # inclusive
    rev = np.flatnonzero(end < start)
    if rev.size:
        r = rev[0]
        raise format_error(
            path, f"{rev.size} filter_ids with end < start, e.g. row {r}: {text.iloc[r]!r}"
        )
    out = np.flatnonzero(end >= n_filters)
    if out.size:
        r = out[0]
        raise format_error(
            path,
            f"{out.size} filter_ids beyond the {n_filters} filters, e.g. row {r} "
            f"(model_id {meta['model_id'].iloc[r]}, layer_id {meta['layer_id'].iloc[r]}): "
            f"{text.iloc[r]!r} (the end is inclusive)",
        )
    order = np.argsort(start, kind="stable")
    overlap = np.flatnonzero(start[order][1:] <= end[order][:-1])
    if overlap.size:
        a, b = order[overlap[0]], order[overlap[0] + 1]
        raise format_error(
            path,
            f"{overlap.size} overlapping filter_ids ranges, e.g. row {a} {text.iloc[a]!r} and "
            f"row {b} {text.iloc[b]!r} (the end is inclusive)",
        )
    return start, end - start + 1


def column_of(meta: pd.DataFrame, role: str) -> str | None:
    """The upstream column of a role of :data:`COLUMN_ROLES` (None when absent)."""
    by_norm = {normalise_label(c): c for c in meta.columns if isinstance(c, str)}
    for candidate in COLUMN_ROLES[role]:
        if candidate in by_norm:
            return by_norm[candidate]
    return None


def weight_blocks(
    path: Path,
    node: h5py.Dataset,
    starts: np.ndarray,
    counts: np.ndarray,
    labels: Sequence[tuple[str, str]],
    chunk: int,
    progress: bool,
) -> Iterator[np.ndarray]:
    """Each layer's range, in order, as float32 (k, 3, 3) blocks of at most ``chunk`` rows.

    ``labels`` are the (model id, layer name) of each range. A layer with a NaN, an Inf or a
    value beyond float32's range (Inf once cast) stops the stream with
    :class:`UpstreamWeightsError`, after the rest of that layer is read to count them all.
    """
    from tqdm.auto import tqdm

    bar = tqdm(
        total=int(counts.sum()),
        unit="filter",
        unit_scale=True,
        disable=not progress,
        desc="import-upstream",
    )

    def read(pos: int, stop: int) -> np.ndarray:
        with np.errstate(over="ignore"):  # beyond float32 -> inf, refused below
            return np.asarray(node[pos:stop], dtype=np.float32).reshape(-1, 3, 3)

    try:
        for s, n, (model, layer) in zip(starts.tolist(), counts.tolist(), labels, strict=True):
            pos, end = s, s + n
            while pos < end:
                stop = min(pos + chunk, end)
                block = read(pos, stop)
                if not np.isfinite(block).all():
                    bad = int((~np.isfinite(block)).sum())
                    for more in range(stop, end, chunk):  # count the whole layer, block by block
                        bad += int((~np.isfinite(read(more, min(more + chunk, end)))).sum())
                    raise UpstreamWeightsError(
                        f"{path}: model {model!r}, layer {layer!r}: {bad} of {n * 9} weight "
                        "values are NaN or Inf (or beyond float32's range); nothing was written"
                    )
                yield block
                bar.update(stop - pos)
                pos = stop
    finally:
        bar.close()
