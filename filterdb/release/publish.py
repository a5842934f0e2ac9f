"""Releases: a versioned folder of artifacts and a manifest of their checksums.

``filterdb release 0.1.0`` (the pipeline's ``release`` stage) writes ``releases/v0.1.0/``: the
dataset, the statistics, the model and layer tables, the report and the plots (tracked by DVC),
plus ``manifest.json`` and ``RELEASE.md`` (in git). Checking a folder against its manifest, the
schemas and the statistics is :func:`filterdb.release.check.validate_release`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from filterdb.atomic import DIR_MODE, atomic_path, settle_for_reading
from filterdb.dataset.content_hash import content_hash
from filterdb.dataset.info import dataset_counts
from filterdb.dataset.tables import read_tables
from filterdb.hashes import file_digests
from filterdb.optional import require
from filterdb.release.card import LICENSE_NOTE, render_card
from filterdb.release.croissant import CROISSANT_FILE, write_croissant
from filterdb.release.sums import write_checksums
from filterdb.release.versions import SEMVER, ReleaseError, normalize_version, version_key

__all__ = [
    "MANIFEST_FORMAT",
    "ReleaseError",
    "build_release",
    "file_digests",
    "normalize_version",
    "open_release",
    "recover_release_folder",
    "swap_in_folder",
]

#: 2: the release carries SHA256SUMS (filterdb/release/sums.py); 1: v0.1.0 and v0.2.0
MANIFEST_FORMAT = 2
#: release artifact name -> where the pipeline leaves it
INPUTS = {
    "filters.nc": "data/filters.nc",
    "degeneracy.nc": "stats/degeneracy.nc",
    "shifts.nc": "stats/shifts.nc",
    "report.md": "stats/report.md",
    "replication.csv": "stats/replication.csv",
    "plots": "plots",
}
DERIVED = ("models.csv", "layers.csv")
#: params.yaml sections that shape a release's artifacts: recorded and hashed in the manifest
#: (and the release stage's params in dvc.yaml); others, such as ``dask``, do not.
RELEASE_PARAMS = ("release", "packages", "zoo", "trained", "train", "store", "degeneracy", "shifts")


def _artifact_entry(path: Path) -> dict[str, Any]:
    entry = file_digests(path)
    if path.suffix == ".nc":
        entry["content_hash"] = content_hash(path)
    return entry


def _git_revision(cwd: Path) -> tuple[str, bool]:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        return rev, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


#: Where the train stage leaves each trained model's checkpoint and its record (``ID.json``:
#: checkpoint sha256, recipe digest, numerics), unless the entry names another ``models_dir``.
MODELS_DIR = "models"
#: Where it leaves the held-out results and the checkpoint's sha256 (a release dependency).
TRAIN_METRICS = "metrics/train"


def checkpoint_records(root: Path, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What the manifest records of each model trained here, from ``models/ID.json``.

    ``sha256`` of the checkpoint, ``recipe_sha256`` (settings and training code) and the
    ``numerics`` it was trained with: the train stage of a later rebuild must give these bytes
    for this recipe (:mod:`filterdb.train.checkpoints`). Models whose record predates these
    fields are left out.
    """
    records = {}
    for model_id, entry in (params.get("trained") or {}).items():
        folder = (entry or {}).get("models_dir") or MODELS_DIR
        path = root / folder / f"{model_id}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not (isinstance(record, dict) and "checkpoint_sha256" in record):
            continue
        results = root / TRAIN_METRICS / f"{model_id}.json"
        try:
            listed = json.loads(results.read_text()).get("checkpoint_sha256")
        except (OSError, ValueError, AttributeError):
            listed = None
        if listed is not None and listed != record["checkpoint_sha256"]:
            raise ReleaseError(
                f"{path}: checkpoint_sha256 {record['checkpoint_sha256'][:12]}… differs from "
                f"{results}'s {str(listed)[:12]}…: one of them is stale; re-run "
                f"`dvc repro train@{model_id}`"
            )
        records[model_id] = {
            "sha256": record["checkpoint_sha256"],
            "recipe_sha256": record.get("recipe_sha256"),
            "numerics": record.get("numerics"),
        }
    return dict(sorted(records.items()))


def _copy(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def build_release(
    version: str,
    params: Mapping[str, Any],
    root: str | os.PathLike[str] = ".",
    releases_dir: str = "releases",
) -> Path:
    """Write ``releases/vVERSION/`` from the pipeline's outputs.

    Parameters
    ----------
    version : str
        Semantic version, with or without a leading ``v``.
    params : mapping
        The params the outputs were built from (recorded in the manifest).
    root : path-like
        The repository (where ``data/``, ``stats/``, ``plots/`` are).
    releases_dir : str
        Folder of releases inside ``root``.

    Returns
    -------
    Path
        The release folder.

    Raises
    ------
    ReleaseError
        An invalid version or a missing input (every missing input named).
    """
    from filterdb.validate.schema_files import schema_version

    version = normalize_version(version)
    root = Path(root)
    missing = [src for src in INPUTS.values() if not (root / src).exists()]
    if missing:
        raise ReleaseError(
            f"cannot release v{version}: missing {', '.join(missing)} (run dvc repro)"
        )
    releases = root / releases_dir
    releases.mkdir(parents=True, exist_ok=True)
    folder = releases / f"v{version}"
    recover_release_folder(folder)
    # everything is built in a temporary sibling and renamed into place at the end
    tmp = Path(tempfile.mkdtemp(dir=releases, prefix=f".v{version}.tmp-{os.getpid()}-"))
    os.chmod(tmp, DIR_MODE)  # mkdtemp makes it private; a release folder is not
    try:
        artifacts = _write_artifacts(root, tmp)
        artifacts[CROISSANT_FILE] = write_croissant(tmp, version, artifacts, root)
        revision, dirty = _git_revision(root)
        # only the sections that shape the artifacts (not, e.g., where dask runs)
        shaping = {k: params[k] for k in RELEASE_PARAMS if k in params}
        params_json = json.dumps(shaping, sort_keys=True, default=str)
        manifest = {
            "manifest_format": MANIFEST_FORMAT,
            "version": version,
            "git_revision": revision,
            "git_dirty": dirty,
            "params_sha256": hashlib.sha256(params_json.encode()).hexdigest(),
            "params": json.loads(params_json),
            "schema_version": str(schema_version()),
            "license": LICENSE_NOTE,
            "counts": dataset_counts(tmp / "filters.nc"),
            "artifacts": dict(sorted(artifacts.items())),
            "checkpoints": checkpoint_records(root, params),
        }
        published = _published(root, folder / "manifest.json")
        # a published version is compared with its committed manifest, whatever is on disk
        old_manifest = (
            _committed_manifest(root, folder / "manifest.json")
            if published
            else _read_manifest(folder / "manifest.json")
        )
        if old_manifest is not None and _same_content(old_manifest, manifest):
            # identical content: the recorded manifest and notes stay as they are (as committed,
            # for a published version, even when the files on disk were lost)
            for name in ("manifest.json", "RELEASE.md", "README.md"):
                text = _committed_text(root, folder / name) if published else None
                if text is not None:
                    (tmp / name).write_text(text)
                elif (folder / name).is_file():
                    shutil.copyfile(folder / name, tmp / name)
        else:
            if published:
                raise ReleaseError(_changed_message(version, old_manifest or {}, manifest))
            previous = _previous_manifest(releases, version)
            text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
            (tmp / "manifest.json").write_text(text)
            (tmp / "RELEASE.md").write_text(release_notes(manifest, previous))
            (tmp / "README.md").write_text(render_card(manifest))
        # DVC's list of the artifacts git must ignore (tracked in git)
        ignore = _committed_text(root, folder / ".gitignore") if published else None
        if ignore is not None:
            (tmp / ".gitignore").write_text(ignore)
        elif (folder / ".gitignore").is_file():
            shutil.copyfile(folder / ".gitignore", tmp / ".gitignore")
        write_checksums(tmp)  # SHA256SUMS over the manifest, the notes and every artifact
        swap_in_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _write_artifacts(root: Path, out: Path) -> dict[str, Any]:
    """Copy the pipeline's outputs into ``out`` and write the tables; return their digests."""
    artifacts: dict[str, Any] = {}
    settle_for_reading(*(root / src for src in INPUTS.values()))  # no half-renamed stats set
    for name, src in INPUTS.items():
        src_path = root / src
        if src_path.is_dir():
            (out / name).mkdir()
            for f in sorted(src_path.iterdir()):
                if f.is_file():
                    shutil.copyfile(f, out / name / f.name)
                    artifacts[f"{name}/{f.name}"] = _artifact_entry(out / name / f.name)
        else:
            shutil.copyfile(src_path, out / name)
            artifacts[name] = _artifact_entry(out / name)
    with xr.open_dataset(out / "filters.nc") as ds:
        models, layers, _ = read_tables(ds)
    for name, table in (("models.csv", models), ("layers.csv", layers)):
        table.to_csv(out / name, lineterminator="\n")
        artifacts[name] = _artifact_entry(out / name)
    return artifacts


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _same_content(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Same artifacts (names, sizes, sha256) and the same params."""

    def digests(m: Mapping[str, Any]) -> dict[str, Any]:
        arts = m.get("artifacts")
        if not isinstance(arts, Mapping):
            return {}
        return {
            k: (v.get("sha256"), v.get("size")) for k, v in arts.items() if isinstance(v, Mapping)
        }

    return digests(old) == digests(new) and old.get("params_sha256") == new.get("params_sha256")


def _published(root: Path, manifest: Path) -> bool:
    """A version is published once its manifest is committed to git."""
    try:
        proc = subprocess.run(
            [
                "git",
                "ls-files",
                "--error-unmatch",
                str(manifest.resolve().relative_to(root.resolve())),
            ],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
    except (OSError, ValueError):
        return False
    return proc.returncode == 0


def _changed_message(version: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    o, n = old.get("artifacts") or {}, new.get("artifacts") or {}
    differ = sorted(
        k
        for k in set(o) | set(n)
        if not isinstance(o.get(k), Mapping)
        or not isinstance(n.get(k), Mapping)
        or o[k].get("sha256") != n[k].get("sha256")
    )
    what = ", ".join(differ[:8]) + (f" and {len(differ) - 8} more" if len(differ) > 8 else "")
    if not differ:
        what = "params (params_sha256)"
    return (
        f"release v{version} is published (its manifest is in git) and this build differs in "
        f"{what}: a published version never names other bytes; bump release.version in "
        "params.yaml (or, if this machine cannot reproduce the build, get the published "
        f"artifacts with `dvc pull` or `filterdb pull {version}`)"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_release_folder(folder: Path) -> None:
    """Undo what a killed build or pull left beside ``folder``.

    A folder moved aside (``.vX.old-PID``) whose writer died before renaming the new one in is
    the only copy: it is put back. Temporary folders (``.vX.tmp-PID-*``, ``.vX.pull-PID-*``) of
    dead processes are deleted; those of live ones are left alone.
    """
    for aside in sorted(folder.parent.glob(f".{folder.name}.old-*")):
        pid = aside.name.rsplit("-", 1)[-1]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        if not folder.exists():
            os.replace(aside, folder)
        else:
            shutil.rmtree(aside, ignore_errors=True)
    for kind in ("tmp", "pull"):
        for tmp in folder.parent.glob(f".{folder.name}.{kind}-*"):
            pid = tmp.name.split(f".{kind}-", 1)[1].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(tmp, ignore_errors=True)


def _committed_text(root: Path, path: Path) -> str | None:
    """The text of ``path`` as committed at HEAD, or None."""
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    proc = subprocess.run(
        ["git", "show", f"HEAD:{rel}"], cwd=root, capture_output=True, text=True, check=False
    )
    return None if proc.returncode else proc.stdout


def _committed_manifest(root: Path, manifest: Path) -> dict[str, Any] | None:
    text = _committed_text(root, manifest)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def swap_in_folder(tmp: Path, folder: Path) -> None:
    """Rename ``tmp`` to ``folder``; an existing folder is moved aside first, then deleted (a
    kill in between leaves ``.vX.old-PID``, which :func:`recover_release_folder` puts back)."""
    aside = None
    if folder.exists():
        aside = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(folder, aside)
    os.replace(tmp, folder)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _previous_manifest(releases: Path, version: str) -> dict[str, Any] | None:
    older = []
    for m in releases.glob("v*/manifest.json"):
        v = m.parent.name.removeprefix("v")
        if SEMVER.fullmatch(v) and version_key(v) < version_key(version):
            older.append((version_key(v), m))
    if not older:
        return None
    return json.loads(max(older)[1].read_text())


def release_notes(manifest: Mapping[str, Any], previous: Mapping[str, Any] | None) -> str:
    """The human notes of a release, with what changed since ``previous``."""
    c = manifest["counts"]
    lines = [
        f"# filterdb v{manifest['version']}",
        "",
        f"{c['models']} models, {c['layers']} layers with 3x3 convs, {c['filters']:,} filters.",
        f"Built from git revision `{manifest['git_revision']}`"
        + (" (with uncommitted changes)" if manifest["git_dirty"] else "")
        + f"; schema version {manifest['schema_version']}.",
        "",
        "Get it: `filterdb pull {0}` in a clone (sha256-checked), `git checkout v{0} && dvc pull "
        "release`, or `dvc get REPO releases/v{0}/filters.nc --rev v{0}`.".format(
            manifest["version"]
        ),
        "",
        "## Changes",
        "",
    ]
    if previous is None:
        lines.append("First release.")
    else:
        pc = previous["counts"]
        old, new = set(pc["model_ids"]), set(c["model_ids"])
        lines.append(f"Since v{previous['version']}:")
        lines.append("")
        added = [m for m in c["model_ids"] if m not in old]
        removed = [m for m in pc["model_ids"] if m not in new]
        lines.append(f"- models added ({len(added)}): {', '.join(added) or 'none'}")
        lines.append(f"- models removed ({len(removed)}): {', '.join(removed) or 'none'}")
        for key in ("models", "layers", "filters"):
            delta = c[key] - pc[key]
            lines.append(f"- {key}: {pc[key]:,} -> {c[key]:,} ({delta:+,})")
    lines += ["", "## By meta-parameter", ""]
    for col, values in c["by"].items():
        parts = [f"{v} ({d['models']} models, {d['filters']:,} filters)" for v, d in values.items()]
        lines.append(f"- **{col}**: " + "; ".join(parts))
    lines += ["", "## Artifacts", "", "| file | bytes | sha256 |", "|---|---|---|"]
    for name, a in manifest["artifacts"].items():
        lines.append(f"| {name} | {a['size']:,} | `{a['sha256'][:16]}…` |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- consumers


def open_release(
    version: str,
    repo: str | None = None,
    artifact: str = "filters.nc",
    cache_dir: str | os.PathLike[str] | None = None,
    **open_kwargs: Any,
) -> xr.Dataset:
    """Open one artifact of a release with xarray, fetching it through DVC if needed.

    Parameters
    ----------
    version : str
        ``"0.1.0"`` or ``"v0.1.0"``; the git tag ``vX.Y.Z`` is the revision read.
    repo : str, optional
        A git URL or local path of a filterdb repository (default: the current one).
    artifact : str
        ``filters.nc``, ``degeneracy.nc`` or ``shifts.nc``.
    cache_dir : path-like, optional
        Where fetched files are kept (default ``~/.cache/filterdb``).
    **open_kwargs
        Passed to :func:`xarray.open_dataset`.

    Returns
    -------
    xarray.Dataset
        After the file's sha256 was checked against the release manifest.
    """
    DVCFileSystem = require("dvc.api", extra="dvc", purpose="open_release").DVCFileSystem

    version = normalize_version(version)
    rel = f"releases/v{version}"
    fs = DVCFileSystem(repo, rev=f"v{version}")
    manifest = json.loads(fs.read_text(f"{rel}/manifest.json"))
    expected = manifest["artifacts"][artifact]["sha256"]
    cache = Path(cache_dir or Path.home() / ".cache" / "filterdb") / f"v{version}"
    local = cache / artifact
    if not local.is_file() or file_digests(local)["sha256"] != expected:
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_path(local) as tmp:
            fs.get_file(f"{rel}/{artifact}", str(tmp))
        got = file_digests(local)["sha256"]
        if got != expected:
            local.unlink()
            raise ReleaseError(
                f"{repo or '.'}@v{version}:{rel}/{artifact}: sha256 {got} != manifest {expected}"
            )
    return xr.open_dataset(local, **open_kwargs)
