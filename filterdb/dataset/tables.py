"""The model, layer and kernel-count tables and the BatchNorm fold table of a dataset.

Readers of an open dataset (xarray or netCDF4) in the layout of ``docs/data-layout.md``; they
import nothing from the writer. :class:`StoreError` names a dataset whose tables are
inconsistent (the writer raises it too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from filterdb.dataset.contract import (
    CATEGORICAL,
    LAYER_INT32,
    LAYER_INT64,
    MODEL_FLOAT,
    MODEL_INT,
    MODEL_TEXT,
)
from filterdb.dataset.flags import decode_flags
from filterdb.errors import FilterDBError

__all__ = ["StoreError", "read_fold", "read_tables"]


class StoreError(FilterDBError, ValueError):
    """Inputs that cannot make a valid dataset (duplicate model ids, inconsistent tables)."""


def read_tables(ds: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Model, layer and kernel-count tables of an open dataset (xarray or netCDF4).

    Parameters
    ----------
    ds : xarray.Dataset or netCDF4.Dataset
        A dataset in filterdb's layout.

    Returns
    -------
    models : pandas.DataFrame
        One row per model, indexed by ``model`` id; categories decoded to strings.
    layers : pandas.DataFrame
        One row per layer (index ``layer``), with the model id in column ``model``.
    kernel_counts : pandas.DataFrame
        Models x kernel shapes.
    """

    def var(name: str) -> tuple[np.ndarray, Mapping[str, Any]]:
        v = ds.variables[name]
        attrs = v.attrs if hasattr(v, "attrs") else {k: v.getncattr(k) for k in v.ncattrs()}
        data = v.values if hasattr(v, "values") else v[:]
        return np.asarray(data), attrs

    ids = [str(x) for x in var("model")[0]]
    models = pd.DataFrame(index=pd.Index(ids, name="model"))
    for name in CATEGORICAL:
        if name not in ds.variables:  # files of schema version 1
            models[name] = "unknown"
            continue
        data, attrs = var(name)
        models[name] = decode_flags(data, attrs) if len(ids) else np.array([], dtype=object)
    for name in MODEL_TEXT:
        # files of schema version 1 have only `weights`
        if name in ds.variables:
            models[name] = [str(x) for x in var(name)[0]]
        else:
            models[name] = "none"
    for name in MODEL_INT:
        models[name] = var(name)[0].astype(np.int64)
    for name in MODEL_FLOAT:
        if name in ds.variables:
            models[name] = var(name)[0].astype(np.float64)
        else:
            models[name] = np.nan

    n_layers = len(var("layer_model")[0])
    layers = pd.DataFrame(index=pd.RangeIndex(n_layers, name="layer"))
    layer_model = var("layer_model")[0].astype(np.int32)
    layers["layer_model"] = layer_model
    layers["model"] = np.array(ids, dtype=object)[layer_model] if n_layers else []
    layers["layer_name"] = [str(x) for x in var("layer_name")[0]]
    for name in LAYER_INT64:
        layers[name] = var(name)[0].astype(np.int64)
    for name in LAYER_INT32:
        if name != "layer_model":
            layers[name] = var(name)[0].astype(np.int32)
    layers["conv_depth_norm"] = var("conv_depth_norm")[0].astype(np.float64)
    data, attrs = var("depth_method")
    layers["depth_method"] = decode_flags(data, attrs) if n_layers else np.array([], dtype=object)
    first_channel, bn_follows, _ = read_fold(ds, scales=False)
    layers["layer_first_channel"] = first_channel
    layers["bn_follows"] = bn_follows

    shapes = [str(x) for x in var("kernel_shape")[0]]
    counts = var("kernel_count")[0].reshape(len(ids), len(shapes)).astype(np.int64)
    kernel_counts = pd.DataFrame(
        counts, index=models.index, columns=pd.Index(shapes, name="kernel_shape")
    )
    return models, layers, kernel_counts


def read_fold(ds: Any, scales: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The BatchNorm fold table of an open dataset (xarray or netCDF4).

    Files without it (schema version 1, or written before the fold existed) read as "no
    BatchNorm follows, scale 1": channels numbered layer after layer.

    Parameters
    ----------
    ds : xarray.Dataset or netCDF4.Dataset
        A dataset in filterdb's layout.
    scales : bool
        Also read ``fold_scale`` (one float32 per output channel).

    Returns
    -------
    layer_first_channel : numpy.ndarray
        ``(L,)`` int64.
    bn_follows : numpy.ndarray
        ``(L,)`` bool.
    fold_scale : numpy.ndarray or None
        ``(C,)`` float32 with ``C = sum(out_channels)``; ``None`` when ``scales`` is false.

    Raises
    ------
    StoreError
        The channels are not contiguous, layer after layer, or do not add up to ``channel``.
    """

    def values(name: str) -> np.ndarray:
        v = ds.variables[name]
        return np.asarray(v.values if hasattr(v, "values") else v[:])

    out_channels = values("out_channels").astype(np.int64)
    expected = np.concatenate([[0], np.cumsum(out_channels)[:-1]]).astype(np.int64)
    n_channels = int(out_channels.sum())
    if "fold_scale" not in ds.variables:
        scale = np.ones(n_channels, np.float32) if scales else None
        return expected[: out_channels.size], np.zeros(out_channels.size, bool), scale
    first = values("layer_first_channel").astype(np.int64)
    v = ds.variables["bn_follows"]
    attrs = v.attrs if hasattr(v, "attrs") else {k: v.getncattr(k) for k in v.ncattrs()}
    codes = values("bn_follows")
    follows = np.zeros(codes.size, bool)
    if codes.size:
        follows = (decode_flags(codes, attrs) == "yes").astype(bool)
    n_stored = int(ds.variables["fold_scale"].shape[0])
    if not np.array_equal(first, expected[: out_channels.size]) or n_stored != n_channels:
        raise StoreError(
            "layer_first_channel/out_channels do not number the channel dimension contiguously "
            f"({n_stored} channels stored, out_channels sum to {n_channels})"
        )
    scale = values("fold_scale").astype(np.float32, copy=False) if scales else None
    return first, follows, scale
