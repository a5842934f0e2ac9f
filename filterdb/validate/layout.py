"""Validation of a dataset against the netCDF layout of ``docs/data-layout.md``.

The layout is read from ``schemas/dataset.yaml``. :func:`validate_dataset` checks dimensions,
variables, dtypes and attributes with a ``pandera.xarray.DatasetSchema``, then what pandera has no
words for: CF ``flag_values``/``flag_meanings`` against the codes present, the model and layer
tables decoded from the dataset (:mod:`filterdb.validate.tables`), and their consistency with each
other and with ``kernel_count``. Metadata only: the weights are never read.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pandera.xarray as px
import xarray as xr
from pandera.errors import SchemaErrors

from filterdb.validate.checks import has_columns
from filterdb.validate.failures import Failure, SchemaValidationError, show_value
from filterdb.validate.pandera_errors import failures_from_dataset_errors
from filterdb.validate.schema_files import dataset_layout, layout_attribute
from filterdb.validate.tables import check_layers_table, check_models_table

__all__ = ["validate_dataset"]

_NON_BLANK = r"^(?s:.*\S.*)$"  # pandera treats an attribute spec starting with "^" as a regex


def _attr_spec(value: Any) -> str:
    """A pandera attribute matcher: non-blank when ``value`` is None, else equal as text."""
    if value is None:
        return _NON_BLANK
    return f"^{re.escape(layout_attribute(value))}$"


def _dataset_schema(layout: Mapping[str, Any]) -> px.DatasetSchema:
    required = {name: _NON_BLANK for name in layout.get("variable_attrs", [])}
    data_vars: dict[str, px.DataVar] = {}
    coords: dict[str, px.Coordinate] = {}
    for name, spec in layout["variables"].items():
        dims = tuple(spec["dims"])
        dtype = None if spec.get("dtype") == "str" else spec.get("dtype")
        attrs = {**required, **{k: _attr_spec(v) for k, v in (spec.get("attrs") or {}).items()}}
        # nullable=True: pandera would scan every value for NaN (53 GB for `weight`); the
        # tables are checked for nulls after this structural pass.
        if dims == (name,):
            coords[name] = px.Coordinate(dtype=dtype, dims=dims, nullable=True)
        else:
            data_vars[name] = px.DataVar(dims=dims, dtype=dtype, attrs=attrs, nullable=True)
    attrs = {k: _attr_spec(v) for k, v in (layout.get("attrs") or {}).items()}
    return px.DatasetSchema(data_vars=data_vars, coords=coords, attrs=attrs)


def _attr_list(value: Any) -> np.ndarray:
    return np.atleast_1d(np.asarray(value))


def _check_flags(
    ds: xr.Dataset, layout: Mapping[str, Any], source: str, labels: Mapping[str, list[str]]
) -> tuple[list[Failure], set[str], dict[str, list[str]]]:
    """CF flag attributes of coded variables; returns failures, broken names, meanings."""
    failures: list[Failure] = []
    broken: set[str] = set()
    meanings_of: dict[str, list[str]] = {}
    for name, spec in layout["variables"].items():
        flags = spec.get("flags")
        if not flags or name not in ds.variables:
            continue
        var = ds.variables[name]
        if var.dtype.kind not in "iu":
            continue  # the dtype failure is already reported
        fails_before = len(failures)

        def fail(value: str, check: str, _name: str = name) -> None:
            failures.append(Failure(source, None, None, _name, value, check))

        missing = [a for a in ("flag_values", "flag_meanings") if a not in var.attrs]
        if missing:
            for attr in missing:
                fail("<missing>", f"attribute {attr!r} present")
            broken.add(name)
            continue
        values = _attr_list(var.attrs["flag_values"])
        meanings = str(var.attrs["flag_meanings"]).split()
        if len(values) != len(meanings):
            fail(
                f"{len(values)} flag_values, {len(meanings)} flag_meanings",
                "as many flag_values as flag_meanings",
            )
        if not np.array_equal(values, np.arange(len(values))):
            fail(repr(values.tolist()), f"flag_values == 0..{len(values) - 1}")
        if values.dtype != var.dtype:
            fail(str(values.dtype), f"flag_values of the variable's dtype {var.dtype}")
        dupes = sorted(m for m, n in Counter(meanings).items() if n > 1)
        if dupes:
            fail(repr(dupes), "flag_meanings unique")
        if flags.get("present_only") and meanings != sorted(meanings):
            fail(repr(meanings), "flag_meanings sorted")
        codes = np.asarray(var.values)
        dim = var.dims[0]
        valid = set(range(len(meanings))) & {int(v) for v in values}
        bad = ~np.isin(codes, list(valid))
        for row in np.flatnonzero(bad):
            label = labels.get(dim, [None] * len(codes))[row]
            failures.append(
                Failure(
                    source,
                    int(row),
                    label,
                    name,
                    str(codes[row]),
                    f"a code in flag_values (0..{len(meanings) - 1})",
                )
            )
        if flags.get("present_only"):
            unused = sorted(set(range(len(meanings))) - {int(c) for c in codes})
            if unused:
                fail(
                    repr([meanings[i] for i in unused]),
                    "flag_meanings only the values present (every code used)",
                )
        if len(failures) > fails_before:
            broken.add(name)
        meanings_of[name] = meanings
    return failures, broken, meanings_of


def _column(
    ds: xr.Dataset, name: str, meanings_of: Mapping[str, list[str]]
) -> np.ndarray | pd.Series:
    values = np.asarray(ds.variables[name].values)
    if name in meanings_of:
        lookup = meanings_of[name]
        return pd.Series(
            [lookup[c] if 0 <= c < len(lookup) else None for c in values.astype(np.int64)],
            dtype=object,
        )
    if values.dtype.kind in "SU" or values.dtype.kind == "O":
        return pd.Series([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)
    return values


def _tables_from_dataset(
    ds: xr.Dataset, layout: Mapping[str, Any], meanings_of: Mapping[str, list[str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    model_cols, layer_cols = {}, {}
    for name, spec in layout["variables"].items():
        if name not in ds.variables or len(ds.variables[name].dims) != 1:
            continue
        dim = ds.variables[name].dims[0]
        if tuple(spec["dims"]) != (dim,):
            continue
        if dim == "model":
            model_cols[name] = _column(ds, name, meanings_of)
        elif dim == "layer":
            layer_cols[name] = _column(ds, name, meanings_of)
    n_layers = ds.sizes.get("layer", 0)
    models = pd.DataFrame(model_cols, index=pd.RangeIndex(ds.sizes.get("model", 0)))
    layers = pd.DataFrame(layer_cols, index=pd.RangeIndex(n_layers))
    layers.insert(0, "layer", np.arange(n_layers, dtype=np.int64))
    if "layer_model" in layers and "model" in models:
        ids = models["model"].to_numpy()
        lm = pd.to_numeric(layers["layer_model"], errors="coerce").to_numpy()
        layers["model"] = [
            ids[int(i)] if np.isfinite(i) and 0 <= i < len(ids) else None for i in lm
        ]
    return models, layers


def _cross_checks(
    ds: xr.Dataset, models: pd.DataFrame, layers: pd.DataFrame, source: str
) -> list[Failure]:
    """Consistency between the model table, the layer table and ``kernel_count``."""
    failures: list[Failure] = []
    if has_columns(models, "model_layer_count") and has_columns(layers, "layer_model"):
        counts = pd.to_numeric(models["model_layer_count"], errors="coerce")
        if counts.notna().all() and (counts >= 0).all() and counts.sum() == len(layers):
            expected = np.repeat(np.arange(len(models)), counts.astype(np.int64))
            got = pd.to_numeric(layers["layer_model"], errors="coerce").to_numpy()
            for row in np.flatnonzero(got != expected):
                failures.append(
                    Failure(
                        source,
                        int(row),
                        f"layer {row}",
                        "layer_model",
                        str(layers["layer_model"].iloc[row]),
                        f"== {expected[row]} (from model_first_layer/model_layer_count)",
                    )
                )
    if has_columns(models, "n_filters_3x3", "model") and has_columns(
        layers, "layer_model", "layer_filter_count"
    ):
        per_model = (
            pd.to_numeric(layers["layer_filter_count"], errors="coerce")
            .groupby(pd.to_numeric(layers["layer_model"], errors="coerce"))
            .sum()
            .reindex(range(len(models)), fill_value=0)
        )
        for row in np.flatnonzero(models["n_filters_3x3"].to_numpy() != per_model.to_numpy()):
            failures.append(
                Failure(
                    source,
                    int(row),
                    f"model {show_value(models['model'].iloc[row])}",
                    "n_filters_3x3",
                    str(models["n_filters_3x3"].iloc[row]),
                    f"== sum of its layers' layer_filter_count ({per_model.iloc[row]})",
                )
            )
    if "kernel_shape" in ds.variables:
        shapes = [str(s) for s in np.asarray(ds.variables["kernel_shape"].values)]
        for row, shape in enumerate(shapes):
            if not re.fullmatch(r"[1-9]\d*x[1-9]\d*", shape):
                failures.append(
                    Failure(source, row, None, "kernel_shape", repr(shape), "'<rows>x<cols>'")
                )
        for shape in sorted(s for s, n in Counter(shapes).items() if n > 1):
            failures.append(Failure(source, None, None, "kernel_shape", repr(shape), "unique"))
        if (
            "kernel_count" in ds.variables
            and ds.variables["kernel_count"].dims == ("model", "kernel_shape")
            and has_columns(models, "total_filters", "model")
        ):
            counts = np.asarray(ds.variables["kernel_count"].values)
            keep = np.array([s != "1x1" for s in shapes], dtype=bool)
            totals = counts[:, keep].sum(axis=1) if counts.ndim == 2 else counts
            got = models["total_filters"].to_numpy()
            for row in np.flatnonzero(got != totals):
                failures.append(
                    Failure(
                        source,
                        int(row),
                        f"model {show_value(models['model'].iloc[row])}",
                        "total_filters",
                        str(got[row]),
                        f"== sum of kernel_count except 1x1 ({totals[row]})",
                    )
                )
    return failures


def validate_dataset(ds: xr.Dataset, source: str) -> None:
    """Validate a dataset against the layout of ``docs/data-layout.md`` (``schemas/dataset.yaml``).

    Checks, all reported together: dimensions and fixed sizes (``ky = kx = 3``); every variable's
    presence, dims and dtype; required global and per-variable attributes (``long_name``,
    ``sample_dimension``); CF ``flag_values``/``flag_meanings`` of coded variables against the
    codes present; then the model and layer tables decoded from the dataset against
    ``models.yaml`` and ``layers.yaml`` (vocabularies, ranges, ragged-array contiguity, filter
    counts summing to the ``filter`` dimension), and their consistency with each other and with
    ``kernel_count``. Filter weights are never read.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset, e.g. from ``xr.open_dataset("data/filters.nc")``.
    source : str
        The file name, used in the report.

    Raises
    ------
    SchemaValidationError
        Listing every failure.
    """
    layout = dataset_layout()
    failures: list[Failure] = []

    # dimensions
    for dim, size in layout["dims"].items():
        if dim not in ds.sizes:
            failures.append(Failure(source, None, None, dim, "<missing>", "dimension present"))
        elif size is not None and ds.sizes[dim] != size:
            failures.append(
                Failure(source, None, None, dim, str(ds.sizes[dim]), f"dimension of size {size}")
            )
    for dim in ds.sizes:
        if dim not in layout["dims"]:
            failures.append(
                Failure(source, None, None, str(dim), str(ds.sizes[dim]), "a known dimension")
            )

    # variables, dtypes, attributes (pandera.xarray; metadata only)
    flat = ds.reset_coords()
    broken: set[str] = set()
    try:
        _dataset_schema(layout).validate(flat, lazy=True)
    except SchemaErrors as exc:
        found, broken = failures_from_dataset_errors(exc, source, layout)
        failures += found
    for name, spec in layout["variables"].items():
        if name not in ds.variables:
            broken.add(name)
        elif spec.get("dtype") == "str" and ds.variables[name].dtype.kind not in "UOST":
            failures.append(
                Failure(source, None, None, name, str(ds.variables[name].dtype), "a string dtype")
            )
            broken.add(name)

    # flags, then the tables decoded from the dataset
    labels: dict[str, list[str]] = {}
    if "model" in ds.variables and ds.variables["model"].dims == ("model",):
        ids = np.asarray(ds.variables["model"].values)
        labels["model"] = [f"model {show_value(m)}" for m in ids]
    if "layer" in ds.sizes:
        labels["layer"] = [f"layer {i}" for i in range(ds.sizes["layer"])]
    flag_failures, flag_broken, meanings_of = _check_flags(ds, layout, source, labels)
    failures += flag_failures
    broken |= flag_broken

    models, layers = _tables_from_dataset(ds, layout, meanings_of)
    present_models = models.drop(columns=[c for c in models if c in broken])
    present_layers = layers.drop(columns=[c for c in layers if c in broken and c != "layer"])
    _, model_failures = check_models_table(present_models, source, ds.sizes.get("layer"))
    _, layer_failures = check_layers_table(
        present_layers, source, ds.sizes.get("filter"), ds.sizes.get("model")
    )
    for failure in model_failures + layer_failures:
        is_missing = failure.check == "column present" and failure.column in broken
        if not is_missing and failure.column not in broken:
            failures.append(failure)
    failures += _cross_checks(ds, present_models, present_layers, source)

    if failures:
        raise SchemaValidationError(source, failures)
