"""A human summary of a dataset: models, layers, filters, and counts per meta-parameter value."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xarray as xr

from filterdb.dataset.contract import CATEGORICAL, LAYER_INT32, LAYER_INT64, MODEL_INT
from filterdb.dataset.tables import read_tables
from filterdb.errors import InputError

__all__ = ["check_readable", "dataset_counts", "summary"]

#: Variables the model and layer tables are read from (the others are optional: files of schema
#: version 1 lack the categorical meta-parameters but ``source``, the texts and the floats).
REQUIRED = (
    "model",
    *MODEL_INT,
    *LAYER_INT32,
    *LAYER_INT64,
    "layer_name",
    "conv_depth_norm",
    "depth_method",
    "kernel_shape",
    "kernel_count",
)


def check_readable(ds: xr.Dataset, path: str | os.PathLike[str]) -> None:
    """Check what :func:`summary` reads, so that a damaged file is one clear error.

    Not a validation (``filterdb validate`` checks everything): only the variables the tables
    are read from, their flag codes and the layers' model index.

    Parameters
    ----------
    ds : xarray.Dataset
        The open dataset.
    path : path-like
        Named in the message.

    Raises
    ------
    filterdb.errors.InputError
        A missing variable or flag attribute, a code outside a variable's ``flag_values``, a
        ``layer_model`` outside the models, or a ``kernel_count`` not of models x kernel shapes.
    """
    required = list(REQUIRED)
    if "fold_scale" in ds.variables:
        required += ["layer_first_channel", "bn_follows"]
    for name in required:
        if name not in ds.variables:
            raise InputError(f"{path}: variable {name!r} is missing (not a complete dataset)")
    if ds.variables["model"].dims != ("model",):
        raise InputError(f"{path}: variable 'model' has dims {ds.variables['model'].dims}")
    n_models = int(ds.sizes["model"])
    coded = [c for c in CATEGORICAL if c in ds.variables] + ["depth_method"]
    if "fold_scale" in ds.variables:
        coded.append("bn_follows")
    for name in coded:
        _check_codes(ds.variables[name], name, path)
    layer_model = np.asarray(ds.variables["layer_model"].values)
    if layer_model.dtype.kind not in "iu":
        raise InputError(f"{path}: layer_model is {layer_model.dtype}, not an integer index")
    bad = np.flatnonzero((layer_model < 0) | (layer_model >= n_models))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"{path}: layer_model of layer {i} is {int(layer_model[i])}, outside the "
            f"{n_models} models (0..{n_models - 1})"
            + (f" (and {bad.size - 1} more layers)" if bad.size > 1 else "")
        )
    n_shapes = int(np.asarray(ds.variables["kernel_shape"].values).size)
    n_counts = int(np.asarray(ds.variables["kernel_count"].values).size)
    if n_counts != n_models * n_shapes:
        raise InputError(
            f"{path}: kernel_count has {n_counts} values, not {n_models} models x "
            f"{n_shapes} kernel shapes"
        )


def _check_codes(var: Any, name: str, path: str | os.PathLike[str]) -> None:
    for attr in ("flag_values", "flag_meanings"):
        if attr not in var.attrs:
            raise InputError(f"{path}: variable {name!r} has no {attr} attribute")
    values = np.atleast_1d(np.asarray(var.attrs["flag_values"])).tolist()
    meanings = str(var.attrs["flag_meanings"]).split()
    if len(values) != len(meanings):
        raise InputError(
            f"{path}: variable {name!r} has {len(values)} flag_values but "
            f"{len(meanings)} flag_meanings"
        )
    codes = np.asarray(var.values).ravel()
    if codes.dtype.kind not in "iu":
        raise InputError(f"{path}: variable {name!r} is {codes.dtype}, not integer flag codes")
    unknown = sorted(set(np.unique(codes).tolist()) - set(values))
    if unknown:
        raise InputError(
            f"{path}: variable {name!r} has code {unknown[0]}, not among its flag_values "
            f"{values}" + (f" (nor {unknown[1:]})" if len(unknown) > 1 else "")
        )


def summary(path: str | os.PathLike[str]) -> str:
    """Describe a filterdb dataset in plain text.

    Parameters
    ----------
    path : path-like
        A dataset file.

    Returns
    -------
    str
        Totals, one line per model (with accuracy where known) and, for each meta-parameter,
        the number of models and filters per value.

    Raises
    ------
    filterdb.errors.InputError
        The file lacks what the summary reads or holds codes it cannot decode (see
        :func:`check_readable`).
    """
    with xr.open_dataset(path) as ds:
        check_readable(ds, path)
        models, layers, _ = read_tables(ds)
        n_filters = ds.sizes["filter"]
        history = ds.attrs.get("history", "")
    lines = [
        f"{path}",
        f"  {len(models)} models, {len(layers)} layers with 3x3 convs, {n_filters:,} filters",
        f"  {history}",
        "",
        f"  {'model':32s} {'source':9s} {'category':12s} {'task':15s} {'layers':>6s} "
        f"{'filters':>11s} {'accuracy':>8s}",
    ]
    for mid, row in models.iterrows():
        acc = "-" if row["accuracy"] != row["accuracy"] else f"{row['accuracy']:.4f}"
        lines.append(
            f"  {mid!s:32s} {row['source']:9s} {row['visual_category']:12s} {row['task']:15s} "
            f"{row['model_layer_count']:6d} {row['n_filters_3x3']:11,d} {acc:>8s}"
        )
    for col in CATEGORICAL:
        lines.append("")
        lines.append(f"  by {col}:")
        grouped = models.groupby(col)["n_filters_3x3"].agg(["count", "sum"])
        for value, r in grouped.iterrows():
            lines.append(f"    {value!s:30s} {r['count']:4d} models {r['sum']:13,d} filters")
    return "\n".join(lines)


def dataset_counts(filters_nc: str | os.PathLike[str]) -> dict[str, Any]:
    """Models, layers and filters of a dataset, in total and per meta-parameter value."""
    with xr.open_dataset(filters_nc) as ds:
        models, layers, _ = read_tables(ds)
        n_filters = int(ds.sizes["filter"])
    by = {
        col: {
            str(value): {"models": int(g.shape[0]), "filters": int(g["n_filters_3x3"].sum())}
            for value, g in models.groupby(col, sort=True)
        }
        for col in CATEGORICAL
    }
    return {
        "models": len(models),
        "layers": len(layers),
        "filters": n_filters,
        "model_ids": [str(m) for m in models.index],
        "by": by,
    }
