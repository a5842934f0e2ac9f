"""Validation of the model table and the layer table (``schemas/models.yaml``, ``layers.yaml``).

Both files are pandera's own YAML, turned into ``pandera.pandas.DataFrameSchema`` objects after
the ``filterdb_*`` checks they name are registered (:mod:`filterdb.validate.checks`). A table is
widened losslessly to the schema's dtypes, validated lazily, and every failure is reported at once
as a :class:`~filterdb.validate.failures.SchemaValidationError`.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping

import pandas as pd
import pandera.io.pandas_io as pandera_io
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from filterdb.validate.checks import register_checks
from filterdb.validate.entry_meta import is_real
from filterdb.validate.failures import Failure, SchemaValidationError
from filterdb.validate.pandera_errors import failures_from_table_errors
from filterdb.validate.schema_files import load_vocabularies, read_schema_file, schema_dir

__all__ = [
    "check_layers_table",
    "check_models_table",
    "layers_schema",
    "models_schema",
    "validate_layers",
    "validate_models",
]

register_checks()  # the schema files and the sum/first checks below name them


def _load_table_schema(name: str) -> pa.DataFrameSchema:
    path = schema_dir() / name
    schema = pandera_io.deserialize_schema(copy.deepcopy(read_schema_file(name)))
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
            elif s.dtype == object and all(x is None or is_real(x) for x in s):
                out[name] = pd.to_numeric(s, errors="coerce").astype("float64")
    return out


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
        failures = failures_from_table_errors(exc, work, source, key)
    out = work.set_index(moved) if moved else work.set_axis(df.index)
    return out, failures


def check_models_table(
    df: pd.DataFrame, source: str, n_layers: int | None
) -> tuple[pd.DataFrame, list[Failure]]:
    """The model table widened, and its failures (:func:`validate_models` without raising).

    Parameters
    ----------
    df : pandas.DataFrame
        One row per model.
    source : str
        Where the table came from; named in each failure.
    n_layers : int or None
        The dataset's number of layers, if known.

    Returns
    -------
    table : pandas.DataFrame
        As :func:`validate_models` returns it.
    failures : list of Failure
        Empty when the table is valid.
    """
    extra = []
    if n_layers is not None:
        extra = [
            pa.Check.filterdb_sum_equals(column="model_layer_count", total=int(n_layers)),
            pa.Check.filterdb_first_equals(column="model_first_layer", value=0),
        ]
    return _validate_table(df, models_schema(), source, "model", extra)


def check_layers_table(
    df: pd.DataFrame, source: str, n_filters: int | None, n_models: int | None
) -> tuple[pd.DataFrame, list[Failure]]:
    """The layer table widened, and its failures (:func:`validate_layers` without raising).

    Parameters
    ----------
    df : pandas.DataFrame
        One row per layer, in dataset order.
    source : str
        Where the table came from; named in each failure.
    n_filters : int or None
        The dataset's number of filters, if known.
    n_models : int or None
        The number of models, if known.

    Returns
    -------
    table : pandas.DataFrame
        As :func:`validate_layers` returns it.
    failures : list of Failure
        Empty when the table is valid.
    """
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
    out, failures = check_models_table(df, source, n_layers)
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
    out, failures = check_layers_table(df, source, n_filters, n_models)
    if failures:
        raise SchemaValidationError(source, failures)
    return out
