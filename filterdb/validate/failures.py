"""Validation failures and the one report they make.

Every validator of :mod:`filterdb.validate` is lazy: it collects every :class:`Failure`
(source, row, column, value, check) and raises one :class:`SchemaValidationError` whose message
is the full report (:func:`format_report`). This module also words values and vocabulary checks
the same way for every validator; it needs neither pandas nor pandera.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from filterdb.errors import FilterDBError

__all__ = [
    "Failure",
    "SchemaValidationError",
    "format_report",
    "show_value",
    "vocabulary_check_text",
]


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


def show_value(value: Any) -> str:
    """A value as report text: strings quoted, numpy scalars as plain Python.

    Parameters
    ----------
    value : object
        The offending value.

    Returns
    -------
    str
        Its text (bytes are decoded).

    Examples
    --------
    >>> show_value(np.int16(3)), show_value(b"resnet18")
    ('3', "'resnet18'")
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return repr(value) if isinstance(value, str) else str(value)


def vocabulary_check_text(value: Any, vocabulary: str, allowed: list[str]) -> str:
    """The check text of a value outside a controlled vocabulary, with the closest allowed value.

    Parameters
    ----------
    value : object
        The offending value.
    vocabulary : str
        The vocabulary's name.
    allowed : list of str
        Its values.

    Returns
    -------
    str
        ``in vocabulary 'NAME' (one of ...)`` and, when one is close, ``; did you mean 'X'?``.

    Examples
    --------
    >>> vocabulary_check_text("clasification", "task", ["classification", "detection"])
    "in vocabulary 'task' (one of classification, detection); did you mean 'classification'?"
    """
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"in vocabulary {vocabulary!r} (one of {', '.join(allowed)}){hint}"
