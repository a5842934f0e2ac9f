"""filterdb: an open, versioned database of trained 3x3 convolution filters.

Open a dataset with :func:`open_dataset` (plain ``xarray.open_dataset`` works too); importing
filterdb registers the ``ds.filterdb`` accessor.
"""

from __future__ import annotations

__version__ = "0.2.0"

from filterdb.accessor import FilterDBAccessor, open_dataset


def open_release(version: str, repo: str | None = None, **kwargs: object) -> object:
    """Open a release's ``filters.nc`` through DVC (see :func:`filterdb.release.open_release`)."""
    from filterdb.release import open_release as _open

    return _open(version, repo=repo, **kwargs)


__all__ = ["FilterDBAccessor", "__version__", "open_dataset", "open_release"]
