"""Optional dependencies: import a package of an extra, or say in one line which extra to install.

The base install (``pip install filterdb``) reads and validates the data; building it, running
the pipeline and a few other commands need an extra (``pip install 'filterdb[build]'``, see
``pyproject.toml``). Code that needs such a package imports it through :func:`require`, whose
:class:`MissingExtraError` is a :class:`~filterdb.errors.FilterDBError`: the command line prints
it as one line and exits 2. :func:`missing_extra` turns a ``ModuleNotFoundError`` raised by a
module-level import (``import torch`` at the top of a module) into the same error.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from filterdb.errors import FilterDBError

__all__ = ["EXTRAS", "MissingExtraError", "is_available", "missing_extra", "require"]

#: top-level import name -> the extra of ``pyproject.toml`` that installs it
EXTRAS: dict[str, str] = {
    "torch": "build",
    "torchvision": "build",
    "timm": "build",
    "safetensors": "build",
    "huggingface_hub": "build",
    "onnx": "build",
    "google": "build",  # google.protobuf, which onnx brings
    "h5py": "build",
    "tables": "build",
    "sklearn": "build",
    "mlxtend": "build",
    "skimage": "build",
    "tqdm": "build",
    "matplotlib": "plots",
    "dvc": "dvc",
    "dask": "dask",
    "distributed": "dask",
    "zarr": "zarr",
    "mlcroissant": "croissant",
}


class MissingExtraError(FilterDBError, ImportError):
    """A package of an optional extra is not installed; the message names the extra."""


def _message(package: str, extra: str, purpose: str | None) -> str:
    what = purpose or "this"
    return (
        f"{what} needs the optional package {package!r}, which is not installed: "
        f"pip install 'filterdb[{extra}]'"
    )


def require(module: str, extra: str | None = None, purpose: str | None = None) -> ModuleType:
    """Import ``module``, or raise an error naming the extra that installs it.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"torch"`` or ``"dvc.api"``.
    extra : str, optional
        The extra that installs it (default: looked up in :data:`EXTRAS` by the top-level name).
    purpose : str, optional
        What needs it, e.g. ``"filterdb extract"`` (default ``"this"``).

    Returns
    -------
    types.ModuleType
        The imported module.

    Raises
    ------
    MissingExtraError
        ``module`` (or a package it imports) is not installed.

    Examples
    --------
    >>> require("json").dumps([1])
    '[1]'
    >>> require("no_such_module_xyz", extra="build", purpose="the test")
    Traceback (most recent call last):
    ...
    filterdb.optional.MissingExtraError: the test needs the optional package \
'no_such_module_xyz', which is not installed: pip install 'filterdb[build]'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        chosen = (
            extra
            or EXTRAS.get(module.partition(".")[0])
            or EXTRAS.get(missing.partition(".")[0], "all")
        )
        raise MissingExtraError(_message(missing, chosen, purpose)) from exc


def missing_extra(exc: ModuleNotFoundError, purpose: str | None = None) -> MissingExtraError | None:
    """The error to show for ``exc`` if the missing module belongs to an extra, else None.

    Parameters
    ----------
    exc : ModuleNotFoundError
        Raised by an import, e.g. of a module that imports torch at its top.
    purpose : str, optional
        What needed it, e.g. ``"filterdb extract"``.

    Returns
    -------
    MissingExtraError or None
        None when the missing module is no optional dependency (a real bug: re-raise ``exc``).

    Examples
    --------
    >>> str(missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch")))
    "this needs the optional package 'torch', which is not installed: pip install 'filterdb[build]'"
    >>> missing_extra(ModuleNotFoundError("No module named 'filterdb.nope'", name="filterdb.nope"))
    """
    name = exc.name or ""
    extra = EXTRAS.get(name.partition(".")[0])
    if extra is None:
        return None
    error = MissingExtraError(_message(name, extra, purpose))
    error.__cause__ = exc
    return error


def is_available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it).

    Examples
    --------
    >>> is_available("json"), is_available("no_such_module_xyz")
    (True, False)
    """
    try:
        return importlib.util.find_spec(module) is not None
    except (ModuleNotFoundError, ValueError):  # a parent package is missing
        return False
