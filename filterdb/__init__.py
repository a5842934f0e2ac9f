"""filterdb: an open, versioned database of trained 3x3 convolution filters.

Open a dataset with :func:`open_dataset` (plain ``xarray.open_dataset`` works too); importing
filterdb registers the ``ds.filterdb`` accessor.

Importing filterdb itself is cheap (the command line starts from here): the accessor module,
which needs xarray and pandas, is imported as soon as xarray is, whichever of the two is imported
first, and :func:`open_dataset` and :class:`FilterDBAccessor` are loaded on first use.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

from filterdb.version import __version__

#: Public names loaded on first access (PEP 562), with their module.
_LAZY = {
    "FilterDBAccessor": "filterdb.dataset.accessor",
    "open_dataset": "filterdb.dataset.accessor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'filterdb' has no attribute {name!r}")


def open_release(version: str, repo: str | None = None, **kwargs: object) -> object:
    """Open a release's ``filters.nc`` through DVC.

    See :func:`filterdb.release.publish.open_release`.
    """
    from filterdb.release.publish import open_release as _open

    return _open(version, repo=repo, **kwargs)


class _AccessorOnXarrayImport(importlib.abc.MetaPathFinder):
    """Registers ``ds.filterdb`` right after ``xarray`` finishes importing, then steps aside.

    It finds xarray with the standard path finder and wraps its loader's ``exec_module`` so that
    :mod:`filterdb.dataset.accessor` is imported once xarray's module body has run.
    """

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "xarray":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return None  # let the other finders handle it; nothing registered then
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            _remove_hook()
            importlib.import_module("filterdb.dataset.accessor")

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AccessorOnXarrayImport)]


if "xarray" in sys.modules:
    importlib.import_module("filterdb.dataset.accessor")
else:
    sys.meta_path.insert(0, _AccessorOnXarrayImport())

__all__ = ["FilterDBAccessor", "__version__", "open_dataset", "open_release"]
