"""CF flag codes of the coded variables (``flag_values``/``flag_meanings``): one encoder, one
decoder.

The writer encodes each categorical meta-parameter as int codes ``0..k-1`` with the sorted
distinct strings as meanings (``docs/data-layout.md``); every reader turns codes back into strings
through :func:`flag_lookup` (lenient: what a missing code becomes is the caller's choice) or
:func:`decode_flags` (strict: an unknown code is an error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from filterdb.errors import InputError

__all__ = ["decode_flags", "encode_flags", "flag_lookup"]


def encode_flags(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """int16 codes of ``values`` and the meanings they index (the sorted distinct values).

    Examples
    --------
    >>> codes, meanings = encode_flags(["b", "a", "b"])
    >>> codes.tolist(), meanings
    ([1, 0, 1], ['a', 'b'])
    """
    meanings = sorted(set(values))
    lookup = {v: i for i, v in enumerate(meanings)}
    return np.array([lookup[v] for v in values], dtype=np.int16), meanings


def flag_lookup(attrs: Mapping[str, Any], *, strict: bool = False) -> dict[int, str]:
    """``code -> meaning`` of a variable's attributes (``flag_values`` default to ``0..k-1``).

    Parameters
    ----------
    attrs : mapping
        The variable's attributes; without ``flag_meanings`` the lookup is empty.
    strict : bool
        Raise ``ValueError`` when there are not as many values as meanings (else the shorter wins).

    Examples
    --------
    >>> flag_lookup({"flag_values": [0, 1], "flag_meanings": "no yes"})
    {0: 'no', 1: 'yes'}
    """
    meanings = str(attrs.get("flag_meanings", "")).split()
    values = np.atleast_1d(np.asarray(attrs.get("flag_values", np.arange(len(meanings)))))
    return {int(v): m for v, m in zip(values.tolist(), meanings, strict=strict)}


def decode_flags(codes: np.ndarray, attrs: Mapping[str, Any]) -> np.ndarray:
    """Turn integer codes back into strings with a variable's ``flag_values``/``flag_meanings``.

    Parameters
    ----------
    codes : numpy.ndarray
        The stored integer codes.
    attrs : mapping
        The variable's attributes (both flag attributes are required).

    Returns
    -------
    numpy.ndarray of object
        The decoded strings; a code outside ``flag_values`` raises :class:`InputError`.

    Examples
    --------
    >>> decode_flags(np.array([1, 0]), {"flag_values": [0, 1], "flag_meanings": "no yes"})
    array(['yes', 'no'], dtype=object)
    """
    lookup = flag_lookup(
        {"flag_values": attrs["flag_values"], "flag_meanings": attrs["flag_meanings"]},
        strict=True,
    )
    try:
        return np.array([lookup[int(c)] for c in np.asarray(codes).ravel()], dtype=object)
    except KeyError as exc:
        raise InputError(f"code {exc.args[0]} is not among flag_values {list(lookup)}") from None
