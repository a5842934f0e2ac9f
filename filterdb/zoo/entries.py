"""The zoo entries of params.yaml: ids, sources and meta-parameters, checked strictly.

``zoo`` holds entries with any ``source``, ``trained`` the entries trained by the pipeline
itself (``source: trained`` is implied). Zoo order, the order of models in the dataset, is
``zoo`` then ``trained``. Duplicate ids, a missing ``meta`` and labels outside the vocabularies
are errors; the file itself is read by :func:`filterdb.params.load_params`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from filterdb.dataset.contract import CATEGORICAL
from filterdb.params import ParamsError

__all__ = ["ENTRY_META_KEYS", "zoo_entries"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Meta-parameters only the zoo entry can state, so every entry's ``meta`` must set them (the
#: sources add ``weight_precision``, ``bn_folded`` and ``license``; ``source`` is the entry's).
#: Without them the model would be labelled ``unknown``, outside the vocabularies.
ENTRY_META_KEYS = tuple(
    k for k in CATEGORICAL if k not in ("source", "weight_precision", "bn_folded", "license")
)


def _entry_meta(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The entry's ``meta`` block, which must set every key of :data:`ENTRY_META_KEYS`."""
    if "meta" not in entry or entry["meta"] is None:
        raise ParamsError(f"{where} has no 'meta' (it must set {', '.join(ENTRY_META_KEYS)})")
    meta = entry["meta"]
    if not isinstance(meta, Mapping):
        raise ParamsError(
            f"{where}.meta must be a mapping of meta-parameters, not {type(meta).__name__} {meta!r}"
        )
    missing = [k for k in ENTRY_META_KEYS if k not in meta]
    if missing:
        raise ParamsError(f"{where}.meta lacks {', '.join(missing)}")
    return dict(meta)


def zoo_entries(params: Mapping[str, Any], path: str = "params.yaml") -> dict[str, dict[str, Any]]:
    """All zoo entries in zoo order, each with its ``source`` and ``meta``.

    Parameters
    ----------
    params : mapping
        What :func:`filterdb.params.load_params` returned.
    path : str
        Named in error messages.

    Returns
    -------
    dict of str to dict
        Model id -> entry.

    Raises
    ------
    ParamsError
        A model id used twice (also across ``zoo`` and ``trained``), a malformed id, a
        missing source, or a missing ``meta`` (or one lacking a key of
        :data:`ENTRY_META_KEYS`).
    filterdb.validate.failures.SchemaValidationError
        An unknown meta key or a value outside its vocabulary.
    """
    from filterdb.validate.entry_meta import validate_entry_meta  # only when entries are read

    entries: dict[str, dict[str, Any]] = {}
    for section in ("zoo", "trained"):
        block = params.get(section) or {}
        if not isinstance(block, Mapping):
            raise ParamsError(f"{path}: '{section}' must be a mapping of model id -> entry")
        for model_id, entry in block.items():
            model_id = str(model_id)
            if model_id in entries:
                raise ParamsError(f"{path}: duplicate model id {model_id!r} in 'zoo' and 'trained'")
            if not _ID.fullmatch(model_id):
                raise ParamsError(f"{path}: model id {model_id!r} must match {_ID.pattern}")
            if not isinstance(entry, Mapping):
                raise ParamsError(f"{path}: {section}.{model_id} must be a mapping")
            entry = dict(entry)
            if section == "trained":
                if entry.setdefault("source", "trained") != "trained":
                    raise ParamsError(f"{path}: trained.{model_id} must have source 'trained'")
            elif "source" not in entry:
                raise ParamsError(f"{path}: zoo.{model_id} has no 'source'")
            meta = _entry_meta(entry, f"{path}: {section}.{model_id}")
            # unknown keys and values outside the vocabularies, all reported at once
            validate_entry_meta(
                model_id, {**meta, "source": entry["source"]}, source=f"{path}: {section}"
            )
            entry["meta"] = meta
            entries[model_id] = entry
    return entries
