"""params.yaml, parsed in one place: strict YAML, known sections, keys and value types.

``params.yaml`` holds every constant of the pipeline and the zoo. :func:`load_params` reads it
strictly (duplicate keys, unknown sections, unknown keys and wrongly typed values are errors
naming the file, section, key and value) before any work starts. The typed sections are read
into dataclasses that live beside the code they configure (:data:`SECTION_CLASSES`); their
fields and defaults are the one place each constant is defined, and :func:`section_params` is
the one parser that builds them. The zoo entries themselves are read by
:func:`filterdb.zoo.entries.zoo_entries`.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Knobs:
...     bins: int = 10
>>> section_params(Knobs, {"bins": 70}, "knobs")
Knobs(bins=70)
>>> section_params(Knobs, {"bin": 70}, "knobs")
Traceback (most recent call last):
...
filterdb.params.ParamsError: params: knobs: unknown key 'bin' (did you mean 'bins'? known: bins)
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from filterdb.errors import FilterDBError

__all__ = [
    "ENTRY_KEY_TYPES",
    "SECTION_CLASSES",
    "TOP_LEVEL_KEYS",
    "ParamsError",
    "check_param_types",
    "load_params",
    "section_params",
]

T = TypeVar("T")

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
    "store": ("filterdb.dataset.write", "StoreParams"),
    "degeneracy": ("filterdb.stats.params", "DegeneracyParams"),
    "shifts": ("filterdb.stats.params", "ShiftsParams"),
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


def _plain(value: Any) -> Any:
    """A numpy value as the Python value YAML would give, so it is checked and stored as one.

    Parameters
    ----------
    value : object
        A value given for a params key, e.g. ``np.int64(3)``, ``np.linspace(0, 1, 11)``.

    Returns
    -------
    object
        Numpy scalars as Python scalars (a numpy bool as a bool, still no integer), 1-D arrays as
        lists, lists and tuples element by element; anything else (a 2-D array too) unchanged.
    """
    np = sys.modules.get("numpy")  # not imported: the value cannot be a numpy one
    if np is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return value.tolist()
    if type(value) in (list, tuple):
        return type(value)(map(_plain, value))
    return value


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    names = {
        type(None): "null",
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
    }
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


def _check_section(cls: type, values: Mapping[str, Any], where: str) -> None:
    """Unknown keys (with the closest known one) and wrongly typed values of a section."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ParamsError(f"{where}: unknown key {key!r} ({hint}known: {', '.join(known)})")
    _check_values(values, hints, where)


def section_params(cls: type[T], values: Mapping[str, Any] | None, section: str) -> T:
    """Build the dataclass ``cls`` of a params section from its mapping (``None``: defaults).

    Parameters
    ----------
    cls : dataclass type
        The section's class; its fields and defaults define the section.
    values : mapping or None
        The section as read from params.yaml, or given by a caller: numpy scalars and 1-D arrays
        are checked and passed on as the Python scalars and lists they hold.
    section : str
        The section's name, for messages.

    Raises
    ------
    ParamsError
        Not a mapping, an unknown key (with the closest known one) or a value of the wrong
        type; the class's own checks (``__post_init__``) raise their own errors.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ParamsError(f"params {section!r} must be a mapping, not {values!r}")
    values = {key: _plain(value) for key, value in values.items()}
    _check_section(cls, values, f"params: {section}")
    return cls(**values)


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
        _check_section(getattr(importlib.import_module(module), name), values, f"{path}: {section}")
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
