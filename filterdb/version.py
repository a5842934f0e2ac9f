"""The package version and the order of release versions, in one module that imports nothing.

Modules that record the version import it from here, never from the package ``__init__``,
so no import goes back up to the package. :func:`version_key` orders release versions for
both the release code and the training code's published-checkpoint check.
"""

from __future__ import annotations

import re

__all__ = ["SEMVER", "__version__", "version_key"]

__version__ = "0.4.1"

#: A release version, ``X.Y.Z`` with an optional ``v`` and pre-release suffix.
SEMVER = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?")


def version_key(version: str) -> tuple[int, int, int, str]:
    """Sort key of a semantic version (a pre-release sorts before its release).

    Raises
    ------
    ValueError
        ``version`` is not ``X.Y.Z`` (optionally with a ``v`` and a pre-release suffix).

    Examples
    --------
    >>> sorted(["1.10.0", "1.2.0", "1.2.0-rc1"], key=version_key)
    ['1.2.0-rc1', '1.2.0', '1.10.0']
    """
    m = SEMVER.fullmatch(version)
    if m is None:
        raise ValueError(f"{version!r} is not a semantic version (X.Y.Z)")
    return int(m[1]), int(m[2]), int(m[3]), m[4] or "~"  # a pre-release sorts before the release
