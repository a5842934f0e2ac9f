"""The zoo: params.yaml read strictly (duplicate ids, unknown keys and bad labels are errors).

``params.yaml`` holds every constant of the pipeline and the zoo: ``zoo`` (entries with any
``source``) and ``trained`` (entries trained by the pipeline itself; ``source: trained`` is
implied). Zoo order, the order of models in the dataset, is ``zoo`` then ``trained``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from filterdb.errors import FilterDBError
from filterdb.schema import validate_entry_meta

__all__ = ["TOP_LEVEL_KEYS", "ParamsError", "load_params", "zoo_entries"]

TOP_LEVEL_KEYS = frozenset(
    {
        "zoo",
        "trained",
        "packages",
        "store",
        "train",
        "degeneracy",
        "shifts",
        "plots",
        "release",
        "dask",
    }
)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ParamsError(FilterDBError, ValueError):
    """params.yaml is malformed: the message names the file, entry and key."""


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate mapping keys (PyYAML keeps the last silently)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`, flattened below
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ParamsError(
                f"{node.start_mark.name}: duplicate key {key!r} "
                f"at line {key_node.start_mark.line + 1}"
                f" (first at line {seen[key] + 1})"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """Read params.yaml strictly.

    Parameters
    ----------
    path : path-like
        The params file.

    Returns
    -------
    dict

    Raises
    ------
    ParamsError
        Unreadable file, duplicate keys, or an unknown top-level key.
    """
    path = Path(path)
    try:
        with path.open() as f:
            params = yaml.load(f, Loader=_StrictLoader) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such params file") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(params) - TOP_LEVEL_KEYS)
    if unknown:
        raise ParamsError(
            f"{path}: unknown top-level key(s) {unknown}; allowed: {sorted(TOP_LEVEL_KEYS)}"
        )
    return params


def zoo_entries(params: Mapping[str, Any], path: str = "params.yaml") -> dict[str, dict[str, Any]]:
    """All zoo entries in zoo order, each with its ``source`` and ``meta``.

    Parameters
    ----------
    params : mapping
        What :func:`load_params` returned.
    path : str
        Named in error messages.

    Returns
    -------
    dict of str to dict
        Model id -> entry.

    Raises
    ------
    ParamsError
        A model id used twice (also across ``zoo`` and ``trained``), a malformed id or a
        missing source.
    filterdb.schema.SchemaValidationError
        An unknown meta key or a value outside its vocabulary.
    """
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
            meta = dict(entry.get("meta") or {})
            # unknown keys and values outside the vocabularies, all reported at once
            validate_entry_meta(
                model_id, {**meta, "source": entry["source"]}, source=f"{path}: {section}"
            )
            entry["meta"] = meta
            entries[model_id] = entry
    return entries
