"""Schemas of the model table, the layer table and the dataset layout
(``filterdb/validate/schemas/``).

Every validator is lazy: it collects every failure (source, row, column, value, check) and raises
one :class:`SchemaValidationError` whose message is the full report. The tables are checked with
pandera ``DataFrameSchema`` objects read from ``schemas/models.yaml`` and ``schemas/layers.yaml``
(pandera's own YAML, with ``filterdb_*`` checks registered here); the netCDF layout of
``docs/data-layout.md`` is read from ``schemas/dataset.yaml`` and checked with a
``pandera.xarray.DatasetSchema`` plus the CF flag and ragged-array checks pandera has no words for.

The schema files are package data, read through :mod:`importlib.resources` (so an installed
wheel validates anywhere); ``$FILTERDB_SCHEMA_DIR``, when set, names another directory instead.
"""

from __future__ import annotations

import copy
import difflib
import numbers
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.io.pandas_io as pandera_io
import pandera.pandas as pa
import pandera.xarray as px
import xarray as xr
import yaml
from pandera import extensions
from pandera.errors import SchemaErrors

from filterdb.errors import FilterDBError

__all__ = [
    "SCHEMA_DIR_ENV",
    "Failure",
    "SchemaValidationError",
    "dataset_layout",
    "format_report",
    "layers_schema",
    "load_vocabularies",
    "models_schema",
    "schema_dir",
    "schema_version",
    "validate_dataset",
    "validate_entry_meta",
    "validate_layers",
    "validate_models",
]

SCHEMA_DIR_ENV = "FILTERDB_SCHEMA_DIR"
"""Environment variable that overrides the schema directory."""

SCHEMA_PACKAGE_DIR = "schemas"
"""The schema folder inside the ``filterdb`` package (package data)."""

_NON_BLANK = r"^(?s:.*\S.*)$"  # pandera treats an attribute spec starting with "^" as a regex


# --------------------------------------------------------------------------------------------
# Failures and the report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One failed check.

    Attributes
    ----------
    source : str
        The file (or ``<models>``-style label) that was validated.
    row : int or None
        Positional row of the table (``None`` for column-, table- or file-level failures).
    label : str or None
        What the row is, e.g. ``"model 'resnet18'"`` or ``"layer 17"``.
    column : str or None
        The column, variable or attribute concerned.
    value : str
        The offending value (as text).
    check : str
        What was expected.
    """

    source: str
    row: int | None
    label: str | None
    column: str | None
    value: str
    check: str

    def __str__(self) -> str:
        where = "-" if self.row is None else f"row {self.row}"
        if self.label:
            where = f"{where} ({self.label})" if self.row is not None else self.label
        column = "-" if self.column is None else self.column
        return f"{self.source} | {where} | {column} | {self.value} | {self.check}"


class SchemaValidationError(FilterDBError):
    """Validation failed; the message lists every failure.

    Parameters
    ----------
    source : str
        What was validated (a file name or a label).
    failures : list of Failure
        Every failure found.
    """

    def __init__(self, source: str, failures: Iterable[Failure]) -> None:
        self.source = source
        self.failures: list[Failure] = list(failures)
        super().__init__(format_report(source, self.failures))


def format_report(source: str, failures: list[Failure]) -> str:
    """Render failures as one report: a summary by check, then one line per failure.

    Parameters
    ----------
    source : str
        What was validated.
    failures : list of Failure
        The failures.

    Returns
    -------
    str
        The report; each failure line reads ``source | row | column | value | check``.
    """
    lines = [f"{source}: {len(failures)} schema failure(s)"]
    summary = Counter((f.column or "-", f.check.split("; did you mean")[0]) for f in failures)
    lines += [f"  {n:>6} x {col}: {check}" for (col, check), n in summary.items()]
    lines.append("source | row | column | value | check")
    lines += [str(f) for f in failures]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Loading the schema files
# --------------------------------------------------------------------------------------------


def schema_dir() -> Path | Traversable:
    """The directory holding the schema files.

    Returns
    -------
    pathlib.Path or importlib.resources.abc.Traversable
        ``$FILTERDB_SCHEMA_DIR`` if set (a path), else the package data folder
        ``filterdb/validate/schemas`` (through :mod:`importlib.resources`, so it is found in an
        installed wheel as well as in the repository).

    Examples
    --------
    >>> schema_dir().joinpath("vocabularies.yaml").is_file()
    True
    """
    override = os.environ.get(SCHEMA_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return resources.files("filterdb.validate").joinpath(SCHEMA_PACKAGE_DIR)


#: parsed schema files by (directory, file name); setting $FILTERDB_SCHEMA_DIR switches directory
_PARSED: dict[tuple[str, str], dict[str, Any]] = {}


def _schema_file(name: str) -> dict[str, Any]:
    directory = schema_dir()
    key = (str(directory), name)
    if key not in _PARSED:
        path = directory.joinpath(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"schema file {path} not found (set {SCHEMA_DIR_ENV} to the schema directory)"
            )
        _PARSED[key] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return _PARSED[key]


def load_vocabularies() -> dict[str, list[str]]:
    """The controlled vocabularies of ``schemas/vocabularies.yaml``.

    Returns
    -------
    dict of str to list of str
        Meta-parameter name -> allowed values (a fresh copy; edit the YAML, not this).

    Examples
    --------
    >>> "classification" in load_vocabularies()["task"]
    True
    """
    vocab = _schema_file("vocabularies.yaml").get("vocabularies", {})
    return {key: [str(v) for v in values] for key, values in vocab.items()}


def schema_version() -> str:
    """The filterdb schema version (``version`` of ``schemas/vocabularies.yaml``).

    Every schema file carries the same version; a mismatch is an error.

    Returns
    -------
    str
        The version, e.g. ``"1"``; the dataset's ``filterdb_schema_version`` attribute equals it.

    Examples
    --------
    >>> schema_version()
    '2'
    """
    version = str(_schema_file("vocabularies.yaml")["version"])
    others = {
        "models.yaml": _schema_file("models.yaml")
        .get("metadata", {})
        .get("filterdb_schema_version"),
        "layers.yaml": _schema_file("layers.yaml")
        .get("metadata", {})
        .get("filterdb_schema_version"),
        "dataset.yaml": _schema_file("dataset.yaml").get("version"),
    }
    bad = {name: v for name, v in others.items() if str(v) != version}
    if bad:
        raise ValueError(
            f"schema files in {schema_dir()} disagree on the version: vocabularies.yaml has "
            f"{version}, " + ", ".join(f"{name} has {v}" for name, v in bad.items())
        )
    return version


def _load_table_schema(name: str) -> pa.DataFrameSchema:
    path = schema_dir() / name
    schema = pandera_io.deserialize_schema(copy.deepcopy(_schema_file(name)))
    vocab = load_vocabularies()
    for col_name, column in schema.columns.items():
        for check in column.checks:
            wanted = (check.statistics or {}).get("vocabulary")
            if check.name == "filterdb_in_vocabulary" and wanted not in vocab:
                raise ValueError(f"{path}: column {col_name!r} names unknown vocabulary {wanted!r}")
    return schema


def models_schema() -> pa.DataFrameSchema:
    """The pandera schema of the model table (``schemas/models.yaml``).

    Returns
    -------
    pandera.pandas.DataFrameSchema
        A fresh schema object.
    """
    return _load_table_schema("models.yaml")


def layers_schema() -> pa.DataFrameSchema:
    """The pandera schema of the layer table (``schemas/layers.yaml``).

    Returns
    -------
    pandera.pandas.DataFrameSchema
        A fresh schema object.
    """
    return _load_table_schema("layers.yaml")


def dataset_layout() -> dict[str, Any]:
    """The dataset layout of ``schemas/dataset.yaml`` (dims, global attributes, variables).

    Returns
    -------
    dict
        The parsed YAML; see the file's header for the format.
    """
    return _schema_file("dataset.yaml")


# --------------------------------------------------------------------------------------------
# Checks registered with pandera (named in the YAML files)
# --------------------------------------------------------------------------------------------


def _has(df: pd.DataFrame, *columns: str) -> bool:
    return all(c in df.columns for c in columns)


def _numeric(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce")


def _register(
    name: str, statistics: list[str]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not hasattr(pa.Check, name):  # re-imports must not register twice
            extensions.register_check_method(statistics=statistics, check_type="vectorized")(fn)
        return fn

    return decorator


@_register("filterdb_in_vocabulary", ["vocabulary"])
def filterdb_in_vocabulary(series: pd.Series, *, vocabulary: str) -> pd.Series:
    """Values belong to the named controlled vocabulary."""
    return series.isin(load_vocabularies()[vocabulary])


@_register("filterdb_contiguous", ["first", "count"])
def filterdb_contiguous(df: pd.DataFrame, *, first: str, count: str) -> pd.Series:
    """Contiguous ragged array: ``first[i] == first[i-1] + count[i-1]``."""
    if not _has(df, first, count):
        return pd.Series(True, index=df.index)
    f, c = _numeric(df[first]), _numeric(df[count])
    expected = (f + c).shift(1)
    return (f == expected) | expected.isna()


@_register("filterdb_filter_count", ["count", "out_channels", "in_channels", "groups"])
def filterdb_filter_count(
    df: pd.DataFrame, *, count: str, out_channels: str, in_channels: str, groups: str
) -> pd.Series:
    """``count == out_channels * in_channels / groups``."""
    if not _has(df, count, out_channels, in_channels, groups):
        return pd.Series(True, index=df.index)
    expected = _numeric(df[out_channels]) * _numeric(df[in_channels]) / _numeric(df[groups])
    return _numeric(df[count]) == expected


@_register("filterdb_divisible", ["column", "divisor"])
def filterdb_divisible(df: pd.DataFrame, *, column: str, divisor: str) -> pd.Series:
    """``column`` is a multiple of ``divisor``."""
    if not _has(df, column, divisor):
        return pd.Series(True, index=df.index)
    d = _numeric(df[divisor])
    return (d > 0) & (_numeric(df[column]) % d.where(d > 0) == 0)


@_register("filterdb_not_greater", ["column", "other"])
def filterdb_not_greater(df: pd.DataFrame, *, column: str, other: str) -> pd.Series:
    """``column <= other``."""
    if not _has(df, column, other):
        return pd.Series(True, index=df.index)
    return _numeric(df[column]) <= _numeric(df[other])


@_register("filterdb_ratio_equals", ["column", "numerator", "denominator"])
def filterdb_ratio_equals(
    df: pd.DataFrame, *, column: str, numerator: str, denominator: str
) -> pd.Series:
    """``column == numerator / denominator`` (NaN where the denominator is 0)."""
    if not _has(df, column, numerator, denominator):
        return pd.Series(True, index=df.index)
    num, den, got = _numeric(df[numerator]), _numeric(df[denominator]), _numeric(df[column])
    expected = num / den.where(den != 0)
    close = np.isclose(got, expected, rtol=1e-9, atol=1e-12, equal_nan=True)
    return pd.Series(close, index=df.index)


@_register("filterdb_non_decreasing", ["columns"])
def filterdb_non_decreasing(df: pd.DataFrame, *, columns: list[str]) -> pd.Series:
    """Rows are sorted by the tuple ``columns`` (non-decreasing)."""
    if not _has(df, *columns) or len(df) < 2:
        return pd.Series(True, index=df.index)
    ok = np.ones(len(df), dtype=bool)
    tied = np.ones(len(df) - 1, dtype=bool)  # rows equal to the previous one so far
    decided = np.zeros(len(df) - 1, dtype=bool)
    for col in columns:
        v = _numeric(df[col]).to_numpy(dtype=float)
        prev, cur = v[:-1], v[1:]
        less = tied & ~decided & (cur < prev)
        ok[1:] &= ~less
        decided |= tied & (cur != prev)
    return pd.Series(ok, index=df.index)


@_register("filterdb_sum_equals", ["column", "total"])
def filterdb_sum_equals(df: pd.DataFrame, *, column: str, total: int) -> bool:
    """The column sums to ``total``."""
    return not _has(df, column) or int(_numeric(df[column]).sum()) == int(total)


@_register("filterdb_first_equals", ["column", "value"])
def filterdb_first_equals(df: pd.DataFrame, *, column: str, value: int) -> pd.Series:
    """The first row's ``column`` equals ``value`` (a ragged array starts at 0)."""
    ok = pd.Series(True, index=df.index)
    if _has(df, column) and len(df):
        ok.iloc[0] = bool(_numeric(df[column]).iloc[0] == value)
    return ok


def _describe_frame_check(
    df: pd.DataFrame, row: int | None, name: str, stats: Mapping[str, Any]
) -> tuple[str | None, str, str]:
    """Column, value text and check text of a failed table-level check."""

    def val(col: str) -> Any:
        return df[col].iloc[row] if row is not None and col in df.columns else None

    if name == "filterdb_contiguous":
        prev = f"{df[stats['first']].iloc[row - 1]}+{df[stats['count']].iloc[row - 1]}"
        return (
            stats["first"],
            str(val(stats["first"])),
            f"contiguous: {stats['first']} == previous {stats['first']}+{stats['count']} ({prev})",
        )
    if name == "filterdb_filter_count":
        o, i, g = (val(stats[k]) for k in ("out_channels", "in_channels", "groups"))
        return (
            stats["count"],
            str(val(stats["count"])),
            f"{stats['count']} == out_channels*in_channels/groups ({o}*{i}/{g})",
        )
    if name == "filterdb_divisible":
        return (
            stats["column"],
            str(val(stats["column"])),
            f"{stats['column']} divisible by {stats['divisor']} ({val(stats['divisor'])})",
        )
    if name == "filterdb_not_greater":
        return (
            stats["column"],
            str(val(stats["column"])),
            f"{stats['column']} <= {stats['other']} ({val(stats['other'])})",
        )
    if name == "filterdb_ratio_equals":
        n, d = val(stats["numerator"]), val(stats["denominator"])
        return (
            stats["column"],
            str(val(stats["column"])),
            f"{stats['column']} == {stats['numerator']}/{stats['denominator']} ({n}/{d})",
        )
    if name == "filterdb_non_decreasing":
        cols = stats["columns"]
        here = ", ".join(str(val(c)) for c in cols)
        return (
            cols[-1],
            here,
            f"rows sorted by ({', '.join(cols)}); previous row has "
            + ", ".join(str(df[c].iloc[row - 1]) for c in cols),
        )
    if name == "filterdb_sum_equals":
        total = int(_numeric(df[stats["column"]]).sum())
        return (
            stats["column"],
            f"sum={total}",
            f"sum of {stats['column']} == {stats['total']} (the dataset's size)",
        )
    if name == "filterdb_first_equals":
        return stats["column"], str(val(stats["column"])), f"first row's value == {stats['value']}"
    return None, "", name


# --------------------------------------------------------------------------------------------
# Table validation
# --------------------------------------------------------------------------------------------


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _widen(df: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.DataFrame:
    """Widen integer/float columns of any width to the schema's int64/float64, losslessly.

    Anything that cannot be widened without guessing is left for pandera to report. An empty
    column (a dataset whose models have no 3x3 conv has an empty layer table) holds no value to
    misread, so it takes the schema's dtype whatever dtype it came with.
    """
    out = df.copy()
    for name, column in schema.columns.items():
        if name not in out.columns or column.dtype is None:
            continue
        target = str(column.dtype)
        s = out[name]
        if len(s) == 0:
            out[name] = column.dtype.coerce(s)
            continue
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = out[name] = s.astype(object)
        if target == "int64":
            if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
                out[name] = s.astype("int64")
            elif (
                s.dtype == object
                and len(s)
                and all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in s)
            ):
                out[name] = s.astype("int64")
        elif target == "float64":
            if pd.api.types.is_float_dtype(s.dtype) or pd.api.types.is_integer_dtype(s.dtype):
                if not pd.api.types.is_bool_dtype(s.dtype):
                    out[name] = s.astype("float64")
            elif s.dtype == object and all(x is None or _is_real(x) for x in s):
                out[name] = pd.to_numeric(s, errors="coerce").astype("float64")
    return out


def _show(value: Any) -> str:
    """A value as report text: strings quoted, numpy scalars as plain Python."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return repr(value) if isinstance(value, str) else str(value)


def _row_label(df: pd.DataFrame, row: int, key: str) -> str | None:
    if key not in df.columns or not 0 <= row < len(df):
        return None
    return f"{key} {_show(df[key].iloc[row])}"


def _failures_from_pandera(
    exc: SchemaErrors, df: pd.DataFrame, source: str, key: str
) -> list[Failure]:
    """Turn pandera's lazy errors into one Failure per row/column/check."""
    failures: list[Failure] = []
    for err in exc.schema_errors:
        check = err.check
        check_name = getattr(check, "name", None) or str(check)
        stats = dict(getattr(check, "statistics", None) or {})
        cases = err.failure_cases
        column = err.column_name
        is_error = err.reason_code is not None and err.reason_code.name == "CHECK_ERROR"
        if isinstance(err.schema, pa.DataFrameSchema) and check_name.startswith("filterdb_"):
            if is_error:
                text = f"{check_name} raised an error"
                failures.append(Failure(source, None, None, None, str(cases), text))
                continue
            rows: list[int | None]
            if isinstance(cases, pd.DataFrame) and "index" in cases.columns:
                rows = sorted({int(i) for i in cases["index"].dropna()}) or [None]
            else:
                rows = [None]
            for row in rows:
                try:
                    col, value, text = _describe_frame_check(df, row, check_name, stats)
                except (KeyError, IndexError, TypeError):  # a report must never crash
                    col, value, text = None, str(cases), str(getattr(check, "error", check_name))
                label = None if row is None else _row_label(df, row, key)
                failures.append(Failure(source, row, label, col, value, text))
            continue
        if err.reason_code is not None and err.reason_code.name == "COLUMN_NOT_IN_DATAFRAME":
            failures.append(Failure(source, None, None, str(cases), "<missing>", "column present"))
            continue
        text = check_name if check is not None else str(err.reason_code)
        if err.reason_code is not None and err.reason_code.name == "SERIES_CONTAINS_NULLS":
            text = "not null"
        elif err.reason_code is not None and err.reason_code.name == "SERIES_CONTAINS_DUPLICATES":
            text = "unique"
        elif is_error:
            text = f"{check_name} raised an error"
        elif check is not None and getattr(check, "error", None):
            text = str(check.error)
        if isinstance(cases, pd.DataFrame) and "index" in cases.columns:
            for idx, value in zip(cases["index"], cases["failure_case"], strict=True):
                row = None if pd.isna(idx) else int(idx)
                label = None if row is None else _row_label(df, row, key)
                row_text = text
                if check_name == "filterdb_in_vocabulary":
                    name = stats["vocabulary"]
                    row_text = _vocab_message(value, name, load_vocabularies()[name])
                failures.append(Failure(source, row, label, column, _show(value), row_text))
        else:
            failures.append(Failure(source, None, None, column, str(cases), text))
    return failures


def _validate_table(
    df: pd.DataFrame,
    schema: pa.DataFrameSchema,
    source: str,
    key: str,
    extra_checks: list[pa.Check],
    column_checks: Mapping[str, list[pa.Check]] | None = None,
) -> tuple[pd.DataFrame, list[Failure]]:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    moved = df.index.name if df.index.name in schema.columns and df.index.name not in df else None
    work = _widen(df.reset_index(drop=moved is None), schema)
    if extra_checks:
        schema.checks = [*schema.checks, *extra_checks]  # a fresh schema object: safe to extend
    for name, checks in (column_checks or {}).items():
        if name in schema.columns:
            schema = schema.update_column(name, checks=[*schema.columns[name].checks, *checks])
    try:
        schema.validate(work, lazy=True)
        failures: list[Failure] = []
    except SchemaErrors as exc:
        failures = _failures_from_pandera(exc, work, source, key)
    out = work.set_index(moved) if moved else work.set_axis(df.index)
    return out, failures


def _models_table(
    df: pd.DataFrame, source: str, n_layers: int | None
) -> tuple[pd.DataFrame, list[Failure]]:
    extra = []
    if n_layers is not None:
        extra = [
            pa.Check.filterdb_sum_equals(column="model_layer_count", total=int(n_layers)),
            pa.Check.filterdb_first_equals(column="model_first_layer", value=0),
        ]
    return _validate_table(df, models_schema(), source, "model", extra)


def _layers_table(
    df: pd.DataFrame, source: str, n_filters: int | None, n_models: int | None
) -> tuple[pd.DataFrame, list[Failure]]:
    extra = []
    if n_filters is not None:
        extra = [
            pa.Check.filterdb_sum_equals(column="layer_filter_count", total=int(n_filters)),
            pa.Check.filterdb_first_equals(column="layer_first_filter", value=0),
        ]
    column_checks = {}
    if n_models is not None and n_models > 0:
        column_checks["layer_model"] = [pa.Check.in_range(0, int(n_models) - 1)]
    return _validate_table(df, layers_schema(), source, "layer", extra, column_checks)


def validate_models(
    df: pd.DataFrame, source: str = "<models>", *, n_layers: int | None = None
) -> pd.DataFrame:
    """Validate the model table against ``schemas/models.yaml``.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per model (the id in column ``model``, or as the index named ``model``).
    source : str
        Where the table came from; named in the report.
    n_layers : int, optional
        The dataset's number of layers: ``model_layer_count`` must sum to it and
        ``model_first_layer`` start at 0.

    Returns
    -------
    pandas.DataFrame
        The table with integer and float columns widened to int64 and float64.

    Raises
    ------
    SchemaValidationError
        Listing every failure (row, model id, column, value, check).

    Examples
    --------
    >>> df = pd.DataFrame({"model": ["a b"]})
    >>> try:
    ...     validate_models(df, "zoo.yaml")
    ... except SchemaValidationError as err:
    ...     print("a b" in str(err))
    True
    """
    out, failures = _models_table(df, source, n_layers)
    if failures:
        raise SchemaValidationError(source, failures)
    return out


def validate_layers(
    df: pd.DataFrame,
    n_filters: int | None = None,
    source: str = "<layers>",
    *,
    n_models: int | None = None,
) -> pd.DataFrame:
    """Validate the layer table against ``schemas/layers.yaml``.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per layer, in dataset order.
    n_filters : int, optional
        The dataset's number of filters: ``layer_filter_count`` must sum to it and
        ``layer_first_filter`` start at 0.
    source : str
        Where the table came from; named in the report.
    n_models : int, optional
        The number of models: ``layer_model`` must lie in ``[0, n_models)``.

    Returns
    -------
    pandas.DataFrame
        The table with integer and float columns widened to int64 and float64.

    Raises
    ------
    SchemaValidationError
        Listing every failure (row, layer index, column, value, check).
    """
    out, failures = _layers_table(df, source, n_filters, n_models)
    if failures:
        raise SchemaValidationError(source, failures)
    return out


# --------------------------------------------------------------------------------------------
# Zoo entry meta-parameters
# --------------------------------------------------------------------------------------------


def _vocab_message(value: Any, vocabulary: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"in vocabulary {vocabulary!r} (one of {', '.join(allowed)}){hint}"


def validate_entry_meta(model_id: str, meta: Mapping[str, Any], source: str = "<zoo>") -> None:
    """Check one zoo entry's meta-parameters early, before any extraction.

    Known keys are the model table's meta-parameter columns (``schemas/models.yaml``, minus the
    computed ones listed in its ``metadata.computed``); every other key is an error, so typos
    do not pass silently. Keys may be absent here: completeness is checked on the model table.

    Parameters
    ----------
    model_id : str
        The zoo key (must be non-empty without whitespace).
    meta : mapping
        The entry's ``meta`` block.
    source : str
        Where the entry came from (e.g. ``params.yaml``); named in the report.

    Raises
    ------
    SchemaValidationError
        Naming the model, key and value of every failure.

    Examples
    --------
    >>> validate_entry_meta("resnet18", {"task": "classification", "family": "resnet"})
    >>> try:
    ...     validate_entry_meta("resnet18", {"task": "clasification"})
    ... except SchemaValidationError as err:
    ...     print("did you mean 'classification'" in str(err))
    True
    """
    label = f"model {model_id!r}"
    failures: list[Failure] = []

    def fail(key: str | None, value: Any, check: str) -> None:
        failures.append(Failure(source, None, label, key, _show(value), check))

    if not isinstance(model_id, str) or not re.fullmatch(r"\S+", model_id):
        fail("model", model_id, "model id non-empty, no whitespace")
    if not isinstance(meta, Mapping):
        fail("meta", meta, "a mapping of meta-parameters")
        raise SchemaValidationError(source, failures)

    schema_yaml = _schema_file("models.yaml")
    computed = set(schema_yaml.get("metadata", {}).get("computed", []))
    columns = schema_yaml.get("columns", {})
    known = [c for c in columns if c not in computed]
    vocab = load_vocabularies()
    for key, value in meta.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            fail(key, value, f"a known meta-parameter (one of {', '.join(known)}){hint}")
            continue
        spec = columns[key]
        dtype = spec.get("dtype")
        vocab_name = (spec.get("checks") or {}).get("filterdb_in_vocabulary", {}).get("vocabulary")
        if vocab_name is not None:
            if value not in vocab[vocab_name]:
                fail(key, value, _vocab_message(value, vocab_name, vocab[vocab_name]))
        elif dtype == "str":
            pattern = (spec.get("checks") or {}).get("str_matches", r".+")
            if not isinstance(value, str) or not re.fullmatch(pattern, value):
                fail(key, value, f"a string matching {pattern!r}")
        elif dtype == "int64":
            if not (isinstance(value, numbers.Integral) and not isinstance(value, bool)) or (
                value < 0
            ):
                fail(key, value, "an integer >= 0")
        elif dtype == "float64":
            ok = value is None or (_is_real(value) and (np.isnan(value) or 0 <= value <= 1))
            if not ok:
                fail(key, value, "a number in [0, 1] or null")
    if failures:
        raise SchemaValidationError(source, failures)


# --------------------------------------------------------------------------------------------
# Dataset validation
# --------------------------------------------------------------------------------------------


def _attr_spec(value: Any) -> str:
    """A pandera attribute matcher: non-blank when ``value`` is None, else equal as text."""
    if value is None:
        return _NON_BLANK
    text = str(value).replace("{schema_version}", schema_version())
    return f"^{re.escape(text)}$"


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


def _attr_expectation(spec: Any) -> str:
    if spec is None:
        return "present, non-blank"
    return f"== {str(spec).replace('{schema_version}', schema_version())!r}"


def _failures_from_xarray(
    exc: SchemaErrors, source: str, layout: Mapping[str, Any]
) -> tuple[list[Failure], set[str]]:
    """Turn pandera.xarray's lazy errors into Failures; also return the broken variables."""
    failures: list[Failure] = []
    broken: set[str] = set()
    global_attrs = layout.get("attrs") or {}
    for err in exc.schema_errors:
        name = getattr(err.schema, "name", None)
        message = str(err.args[0]) if err.args else str(err)
        check = getattr(err.check, "name", None) or str(err.check)
        value = str(err.failure_cases)
        quoted = re.search(r"'([^']+)'", message)
        subject = quoted.group(1) if quoted else None
        if check == "attrs" and subject is not None:
            if isinstance(err.schema, px.DatasetSchema):
                column, spec = f"global attribute {subject}", global_attrs.get(subject)
            else:
                var_spec = layout["variables"].get(str(name), {})
                column, spec = str(name), (var_spec.get("attrs") or {}).get(subject)
            text = f"attribute {subject!r} {_attr_expectation(spec)}"
            failures.append(Failure(source, None, None, column, value, text))
        elif isinstance(err.schema, px.DatasetSchema):
            if subject is not None:
                broken.add(subject)
            text = "variable present" if "missing" in message else message
            failures.append(Failure(source, None, None, subject, "<missing>", text))
        else:
            broken.add(str(name))
            failures.append(Failure(source, None, None, str(name), value, message))
    return failures, broken


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
    if _has(models, "model_layer_count") and _has(layers, "layer_model"):
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
    if _has(models, "n_filters_3x3", "model") and _has(layers, "layer_model", "layer_filter_count"):
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
                    f"model {_show(models['model'].iloc[row])}",
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
            and _has(models, "total_filters", "model")
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
                        f"model {_show(models['model'].iloc[row])}",
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
        found, broken = _failures_from_xarray(exc, source, layout)
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
        labels["model"] = [f"model {_show(m)}" for m in np.asarray(ds.variables["model"].values)]
    if "layer" in ds.sizes:
        labels["layer"] = [f"layer {i}" for i in range(ds.sizes["layer"])]
    flag_failures, flag_broken, meanings_of = _check_flags(ds, layout, source, labels)
    failures += flag_failures
    broken |= flag_broken

    models, layers = _tables_from_dataset(ds, layout, meanings_of)
    present_models = models.drop(columns=[c for c in models if c in broken])
    present_layers = layers.drop(columns=[c for c in layers if c in broken and c != "layer"])
    _, model_failures = _models_table(present_models, source, ds.sizes.get("layer"))
    _, layer_failures = _layers_table(
        present_layers, source, ds.sizes.get("filter"), ds.sizes.get("model")
    )
    for failure in model_failures + layer_failures:
        is_missing = failure.check == "column present" and failure.column in broken
        if not is_missing and failure.column not in broken:
            failures.append(failure)
    failures += _cross_checks(ds, present_models, present_layers, source)

    if failures:
        raise SchemaValidationError(source, failures)
