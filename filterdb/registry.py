"""One registry pattern for every place where things plug in: sources, training data, nets.

A :class:`Registry` maps names to values (a loader, a spec); modules register themselves with
:meth:`Registry.register` (usually as a decorator), and built-ins can be named ahead of time
with the module that registers them, imported only when first asked for (so that listing
sources never imports timm). An unknown name is an error of the registry's own class that
lists the known names, like timm's model registry does.

Examples
--------
>>> shapes = Registry("shape")
>>> @shapes.register("square")
... def square(a):
...     return a * a
>>> shapes.get("square")(3)
9
>>> shapes.names("sq*")
['square']
>>> shapes.get("circle")
Traceback (most recent call last):
...
KeyError: "unknown shape 'circle'; known: square"
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> values, with lazily imported built-ins and an error listing the known names.

    Parameters
    ----------
    kind : str
        What is registered, for messages (``"model source"``, ``"dataset"``).
    error : type of Exception
        Raised for an unknown name (default ``KeyError``).
    builtin : mapping of str to str, optional
        Name -> module that registers it when imported (on the first :meth:`get`).
    """

    def __init__(
        self,
        kind: str,
        error: type[Exception] = KeyError,
        builtin: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.error = error
        self._builtin = dict(builtin or {})
        self._items: dict[str, T] = {}

    def register(self, name: str, value: T | None = None) -> Callable[[T], T]:
        """Register ``value`` under ``name``; without ``value``, a decorator that does.

        A later registration of the same name replaces the earlier one (as timm's does not:
        here plug-ins may override a built-in on purpose).
        """

        def decorate(obj: T) -> T:
            self._items[name] = obj
            return obj

        if value is not None:
            decorate(value)
        return decorate

    def names(self, pattern: str = "*") -> list[str]:
        """Known names (registered and built-in) matching a glob ``pattern``, sorted."""
        return sorted(n for n in {*self._builtin, *self._items} if fnmatch.fnmatch(n, pattern))

    def get(self, name: str) -> T:
        """The value registered as ``name``, importing its built-in module first if needed."""
        if name not in self._items and name in self._builtin:
            importlib.import_module(self._builtin[name])
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise self.error(f"unknown {self.kind} {name!r}; known: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._builtin
