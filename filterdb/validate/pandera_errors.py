"""pandera's lazy ``SchemaErrors`` -> :class:`~filterdb.validate.failures.Failure` lines.

pandera reports a failed check as a table of failure cases; the report of
:mod:`filterdb.validate` names one row (with its model id or layer index), column, value and
expectation per line. :func:`failures_from_table_errors` does this for the model and layer tables
(wording each ``filterdb_*`` check with the values it compared), and
:func:`failures_from_dataset_errors` for the structural pass over the dataset layout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pandera.xarray as px
from pandera.errors import SchemaErrors

from filterdb.validate.checks import as_numeric
from filterdb.validate.failures import Failure, show_value, vocabulary_check_text
from filterdb.validate.schema_files import layout_attribute, load_vocabularies

__all__ = ["failures_from_dataset_errors", "failures_from_table_errors"]


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
        total = int(as_numeric(df[stats["column"]]).sum())
        return (
            stats["column"],
            f"sum={total}",
            f"sum of {stats['column']} == {stats['total']} (the dataset's size)",
        )
    if name == "filterdb_first_equals":
        return stats["column"], str(val(stats["column"])), f"first row's value == {stats['value']}"
    return None, "", name


def _row_label(df: pd.DataFrame, row: int, key: str) -> str | None:
    if key not in df.columns or not 0 <= row < len(df):
        return None
    return f"{key} {show_value(df[key].iloc[row])}"


def failures_from_table_errors(
    exc: SchemaErrors, df: pd.DataFrame, source: str, key: str
) -> list[Failure]:
    """Turn pandera's lazy errors on a table into one Failure per row/column/check.

    Parameters
    ----------
    exc : pandera.errors.SchemaErrors
        What ``DataFrameSchema.validate(df, lazy=True)`` raised.
    df : pandas.DataFrame
        The table validated (positional rows, as pandera saw it).
    source : str
        Where the table came from; named in each failure.
    key : str
        The column that names a row in the report (``"model"`` or ``"layer"``).

    Returns
    -------
    list of Failure
        In pandera's order.
    """
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
                    row_text = vocabulary_check_text(value, name, load_vocabularies()[name])
                failures.append(Failure(source, row, label, column, show_value(value), row_text))
        else:
            failures.append(Failure(source, None, None, column, str(cases), text))
    return failures


def _attr_expectation(spec: Any) -> str:
    if spec is None:
        return "present, non-blank"
    return f"== {layout_attribute(spec)!r}"


def failures_from_dataset_errors(
    exc: SchemaErrors, source: str, layout: Mapping[str, Any]
) -> tuple[list[Failure], set[str]]:
    """Turn pandera.xarray's lazy errors into Failures; also return the broken variables.

    Parameters
    ----------
    exc : pandera.errors.SchemaErrors
        What ``pandera.xarray.DatasetSchema.validate(ds, lazy=True)`` raised.
    source : str
        The file name; named in each failure.
    layout : mapping
        The layout the schema was built from
        (:func:`~filterdb.validate.schema_files.dataset_layout`).

    Returns
    -------
    failures : list of Failure
        One per missing variable, wrong dims or dtype, missing or wrong attribute.
    broken : set of str
        The variables that are missing or malformed (the later table checks skip them).
    """
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
