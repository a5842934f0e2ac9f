"""The zoo: params.yaml read strictly (duplicate ids, unknown keys and bad labels are errors).

``params.yaml`` holds every constant of the pipeline and the zoo: ``zoo`` (entries with any
``source``) and ``trained`` (entries trained by the pipeline itself; ``source: trained`` is
implied). Zoo order, the order of models in the dataset, is ``zoo`` then ``trained``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from filterdb.dataset.contract import CATEGORICAL
from filterdb.errors import FilterDBError

__all__ = [
    "ENTRY_META_KEYS",
    "TOP_LEVEL_KEYS",
    "ParamsError",
    "check_param_types",
    "load_params",
    "zoo_entries",
]

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
#: Meta-parameters only the zoo entry can state, so every entry's ``meta`` must set them (the
#: sources add ``weight_precision``, ``bn_folded`` and ``license``; ``source`` is the entry's).
#: Without them the model would be labelled ``unknown``, outside the vocabularies.
ENTRY_META_KEYS = tuple(
    k for k in CATEGORICAL if k not in ("source", "weight_precision", "bn_folded", "license")
)


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
        A missing file, not UTF-8, not YAML, duplicate keys, an unknown top-level key, or a
        typed section's unknown key or wrongly typed value (:func:`check_param_types`).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such params file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ParamsError(
            f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} at line {line})"
        ) from None
    try:
        loader = _StrictLoader(text)
        loader.name = str(path)
        try:
            params = loader.get_single_data() or {}
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(params) - TOP_LEVEL_KEYS)
    if unknown:
        raise ParamsError(
            f"{path}: unknown top-level key(s) {unknown}; allowed: {sorted(TOP_LEVEL_KEYS)}"
        )
    check_param_types(params, str(path))
    return params


#: params.yaml sections read into a dataclass of typed fields: section -> (module, class). Their
#: keys and value types are checked when params.yaml is read, before any work.
SECTION_CLASSES = {
    "store": ("filterdb.dataset.store", "StoreParams"),
    "degeneracy": ("filterdb.stats.degeneracy", "DegeneracyParams"),
    "shifts": ("filterdb.stats.shifts", "ShiftsParams"),
}  # not ``dask``: its module imports dask, an extra; DaskParams checks its keys itself
#: Types of the zoo entry keys (and ``train:`` defaults) that several sources share; other keys
#: are checked by their source.
ENTRY_KEY_TYPES: dict[str, Any] = {
    "seed": int,
    "epochs": int,
    "batch_size": int,
    "threads": int,
    "width": int | None,
    "n_train": int | None,
    "n_test": int | None,
    "lr": float,
    "momentum": float,
    "weight_decay": float,
    "warmup": float,
    "noise_std": float,
    "bn_recalibrate": bool,
    "input_size": list[int] | None,
}


def _fits(value: Any, hint: Any) -> bool:
    """Whether a YAML value has the type ``hint`` (types this does not know are accepted)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return False
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return all(_fits(v, args[0]) for v in value) if args else True
        if len(value) != len(args):
            return False
        return all(_fits(v, a) for v, a in zip(value, args, strict=True))
    if origin is typing.Literal:
        return value in args
    return True


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number",
             str: "a string"}
    if hint in names:
        return names[hint]
    if origin in (tuple, list) and args:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    return str(hint)


def _check_values(values: Mapping[str, Any], hints: Mapping[str, Any], where: str) -> None:
    for key, value in values.items():
        if key in hints and not _fits(value, hints[key]):
            raise ParamsError(f"{where}.{key} is {value!r}, not {_describe(hints[key])}")


def check_param_types(params: Mapping[str, Any], path: str = "params.yaml") -> None:
    """Check the keys and value types of the typed sections of params.yaml, before any work.

    Each section of :data:`SECTION_CLASSES` must be a mapping of its class's fields, each value
    of the field's type (an integer is a number; ``1e-7`` without a dot is a string in YAML);
    ``train:`` and the zoo entries' shared keys (:data:`ENTRY_KEY_TYPES`) too.

    Parameters
    ----------
    params : mapping
        The parsed params file.
    path : str
        Named in the message.

    Raises
    ------
    ParamsError
        Naming the file, the section and key, and the value: a section that is not a mapping,
        an unknown key (with the closest known one) or a value of the wrong type.
    """
    for section, (module, name) in SECTION_CLASSES.items():
        values = params.get(section)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ParamsError(f"{path}: {section} must be a mapping, not {values!r}")
        cls = getattr(importlib.import_module(module), name)
        hints = typing.get_type_hints(cls)
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ParamsError(
                    f"{path}: unknown key {key!r} under {section!r} ({hint}known: "
                    f"{', '.join(known)})"
                )
        _check_values(values, hints, f"{path}: {section}")
    train = params.get("train")
    if train is not None:
        if not isinstance(train, Mapping):
            raise ParamsError(f"{path}: train must be a mapping, not {train!r}")
        _check_values(train, ENTRY_KEY_TYPES, f"{path}: train")
    for section in ("zoo", "trained"):
        block = params.get(section)
        if isinstance(block, Mapping):  # its shape is checked by zoo_entries
            for model_id, entry in block.items():
                if isinstance(entry, Mapping):
                    _check_values(entry, ENTRY_KEY_TYPES, f"{path}: {section}.{model_id}")


def _entry_meta(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The entry's ``meta`` block, which must set every key of :data:`ENTRY_META_KEYS`."""
    if "meta" not in entry or entry["meta"] is None:
        raise ParamsError(f"{where} has no 'meta' (it must set {', '.join(ENTRY_META_KEYS)})")
    meta = entry["meta"]
    if not isinstance(meta, Mapping):
        raise ParamsError(
            f"{where}.meta must be a mapping of meta-parameters, not {type(meta).__name__} "
            f"{meta!r}"
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
        A model id used twice (also across ``zoo`` and ``trained``), a malformed id, a
        missing source, or a missing ``meta`` (or one lacking a key of
        :data:`ENTRY_META_KEYS`).
    filterdb.validate.schema.SchemaValidationError
        An unknown meta key or a value outside its vocabulary.
    """
    from filterdb.validate.schema import validate_entry_meta  # pandera: only when entries are read

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
