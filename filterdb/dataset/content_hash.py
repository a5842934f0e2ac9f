"""The hash of a dataset's decoded content, independent of HDF5 storage details.

File digests (the bytes of a file) are :mod:`filterdb.hashes`.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import netCDF4
import numpy as np

__all__ = ["content_hash"]


def content_hash(path: str | os.PathLike[str], chunk_filters: int = 1 << 20) -> str:
    """SHA-256 of a dataset's decoded content, independent of HDF5 storage details.

    Covers every variable's name, dtype, shape and values (read in chunks) and every attribute,
    in sorted order, so files with the same content but another chunking or compression hash
    alike.

    Parameters
    ----------
    path : path-like
        A netCDF file.
    chunk_filters : int
        Rows per read of large variables.

    Returns
    -------
    str
        ``sha256:<hex>``.
    """
    h = hashlib.sha256()
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_mask(False)
        attrs = {k: _jsonable(nc.getncattr(k)) for k in sorted(nc.ncattrs())}
        h.update(json.dumps(attrs, sort_keys=True).encode())
        for name in sorted(nc.variables):
            v = nc.variables[name]
            vattrs = {k: _jsonable(v.getncattr(k)) for k in sorted(v.ncattrs())}
            h.update(
                json.dumps([name, str(v.dtype), list(v.shape), list(v.dimensions), vattrs]).encode()
            )
            if v.dtype is str:
                h.update("\x00".join(str(x) for x in np.asarray(v[:]).ravel()).encode())
                continue
            n = v.shape[0] if v.shape else 0
            if not v.shape:
                h.update(np.ascontiguousarray(v[...]).tobytes())
            for s in range(0, n, chunk_filters):
                h.update(np.ascontiguousarray(v[s : s + chunk_filters]).tobytes())
    return "sha256:" + h.hexdigest()


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x
