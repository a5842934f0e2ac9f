"""The schema files (``filterdb/validate/schemas/``): where they are, their vocabularies, version
and dataset layout.

The files are package data, read through :mod:`importlib.resources` (so an installed wheel
validates anywhere); ``$FILTERDB_SCHEMA_DIR``, when set, names another directory instead. Each
file is parsed once per directory. Turning ``models.yaml`` and ``layers.yaml`` into pandera
schemas is :mod:`filterdb.validate.tables`' job; this module needs neither pandas nor pandera.
"""

from __future__ import annotations

import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "SCHEMA_DIR_ENV",
    "SCHEMA_PACKAGE_DIR",
    "dataset_layout",
    "layout_attribute",
    "load_vocabularies",
    "read_schema_file",
    "schema_dir",
    "schema_version",
]

SCHEMA_DIR_ENV = "FILTERDB_SCHEMA_DIR"
"""Environment variable that overrides the schema directory."""

SCHEMA_PACKAGE_DIR = "schemas"
"""The schema folder inside the ``filterdb`` package (package data)."""


def schema_dir() -> Path | Traversable:
    """The directory holding the schema files.

    Returns
    -------
    pathlib.Path or importlib.resources.abc.Traversable
        ``$FILTERDB_SCHEMA_DIR`` if set (a path), else the package data folder
        ``filterdb/validate/schemas`` (through :mod:`importlib.resources`, so it is found in an
        installed wheel as well as in the repository).

    Examples
    --------
    >>> schema_dir().joinpath("vocabularies.yaml").is_file()
    True
    """
    override = os.environ.get(SCHEMA_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return resources.files("filterdb.validate").joinpath(SCHEMA_PACKAGE_DIR)


#: parsed schema files by (directory, file name); setting $FILTERDB_SCHEMA_DIR switches directory
_PARSED: dict[tuple[str, str], dict[str, Any]] = {}


def read_schema_file(name: str) -> dict[str, Any]:
    """One schema file of :func:`schema_dir`, parsed (once per directory).

    Parameters
    ----------
    name : str
        The file name, e.g. ``"models.yaml"``.

    Returns
    -------
    dict
        The parsed YAML (``{}`` for an empty file). Shared between callers: copy before editing.

    Raises
    ------
    FileNotFoundError
        The file is not in the schema directory.

    Examples
    --------
    >>> read_schema_file("dataset.yaml")["dims"]["ky"]
    3
    """
    directory = schema_dir()
    key = (str(directory), name)
    if key not in _PARSED:
        path = directory.joinpath(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"schema file {path} not found (set {SCHEMA_DIR_ENV} to the schema directory)"
            )
        _PARSED[key] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return _PARSED[key]


def load_vocabularies() -> dict[str, list[str]]:
    """The controlled vocabularies of ``schemas/vocabularies.yaml``.

    Returns
    -------
    dict of str to list of str
        Meta-parameter name -> allowed values (a fresh copy; edit the YAML, not this).

    Examples
    --------
    >>> "classification" in load_vocabularies()["task"]
    True
    """
    vocab = read_schema_file("vocabularies.yaml").get("vocabularies", {})
    return {key: [str(v) for v in values] for key, values in vocab.items()}


def schema_version() -> str:
    """The filterdb schema version (``version`` of ``schemas/vocabularies.yaml``).

    Every schema file carries the same version; a mismatch is an error.

    Returns
    -------
    str
        The version, e.g. ``"1"``; the dataset's ``filterdb_schema_version`` attribute equals it.

    Examples
    --------
    >>> schema_version()
    '2'
    """
    version = str(read_schema_file("vocabularies.yaml")["version"])
    others = {
        "models.yaml": read_schema_file("models.yaml")
        .get("metadata", {})
        .get("filterdb_schema_version"),
        "layers.yaml": read_schema_file("layers.yaml")
        .get("metadata", {})
        .get("filterdb_schema_version"),
        "dataset.yaml": read_schema_file("dataset.yaml").get("version"),
    }
    bad = {name: v for name, v in others.items() if str(v) != version}
    if bad:
        raise ValueError(
            f"schema files in {schema_dir()} disagree on the version: vocabularies.yaml has "
            f"{version}, " + ", ".join(f"{name} has {v}" for name, v in bad.items())
        )
    return version


def dataset_layout() -> dict[str, Any]:
    """The dataset layout of ``schemas/dataset.yaml`` (dims, global attributes, variables).

    Returns
    -------
    dict
        The parsed YAML; see the file's header for the format.
    """
    return read_schema_file("dataset.yaml")


def layout_attribute(value: Any) -> str:
    """An attribute value of ``schemas/dataset.yaml`` as the dataset must hold it.

    Parameters
    ----------
    value : object
        The value written in the layout; ``{schema_version}`` stands for :func:`schema_version`.

    Returns
    -------
    str
        The value as text, with the schema version filled in.

    Examples
    --------
    >>> layout_attribute("{schema_version}") == schema_version()
    True
    """
    return str(value).replace("{schema_version}", schema_version())
