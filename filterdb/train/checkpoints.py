"""Which bytes a trained checkpoint must have: its recipe digest and the published record.

A release records, for every model trained here, the checkpoint's sha256 beside the digest of
its recipe (the zoo entry's training settings and the training code) and the numerics it ran
with (:mod:`filterdb.numerics`). When the train stage rebuilds a model whose recipe matches
a published record, the new bytes must be the published ones: if they are not (another CPU,
another torch, numerics not pinned), training stops with :class:`CheckpointMismatchError`
naming the model, both settings and how to fetch the published checkpoint, instead of
publishing silently different weights. ``FILTERDB_NEW_CHECKPOINTS=1`` accepts the new bytes
deliberately (then bump ``release.version``: the published version itself never changes).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from filterdb.errors import FilterDBError
from filterdb.version import SEMVER, version_key

__all__ = [
    "ACCEPT_NEW",
    "CheckpointMismatchError",
    "PublishedLookupError",
    "check_published",
    "code_digest",
    "published_record",
    "recipe_digest",
]

#: Environment variable: set to ``1`` to keep checkpoints that differ from the published ones.
ACCEPT_NEW = "FILTERDB_NEW_CHECKPOINTS"

#: Entry keys that do not change what is trained (labels, where files live).
_NOT_RECIPE = frozenset({"source", "meta", "root", "models_dir"})

#: Files of ``train/`` that do not change what is trained.
_NOT_CODE = frozenset({"checkpoints.py"})

_PACKAGE = Path(__file__).resolve().parents[1]


class CheckpointMismatchError(FilterDBError):
    """A rebuilt checkpoint differs from the published one trained by the same recipe."""


def code_digest() -> str:
    """sha256 over the source of the training code and the numerics settings.

    This module (the check's own messages) is left out: rewording a message does not change
    what is trained.

    Examples
    --------
    >>> len(code_digest())
    64
    """
    h = hashlib.sha256()
    train = [p for p in sorted((_PACKAGE / "train").glob("*.py")) if p.name not in _NOT_CODE]
    files = [*train, _PACKAGE / "numerics.py"]
    for path in files:
        h.update(f"{path.relative_to(_PACKAGE).as_posix()}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def recipe_digest(entry: Mapping[str, Any], code: str | None = None) -> str:
    """sha256 of what determines a checkpoint: training settings and code.

    Parameters
    ----------
    entry : mapping
        The zoo entry merged with the ``train`` defaults (labels and paths are left out).
    code : str, optional
        :func:`code_digest` (computed when omitted).

    Examples
    --------
    >>> a = recipe_digest({"arch": "resnet9", "seed": 0, "meta": {"task": "x"}}, code="c")
    >>> a == recipe_digest({"arch": "resnet9", "seed": 0}, code="c")
    True
    >>> a == recipe_digest({"arch": "resnet9", "seed": 1}, code="c")
    False
    """
    recipe = {k: v for k, v in entry.items() if k not in _NOT_RECIPE}
    text = json.dumps({"entry": recipe, "code": code or code_digest()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class PublishedLookupError(FilterDBError):
    """The published releases cannot be read (no ``git`` executable)."""


def _git(args: list[str], root: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except OSError as exc:  # no git at all: the published records cannot be known
        raise PublishedLookupError(
            f"cannot run git in {root} ({exc.strerror or exc}): the published releases' "
            "checkpoint records cannot be read, so a rebuilt checkpoint cannot be checked "
            "against them; install git"
        ) from None


def _committed_manifests(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """(version, manifest) of every release whose manifest is committed at HEAD.

    Outside a git repository (or without commits) there are none.
    """
    proc = _git(["ls-files", "--", "releases/*/manifest.json"], root)
    out = []
    for rel in proc.stdout.split() if proc.returncode == 0 else []:
        shown = _git(["show", f"HEAD:{rel}"], root)
        try:
            manifest = json.loads(shown.stdout) if shown.returncode == 0 else None
        except ValueError:
            manifest = None
        version = manifest.get("version") if isinstance(manifest, dict) else None
        if isinstance(version, str) and SEMVER.fullmatch(version):
            out.append((version, manifest))
    return out


def published_record(model_id: str, root: str | os.PathLike[str] = ".") -> tuple[str, dict] | None:
    """The newest published release's record of ``model_id``: ``(version, record)`` or None.

    Raises
    ------
    PublishedLookupError
        ``git`` cannot be run.
    """
    found = []
    for version, manifest in _committed_manifests(Path(root)):
        record = (manifest.get("checkpoints") or {}).get(model_id)
        if isinstance(record, dict):
            found.append((version, record))
    return max(found, key=lambda vr: version_key(vr[0])) if found else None


def _settings(numerics: Mapping[str, Any]) -> str:
    keys = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")
    pinned = "pinned" if numerics.get("pinned") else "not pinned"
    env = " ".join(f"{k}={numerics.get(k)}" for k in keys)
    level = numerics.get("cpu_capability")
    return f"torch {numerics.get('torch')}, {pinned} ({env}), ATen at {level}"


def check_published(
    model_id: str,
    sha256: str,
    recipe: str,
    numerics: Mapping[str, Any],
    root: str | os.PathLike[str] = ".",
    found: tuple[str, dict[str, Any]] | Literal["lookup"] | None = "lookup",
) -> str | None:
    """Refuse a checkpoint whose recipe was published with other bytes.

    Parameters
    ----------
    model_id, sha256, recipe : str
        The model, its checkpoint's sha256 and :func:`recipe_digest`.
    numerics : mapping
        What the run used (:func:`filterdb.numerics.in_effect`), for the message.
    root : path-like
        The repository whose committed releases hold the records.
    found : (version, record) or None, optional
        :func:`published_record` of ``model_id``, when the caller looked it up before training
        (so that a failing lookup stops it before the work); looked up here by default.

    Returns
    -------
    str or None
        The published version whose record these bytes match, else None (nothing published
        for this recipe, or new bytes accepted through ``FILTERDB_NEW_CHECKPOINTS=1``).

    Raises
    ------
    CheckpointMismatchError
        Same recipe as the newest published record, other bytes.
    """
    if found == "lookup":
        found = published_record(model_id, root)
    if found is None:
        return None
    version, record = found
    if record.get("recipe_sha256") != recipe:
        return None
    if record.get("sha256") == sha256:
        return version
    if os.environ.get(ACCEPT_NEW) == "1":
        return None
    raise CheckpointMismatchError(
        f"{model_id}: training gave other bytes than release v{version} published for the same "
        f"recipe (sha256 {sha256[:12]}… vs {str(record.get('sha256'))[:12]}…); this run: "
        f"{_settings(numerics)}; published: {_settings(record.get('numerics') or {})}. "
        "Get the published checkpoint instead (dvc.lock names it, and `dvc repro` then keeps "
        f"it): `dvc pull models/{model_id}.pt && git checkout -- models/{model_id}.json "
        f"metrics/train/{model_id}.json`; or set {ACCEPT_NEW}=1 to keep the new bytes and bump "
        "release.version"
    )
