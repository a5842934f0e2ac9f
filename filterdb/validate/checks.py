"""The ``filterdb_*`` checks that ``schemas/models.yaml`` and ``schemas/layers.yaml`` name.

Each is a vectorized pandera check; :func:`register_checks` registers them all with pandera's
extension API (as ``pandera.Check.filterdb_*``), which must happen before those files are read.
A check whose columns are absent passes: the missing column is reported on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import extensions

from filterdb.validate.schema_files import load_vocabularies

__all__ = [
    "as_numeric",
    "filterdb_contiguous",
    "filterdb_divisible",
    "filterdb_filter_count",
    "filterdb_first_equals",
    "filterdb_in_vocabulary",
    "filterdb_non_decreasing",
    "filterdb_not_greater",
    "filterdb_ratio_equals",
    "filterdb_sum_equals",
    "has_columns",
    "register_checks",
]

#: every check of this module with the names of its statistics (its keyword arguments)
_CHECKS: list[tuple[Callable[..., Any], list[str]]] = []


def _check(statistics: list[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        _CHECKS.append((fn, statistics))
        return fn

    return decorator


def register_checks() -> None:
    """Register every ``filterdb_*`` check with pandera (once; later calls do nothing).

    Examples
    --------
    >>> register_checks()
    >>> hasattr(pa.Check, "filterdb_contiguous")
    True
    """
    for fn, statistics in _CHECKS:
        if not hasattr(pa.Check, fn.__name__):  # registering twice is an error
            extensions.register_check_method(statistics=statistics, check_type="vectorized")(fn)


def has_columns(df: pd.DataFrame, *columns: str) -> bool:
    """Whether ``df`` has every one of ``columns``.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.
    *columns : str
        Column names.

    Returns
    -------
    bool
    """
    return all(c in df.columns for c in columns)


def as_numeric(series: pd.Series) -> pd.Series:
    """``series`` as numbers; what cannot be read as a number becomes NaN.

    Parameters
    ----------
    series : pandas.Series
        Any column.

    Returns
    -------
    pandas.Series
    """
    return pd.to_numeric(series, errors="coerce")


@_check(["vocabulary"])
def filterdb_in_vocabulary(series: pd.Series, *, vocabulary: str) -> pd.Series:
    """Values belong to the named controlled vocabulary."""
    return series.isin(load_vocabularies()[vocabulary])


@_check(["first", "count"])
def filterdb_contiguous(df: pd.DataFrame, *, first: str, count: str) -> pd.Series:
    """Contiguous ragged array: ``first[i] == first[i-1] + count[i-1]``."""
    if not has_columns(df, first, count):
        return pd.Series(True, index=df.index)
    f, c = as_numeric(df[first]), as_numeric(df[count])
    expected = (f + c).shift(1)
    return (f == expected) | expected.isna()


@_check(["count", "out_channels", "in_channels", "groups"])
def filterdb_filter_count(
    df: pd.DataFrame, *, count: str, out_channels: str, in_channels: str, groups: str
) -> pd.Series:
    """``count == out_channels * in_channels / groups``."""
    if not has_columns(df, count, out_channels, in_channels, groups):
        return pd.Series(True, index=df.index)
    expected = as_numeric(df[out_channels]) * as_numeric(df[in_channels]) / as_numeric(df[groups])
    return as_numeric(df[count]) == expected


@_check(["column", "divisor"])
def filterdb_divisible(df: pd.DataFrame, *, column: str, divisor: str) -> pd.Series:
    """``column`` is a multiple of ``divisor``."""
    if not has_columns(df, column, divisor):
        return pd.Series(True, index=df.index)
    d = as_numeric(df[divisor])
    return (d > 0) & (as_numeric(df[column]) % d.where(d > 0) == 0)


@_check(["column", "other"])
def filterdb_not_greater(df: pd.DataFrame, *, column: str, other: str) -> pd.Series:
    """``column <= other``."""
    if not has_columns(df, column, other):
        return pd.Series(True, index=df.index)
    return as_numeric(df[column]) <= as_numeric(df[other])


@_check(["column", "numerator", "denominator"])
def filterdb_ratio_equals(
    df: pd.DataFrame, *, column: str, numerator: str, denominator: str
) -> pd.Series:
    """``column == numerator / denominator`` (NaN where the denominator is 0)."""
    if not has_columns(df, column, numerator, denominator):
        return pd.Series(True, index=df.index)
    num, den = as_numeric(df[numerator]), as_numeric(df[denominator])
    got = as_numeric(df[column])
    expected = num / den.where(den != 0)
    close = np.isclose(got, expected, rtol=1e-9, atol=1e-12, equal_nan=True)
    return pd.Series(close, index=df.index)


@_check(["columns"])
def filterdb_non_decreasing(df: pd.DataFrame, *, columns: list[str]) -> pd.Series:
    """Rows are sorted by the tuple ``columns`` (non-decreasing)."""
    if not has_columns(df, *columns) or len(df) < 2:
        return pd.Series(True, index=df.index)
    ok = np.ones(len(df), dtype=bool)
    tied = np.ones(len(df) - 1, dtype=bool)  # rows equal to the previous one so far
    decided = np.zeros(len(df) - 1, dtype=bool)
    for col in columns:
        v = as_numeric(df[col]).to_numpy(dtype=float)
        prev, cur = v[:-1], v[1:]
        less = tied & ~decided & (cur < prev)
        ok[1:] &= ~less
        decided |= tied & (cur != prev)
    return pd.Series(ok, index=df.index)


@_check(["column", "total"])
def filterdb_sum_equals(df: pd.DataFrame, *, column: str, total: int) -> bool:
    """The column sums to ``total``."""
    return not has_columns(df, column) or int(as_numeric(df[column]).sum()) == int(total)


@_check(["column", "value"])
def filterdb_first_equals(df: pd.DataFrame, *, column: str, value: int) -> pd.Series:
    """The first row's ``column`` equals ``value`` (a ragged array starts at 0)."""
    ok = pd.Series(True, index=df.index)
    if has_columns(df, column) and len(df):
        ok.iloc[0] = bool(as_numeric(df[column]).iloc[0] == value)
    return ok
