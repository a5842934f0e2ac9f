"""The writer: tables and a stream of filter blocks -> one CF netCDF file; one model -> a shard.

The layout is the data contract in ``docs/data-layout.md`` (contiguous ragged layout, coded
categories). Files are written deterministically (same inputs, same bytes) and atomically (a temp
file in the target folder, then a rename), and the filters are streamed: one block of filters is
held in memory at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pandas as pd

from filterdb.atomic import atomic_path
from filterdb.dataset.contract import (
    BN_FOLLOWS,
    CATEGORICAL,
    DEPTH_METHODS,
    LAYER_INT32,
    LAYER_INT64,
    LICENSE_NOTE,
    MODEL_FLOAT,
    MODEL_INT,
    MODEL_TEXT,
    SCHEMA_VERSION,
)
from filterdb.dataset.flags import encode_flags
from filterdb.dataset.tables import StoreError
from filterdb.params import section_params
from filterdb.version import __version__

__all__ = ["LAYER_COLUMNS", "StoreParams", "write_dataset", "write_model"]

_LONG_NAMES = {
    "weight": ("3x3 convolution filter weight (float32, as stored in the model)", "1"),
    "filter_layer": ("index of the filter's layer along the layer dimension", "1"),
    "layer_model": ("index of the layer's model along the model dimension", "1"),
    "layer_name": ("module path of the conv layer", ""),
    "layer_first_filter": ("index of the layer's first filter", "1"),
    "layer_filter_count": ("number of filters of the layer", "1"),
    "conv_depth": ("rank of the layer's depth among the model's conv depths", "1"),
    "conv_depth_norm": ("conv_depth / (number of conv depths - 1)", "1"),
    "in_channels": ("input channels of the conv", "1"),
    "out_channels": ("output channels of the conv", "1"),
    "groups": ("groups of the conv", "1"),
    "stride_y": ("vertical stride", "1"),
    "stride_x": ("horizontal stride", "1"),
    "dilation_y": ("vertical dilation", "1"),
    "dilation_x": ("horizontal dilation", "1"),
    "depth_method": ("how conv_depth was determined", ""),
    "layer_first_channel": ("index of the layer's first output channel along channel", "1"),
    "bn_follows": ("whether a BatchNorm directly follows the conv (fold_scale from it)", ""),
    "fold_scale": (
        "BatchNorm fold scale gamma / sqrt(running_var + eps) of the output channel "
        "(1 where no BatchNorm follows)",
        "1",
    ),
    "model": ("model id", ""),
    "weights": ("provenance of the weights", ""),
    "package": ("registry package and the file inside it (name==version:file), or none", ""),
    "upstream": ("the upstream model the weights' package names, or none", ""),
    "n_train_samples": ("number of training samples; NaN when unknown", "1"),
    "n_parameters": ("number of parameters of the model", "1"),
    "accuracy": ("held-out accuracy (fraction); NaN when unknown", "1"),
    "n_filters_3x3": ("number of 3x3 filters of the model", "1"),
    "total_filters": ("number of 2-D conv filters except 1x1", "1"),
    "share_3x3": ("n_filters_3x3 / total_filters", "1"),
    "model_first_layer": ("index of the model's first layer", "1"),
    "model_layer_count": ("number of the model's layers with 3x3 filters", "1"),
    "kernel_count": ("number of 2-D conv filters of each kernel shape", "1"),
    "kernel_shape": ("2-D kernel shape, rows x columns", ""),
    **{c: (f"meta-parameter: {c.replace('_', ' ')}", "") for c in CATEGORICAL},
}


@dataclass(frozen=True)
class StoreParams:
    """How the ``weight`` variable is laid out on disk.

    Attributes
    ----------
    chunk_filters : int
        Filters per HDF5 chunk.
    compression : str or None
        ``None`` (fastest reads) or ``"zlib"`` (with byte shuffle).
    complevel : int
        zlib level when compressing.
    """

    chunk_filters: int = 65536
    compression: str | None = None
    complevel: int = 1

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> StoreParams:
        """Build from the ``store:`` section of params.yaml (unknown keys are errors)."""
        return section_params(cls, d, "store")


#: Columns of the layer table :func:`write_dataset` takes, in order.
LAYER_COLUMNS = [
    "layer_name",
    *LAYER_INT64,
    *LAYER_INT32,
    "conv_depth_norm",
    "depth_method",
    "layer_first_channel",
    "bn_follows",
]


def _set_attrs(var: Any, name: str) -> None:
    long_name, units = _LONG_NAMES[name]
    var.long_name = long_name
    if units:
        var.units = units


def _put(nc: Any, name: str, dtype: Any, dims: tuple[str, ...], values: Any, **kwargs: Any) -> Any:
    """Create variable ``name`` with its CF attributes and write ``values`` (if any)."""
    var = nc.createVariable(name, dtype, dims, **kwargs)
    _set_attrs(var, name)
    if dtype is str:
        for i, x in enumerate(values):
            var[i] = str(x)
    elif np.size(values):
        var[:] = np.asarray(values, dtype=np.dtype(dtype))
    return var


def write_dataset(
    path: str | os.PathLike[str],
    models: pd.DataFrame,
    layers: pd.DataFrame,
    kernel_counts: pd.DataFrame,
    weight_chunks: Iterable[np.ndarray],
    params: StoreParams,
    history: str,
    attrs: Mapping[str, str] | None = None,
    fold_scale: np.ndarray | None = None,
) -> None:
    """Write one file in the layout from tables and a stream of filter blocks.

    Parameters
    ----------
    path : path-like
        The file to write, atomically.
    models : pandas.DataFrame
        The model table (index: model ids), columns as
        :func:`filterdb.dataset.tables.read_tables` returns them.
    layers : pandas.DataFrame
        The layer table, in dataset order.
    kernel_counts : pandas.DataFrame
        Models x kernel shapes.
    weight_chunks : iterable of numpy.ndarray
        Consecutive ``(k, 3, 3)`` float32 blocks, in layer order; only one is held at a time.
    params : StoreParams
        On-disk layout.
    history : str
        The ``history`` attribute (no wall-clock time, for reproducible bytes).
    attrs : mapping, optional
        Global attributes that override the defaults (e.g. ``source`` and ``comment`` of an
        import).
    fold_scale : numpy.ndarray, optional
        ``(sum(out_channels),)`` float32 BatchNorm fold scales, layer after layer (default:
        ones). The layer table's optional columns ``layer_first_channel`` (default: the running
        sum of ``out_channels``) and ``bn_follows`` (default: False) go with it.

    Raises
    ------
    StoreError
        The blocks do not add up to the layer table, the layer table is not contiguous, or the
        fold scales do not match ``out_channels``.
    filterdb.atomic.DiskFullError
        The file system ran out of space (netCDF-C reports it as ``NetCDF: HDF error``;
        :func:`filterdb.atomic.atomic_path` names ``path`` instead); nothing is left behind.
    """
    path = Path(path)
    n_models, n_layers = len(models), len(layers)
    n_filters = int(layers["layer_filter_count"].sum()) if n_layers else 0
    first_channel, bn_follows, fold_scale = _fold_columns(layers, fold_scale)
    n_channels = int(fold_scale.size)
    with atomic_path(path) as tmp:
        nc = netCDF4.Dataset(tmp, "w", format="NETCDF4")
        try:
            # sizes of 0 would make netCDF dimensions unlimited; these are fixed by design
            sizes = (
                ("model", n_models),
                ("layer", n_layers),
                ("filter", n_filters),
                ("channel", n_channels),
            )
            for dim, size in sizes:
                nc.createDimension(dim, size if size else None)
            nc.createDimension("ky", 3)
            nc.createDimension("kx", 3)
            nc.createDimension("kernel_shape", kernel_counts.shape[1] or None)

            chunk = max(1, min(params.chunk_filters, n_filters or 1))
            comp = {"compression": params.compression, "shuffle": params.compression is not None}
            if params.compression:
                comp["complevel"] = params.complevel
            # every element is written below: no fill-value pre-pass over the chunks
            w = nc.createVariable(
                "weight",
                "f4",
                ("filter", "ky", "kx"),
                chunksizes=(chunk, 3, 3),
                fill_value=False,
                **comp,
            )
            _set_attrs(w, "weight")
            w.coordinates = "filter_layer"
            fl = nc.createVariable(
                "filter_layer", "i4", ("filter",), chunksizes=(chunk,), fill_value=False, **comp
            )
            _set_attrs(fl, "filter_layer")

            # models
            v = _put(nc, "model", str, ("model",), models.index)
            v.cf_role = "timeseries_id"  # one feature per model
            for name in CATEGORICAL:
                codes, meanings = encode_flags([str(x) for x in models[name]])
                v = _put(nc, name, "i2", ("model",), codes)
                v.flag_values = np.arange(len(meanings), dtype=np.int16)
                v.flag_meanings = " ".join(meanings)
            for name in MODEL_TEXT:
                _put(nc, name, str, ("model",), models[name])
            for name in MODEL_INT:
                _put(nc, name, "i8", ("model",), models[name])
            for name in MODEL_FLOAT:
                _put(nc, name, "f8", ("model",), models[name], fill_value=np.nan)
            _put(nc, "kernel_shape", str, ("kernel_shape",), kernel_counts.columns)
            _put(nc, "kernel_count", "i8", ("model", "kernel_shape"), kernel_counts.to_numpy())

            # layers
            _put(nc, "layer_name", str, ("layer",), layers["layer_name"])
            for name in LAYER_INT64:
                _put(nc, name, "i8", ("layer",), layers[name])
            nc.variables["layer_filter_count"].sample_dimension = "filter"
            for name in LAYER_INT32:
                _put(nc, name, "i4", ("layer",), layers[name])
            _put(nc, "conv_depth_norm", "f8", ("layer",), layers["conv_depth_norm"])
            codes = [DEPTH_METHODS.index(m) for m in layers["depth_method"]]
            v = _put(nc, "depth_method", "i1", ("layer",), codes)
            v.flag_values = np.arange(len(DEPTH_METHODS), dtype=np.int8)
            v.flag_meanings = " ".join(DEPTH_METHODS)

            # BatchNorm fold: one scale per output channel, ragged over layers
            _put(nc, "layer_first_channel", "i8", ("layer",), first_channel)
            v = _put(nc, "bn_follows", "i1", ("layer",), bn_follows.astype(np.int8))
            v.flag_values = np.arange(len(BN_FOLLOWS), dtype=np.int8)
            v.flag_meanings = " ".join(BN_FOLLOWS)
            nc.variables["out_channels"].sample_dimension = "channel"
            _put(nc, "fold_scale", "f4", ("channel",), fold_scale)

            nc.setncatts(
                {
                    "Conventions": "CF-1.10",
                    "title": "filterdb: trained 3x3 convolution filters",
                    "institution": "filterdb project",
                    "source": "filters extracted from torch models by filterdb",
                    "license": LICENSE_NOTE,
                    "references": "Gavrikov & Keuper, CNN Filter DB: An Empirical Investigation of "
                    "Trained Convolutional Filters, CVPR 2022, arXiv:2203.15331",
                    "history": history,
                    "comment": "weights are float32 exactly as stored in each model; no BatchNorm "
                    "folding. Filter k of a layer is output channel k // (in_channels/groups), "
                    "input channel k % (in_channels/groups). The BatchNorm-folded filter is "
                    "weight[k] * fold_scale[layer_first_channel + k // (in_channels/groups)].",
                    "featureType": "timeSeries",
                    "filterdb_schema_version": np.int32(SCHEMA_VERSION),
                    "filterdb_version": __version__,
                    **dict(attrs or {}),
                    "coordinates": " ".join(
                        [
                            "model",
                            *MODEL_TEXT,
                            *CATEGORICAL,
                            *MODEL_INT,
                            *MODEL_FLOAT,
                            "layer_name",
                            *LAYER_INT64,
                            *LAYER_INT32,
                            "conv_depth_norm",
                            "depth_method",
                            "layer_first_channel",
                            "bn_follows",
                            "kernel_shape",
                        ]
                    ),
                }
            )

            # filters, streamed
            starts = (
                layers["layer_first_filter"].to_numpy(np.int64)
                if n_layers
                else np.zeros(0, np.int64)
            )
            counts = (
                layers["layer_filter_count"].to_numpy(np.int64)
                if n_layers
                else np.zeros(0, np.int64)
            )
            pos = 0
            for block in _whole_chunks(weight_chunks, chunk):
                k = block.shape[0]
                if pos + k > n_filters:
                    raise StoreError(f"more filters than the layer table's {n_filters}")
                w[pos : pos + k] = block
                # per-block layer index: memory stays bounded by the block, not by N
                fl[pos : pos + k] = (
                    np.searchsorted(starts, np.arange(pos, pos + k), side="right") - 1
                ).astype(np.int32)
                pos += k
            if pos != n_filters:
                raise StoreError(f"wrote {pos} filters, the layer table says {n_filters}")
            if n_layers and not np.array_equal(
                starts, np.concatenate([[0], np.cumsum(counts)[:-1]])
            ):
                raise StoreError("layer_first_filter is not contiguous")
        finally:
            nc.close()


def _fold_columns(
    layers: pd.DataFrame, fold_scale: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``layer_first_channel``, ``bn_follows`` and ``fold_scale`` to write, defaults filled."""
    n_layers = len(layers)
    out_channels = layers["out_channels"].to_numpy(np.int64) if n_layers else np.zeros(0, np.int64)
    n_channels = int(out_channels.sum())
    expected = np.concatenate([[0], np.cumsum(out_channels)[:-1]]).astype(np.int64)[:n_layers]
    if "layer_first_channel" in layers and n_layers:
        first = layers["layer_first_channel"].to_numpy(np.int64)
        if not np.array_equal(first, expected):
            raise StoreError("layer_first_channel is not the running sum of out_channels")
    if "bn_follows" in layers and n_layers:
        follows = layers["bn_follows"].to_numpy(bool)
    else:
        follows = np.zeros(n_layers, bool)
    if fold_scale is None:
        scale = np.ones(n_channels, np.float32)
    else:
        scale = np.asarray(fold_scale)
        if scale.dtype != np.float32 or scale.shape != (n_channels,):
            raise StoreError(
                f"fold_scale of dtype {scale.dtype} shape {scale.shape}; expected float32 "
                f"({n_channels},) (the sum of out_channels)"
            )
        if not np.isfinite(scale).all():
            raise StoreError(f"fold_scale holds {int((~np.isfinite(scale)).sum())} NaN/Inf")
    return expected, follows, scale


def _whole_chunks(blocks: Iterable[np.ndarray], chunk: int) -> Iterator[np.ndarray]:
    """Re-cut a stream of (k, 3, 3) blocks into pieces that cover whole on-disk chunks.

    Writing whole chunks spares HDF5 a read-modify-write of partly written chunks; at most one
    chunk is buffered.
    """
    buf = np.empty((chunk, 3, 3), dtype=np.float32)
    fill = 0
    for block in blocks:
        if block.dtype != np.float32 or block.shape[1:] != (3, 3):
            raise StoreError(f"weight block of dtype {block.dtype} shape {block.shape}")
        start = 0
        if fill:  # top up the partial chunk first
            take = min(chunk - fill, block.shape[0])
            buf[fill : fill + take] = block[:take]
            fill += take
            start = take
            if fill < chunk:
                continue
            yield buf
            fill = 0
        whole = (block.shape[0] - start) // chunk * chunk
        if whole:
            yield block[start : start + whole]
        rest = block.shape[0] - start - whole
        if rest:
            buf[:rest] = block[start + whole :]
            fill = rest
    if fill:
        yield buf[:fill]


def _model_row(mf: Any, meta: Mapping[str, Any], source: str, weights: str) -> dict[str, Any]:
    row: dict[str, Any] = {c: str(meta.get(c, "unknown")) for c in CATEGORICAL}
    row["source"] = source
    row["weights"] = weights
    row["package"] = str(meta.get("package") or "none")
    row["upstream"] = str(meta.get("upstream") or "none")
    n_train = meta.get("n_train_samples")
    row["n_train_samples"] = float(n_train) if n_train is not None else np.nan
    row["n_parameters"] = mf.n_parameters
    row["accuracy"] = float(meta["accuracy"]) if meta.get("accuracy") is not None else np.nan
    row["n_filters_3x3"] = mf.n_filters_3x3
    row["total_filters"] = mf.total_filters
    row["share_3x3"] = mf.share_3x3
    row["model_first_layer"] = 0
    row["model_layer_count"] = len(mf.layers)
    return row


def write_model(
    path: str | os.PathLike[str],
    mf: Any,
    meta: Mapping[str, Any],
    source: str,
    weights: str,
    params: StoreParams | None = None,
) -> Path:
    """Write one model's extracted filters as a shard (the same layout, with one model).

    Parameters
    ----------
    path : path-like
        The shard file to write (atomically).
    mf : filterdb.extract.filters.ModelFilters
        The extracted model.
    meta : mapping
        Meta-parameters (the zoo entry's ``meta``, plus ``accuracy`` where known).
    source, weights : str
        The source name and weight provenance.
    params : StoreParams, optional
        On-disk layout.

    Returns
    -------
    Path
    """
    params = params or StoreParams()
    models = pd.DataFrame(
        [_model_row(mf, meta, source, weights)], index=pd.Index([mf.model_id], name="model")
    )
    rows, first, channel = [], 0, 0
    scales: list[np.ndarray] = []
    for layer in mf.layers:
        n = int(layer.weight.shape[0])
        rows.append(
            {
                "layer_model": 0,
                "layer_name": layer.name,
                "layer_first_filter": first,
                "layer_filter_count": n,
                "conv_depth": layer.conv_depth,
                "in_channels": layer.in_channels,
                "out_channels": layer.out_channels,
                "groups": layer.groups,
                "stride_y": layer.stride[0],
                "stride_x": layer.stride[1],
                "dilation_y": layer.dilation[0],
                "dilation_x": layer.dilation[1],
                "conv_depth_norm": layer.conv_depth_norm,
                "depth_method": layer.depth_method,
                "layer_first_channel": channel,
                "bn_follows": bool(getattr(layer, "bn_follows", False)),
            }
        )
        first += n
        channel += int(layer.out_channels)
        scale = getattr(layer, "fold_scale", None)
        scales.append(
            np.ones(layer.out_channels, np.float32)
            if scale is None
            else np.asarray(scale, np.float32).reshape(-1)
        )
    layers = pd.DataFrame(rows, columns=LAYER_COLUMNS)
    kernel_counts = pd.DataFrame([mf.kernel_counts], index=models.index).fillna(0).astype(np.int64)
    kernel_counts = kernel_counts.reindex(sorted(kernel_counts.columns), axis=1)
    write_dataset(
        Path(path),
        models,
        layers,
        kernel_counts,
        (layer.weight for layer in mf.layers),
        params,
        history=f"filterdb {__version__} extract {mf.model_id}",
        fold_scale=np.concatenate(scales) if scales else np.zeros(0, np.float32),
    )
    return Path(path)
