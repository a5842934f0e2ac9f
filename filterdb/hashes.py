"""File digests, read once in 1 MiB blocks: the one place filterdb hashes a file's bytes.

Used for the pinned package archives (:mod:`filterdb.sources.fetch`), release artifacts
(:mod:`filterdb.release.publish`) and pulled releases (:mod:`filterdb.release.pull`). The hash
of a dataset's decoded content (independent of chunking) is :mod:`filterdb.dataset.content_hash`.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

__all__ = ["file_digests", "sha256_file"]


def file_digests(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Size, sha256 and md5 (DVC's hash) of a file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"abc")
    >>> file_digests(p)["sha256"][:12], file_digests(p)["size"]
    ('ba7816bf8f01', 3)
    """
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
            md5.update(block)
            size += len(block)
    return {"size": size, "sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:12]
    'ba7816bf8f01'
    """
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()
