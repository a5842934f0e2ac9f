"""Early check of one zoo entry's meta-parameters against ``schemas/models.yaml``.

A zoo entry (``params.yaml``, timm's registry) declares the meta-parameters its model will carry
in the model table; this checks them before any extraction, with the model table's own column
specs and vocabularies, so a typo stops the pipeline at once. Reads the schema files only: no
pandas, no pandera.
"""

from __future__ import annotations

import difflib
import numbers
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from filterdb.validate.failures import (
    Failure,
    SchemaValidationError,
    show_value,
    vocabulary_check_text,
)
from filterdb.validate.schema_files import load_vocabularies, read_schema_file

__all__ = ["is_real", "validate_entry_meta"]


def is_real(x: Any) -> bool:
    """Whether ``x`` is a real number (a bool is not).

    Examples
    --------
    >>> is_real(0.5), is_real(np.float32(1)), is_real(True), is_real("1")
    (True, True, False, False)
    """
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


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
        failures.append(Failure(source, None, label, key, show_value(value), check))

    if not isinstance(model_id, str) or not re.fullmatch(r"\S+", model_id):
        fail("model", model_id, "model id non-empty, no whitespace")
    if not isinstance(meta, Mapping):
        fail("meta", meta, "a mapping of meta-parameters")
        raise SchemaValidationError(source, failures)

    schema_yaml = read_schema_file("models.yaml")
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
                fail(key, value, vocabulary_check_text(value, vocab_name, vocab[vocab_name]))
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
            ok = value is None or (is_real(value) and (np.isnan(value) or 0 <= value <= 1))
            if not ok:
                fail(key, value, "a number in [0, 1] or null")
    if failures:
        raise SchemaValidationError(source, failures)
