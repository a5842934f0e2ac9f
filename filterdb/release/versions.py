"""Release versions: the semantic-version pattern, its normal form and sort order, and the
release error (shared by building, validating and pulling releases; imports nothing of them).
"""

from __future__ import annotations

from filterdb.errors import FilterDBError
from filterdb.version import SEMVER, version_key

__all__ = ["SEMVER", "ReleaseError", "normalize_version", "version_key"]


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
