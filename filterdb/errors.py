"""The base of every error that means "bad input": the CLI prints it in one line and exits 2.

This module imports nothing from the package, so that any module may raise a
:class:`FilterDBError` subclass without import cycles, and the CLI can catch them all without
importing torch, pandera or h5py.
"""

from __future__ import annotations

__all__ = ["USER_ERRORS", "FilterDBError", "InputError"]


class FilterDBError(Exception):
    """Bad input named in one line: a missing or corrupt file, an unknown key or value.

    Examples
    --------
    >>> issubclass(FilterDBError, Exception)
    True
    """


class InputError(FilterDBError, ValueError):
    """A value in params.yaml or in a data file that cannot be used (named in the message)."""


#: What the CLI maps to exit status 2 without a traceback: filterdb's own errors, and files the
#: operating system could not open or write (missing, unreadable, disk full).
USER_ERRORS: tuple[type[BaseException], ...] = (FilterDBError, OSError)
