"""Release versions: the semantic-version pattern, its normal form and sort order, and the
release error (shared by building, validating and pulling releases; imports nothing of them).
"""

from __future__ import annotations

import re

from filterdb.errors import FilterDBError

__all__ = ["SEMVER", "ReleaseError", "normalize_version", "version_key"]

#: A release version, ``X.Y.Z`` with an optional ``v`` and pre-release suffix.
SEMVER = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?")


class ReleaseError(FilterDBError, ValueError):
    """A release cannot be built or does not validate; the message lists every problem."""


def normalize_version(version: str) -> str:
    """``"0.1.0"`` or ``"v0.1.0"`` -> ``"0.1.0"``; anything not semantic-versioned is an error.

    Examples
    --------
    >>> normalize_version("v1.2.3")
    '1.2.3'
    """
    m = SEMVER.fullmatch(str(version))
    if not m:
        raise ReleaseError(f"release version {version!r} is not a semantic version (X.Y.Z)")
    return str(version).removeprefix("v")


def version_key(version: str) -> tuple[int, int, int, str]:
    """Sort key of a semantic version (a pre-release sorts before its release).

    Examples
    --------
    >>> sorted(["1.10.0", "1.2.0", "1.2.0-rc1"], key=version_key)
    ['1.2.0-rc1', '1.2.0', '1.10.0']
    """
    m = SEMVER.fullmatch(version)
    assert m
    return int(m[1]), int(m[2]), int(m[3]), m[4] or "~"  # a pre-release sorts before the release
