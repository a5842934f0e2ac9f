"""Validation of a release folder: its manifest is a closed world.

:func:`validate_release` combines the checks of :mod:`filterdb.release.manifest`,
:mod:`filterdb.release.artifacts`, :mod:`filterdb.release.sums` and
:mod:`filterdb.release.croissant` with the schemas and statistics of :mod:`filterdb.validate`;
it checks, in this order:

1. ``manifest.json`` is UTF-8 JSON of the known shape: every field has its type (``artifacts`` a
   non-empty mapping of mappings with ``sha256``, ``md5``, ``size`` and, for a ``.nc`` file,
   ``content_hash``; ``counts`` with exactly its keys; ``git_revision`` 40 hex digits;
   ``git_dirty`` a bool; a known ``manifest_format``; ``version`` the folder's name; no unknown
   key), and every artifact path stays inside the folder (no absolute path, ``..``, ``.``, empty
   part or backslash). A malformed manifest raises :class:`~filterdb.release.versions.ReleaseError`:
   one line. (``git_revision`` may also be ``unknown``, what a build outside git records.)
2. The folder holds exactly the manifest's artifacts plus the release's own files
   (:data:`~filterdb.release.manifest.BOOKKEEPING`: ``manifest.json``, ``RELEASE.md``, the
   ``README.md`` dataset card and ``SHA256SUMS``) and DVC's top-level ``.gitignore``: a missing
   artifact, an extra file or folder, a symbolic link leaving the folder or anything but a
   regular file is a problem.
3. ``SHA256SUMS`` (required from manifest format 2 on) names every file of the folder but itself
   and ``.gitignore``, with the sha256 the manifest records for the artifacts and the actual
   sha256 of ``manifest.json``, ``RELEASE.md`` and ``README.md``. The file is in git: the tag
   ``vX.Y.Z`` of the version pins it, so once the version is tagged nobody can change the
   manifest or the notes and ``SHA256SUMS`` together unnoticed; where the folder is in a git
   repository that has the tag, ``SHA256SUMS`` is compared with the tagged one.
4. Every artifact's sha256, md5 and size, and the ``content_hash`` of every ``.nc`` file.
5. Only when all of that holds: the schemas, the Croissant metadata, the recorded counts and
   schema version against the data, and (``recheck``) the statistics on a sample.

When no artifact has been pulled, steps 1 to 3 still run and the report says what was skipped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import xarray as xr

from filterdb.release.artifacts import (
    check_artifacts,
    check_closed_world,
    dvc_tracked,
    walk_folder,
)
from filterdb.release.manifest import MANIFEST_FILE, check_consistency, read_manifest
from filterdb.release.report import ReleaseReport
from filterdb.release.sums import check_sums
from filterdb.release.versions import SEMVER, ReleaseError, version_key

__all__ = ["validate_all", "validate_release"]


def validate_release(
    folder: str | os.PathLike[str], recheck: bool = True, sample_layers: int = 16
) -> ReleaseReport:
    """Check a release folder: manifest, files, checksums, schemas, counts and statistics.

    Parameters
    ----------
    folder : path-like
        ``releases/vX.Y.Z``.
    recheck : bool
        Recompute statistics on a sample of layers and groups and compare with the stored ones.
    sample_layers : int
        Layers in the degeneracy sample.

    Returns
    -------
    ReleaseReport
        ``report.ok`` is False when anything is wrong; when no artifact has been pulled, the
        manifest, the folder's other files and ``SHA256SUMS`` are checked and the report says
        what was skipped.

    Raises
    ------
    filterdb.release.versions.ReleaseError
        No manifest, or a malformed one (see :func:`~filterdb.release.manifest.read_manifest`).
    """
    from filterdb.dataset.info import dataset_counts
    from filterdb.release.croissant import check_croissant

    folder = Path(folder)
    report = ReleaseReport(str(folder))
    manifest = read_manifest(folder)
    check_consistency(folder, manifest, report)
    listing = walk_folder(folder, report)
    check_closed_world(folder, manifest, listing, report)
    check_sums(folder, manifest, listing.files, report)

    artifacts = manifest["artifacts"]
    present = {n for n in artifacts if n in listing.files}
    in_dvc = dvc_tracked(folder, artifacts)
    pulled = bool((present | listing.rejected) & in_dvc)
    # before `dvc pull`, the artifacts kept in git (e.g. croissant.json) are there all the same
    for name in sorted(
        (set(artifacts) if pulled else set(artifacts) - in_dvc) - present - listing.rejected
    ):
        report.problems.append(f"{folder / name}: missing (listed in the manifest)")
    if present:
        check_artifacts(folder, artifacts, present, report)
    if not pulled:
        report.skipped.append(
            f"{len(in_dvc)} artifacts not present (data not pulled: `filterdb pull "
            f"{manifest['version']}`): "
            "their checksums, schemas, counts and statistics not checked"
        )
        return report
    if report.problems:
        return report  # schemas and statistics of changed files would only repeat the finding

    filters = folder / "filters.nc"
    _validate_tables(folder, report)
    check_croissant(folder, manifest, report)
    with xr.open_dataset(filters) as ds:
        data_schema = str(ds.attrs.get("filterdb_schema_version", ""))
    if data_schema != manifest["schema_version"]:
        report.problems.append(
            f"{folder / MANIFEST_FILE}: schema_version {manifest['schema_version']!r} is not "
            f"the dataset's ({data_schema!r})"
        )
    counts = dataset_counts(filters)
    if counts != manifest["counts"]:
        diff = [k for k in counts if counts[k] != manifest["counts"].get(k)]
        report.problems.append(
            f"{folder / MANIFEST_FILE}: stale counts ({', '.join(diff)} differ from the data)"
        )
    else:
        report.checked.append("manifest counts and schema version match the data")
    if recheck:
        from filterdb.validate.verify import recheck_degeneracy, recheck_shifts

        report.problems += recheck_degeneracy(
            filters, folder / "degeneracy.nc", n_layers=sample_layers
        )
        report.problems += recheck_shifts(filters, folder / "shifts.nc")
        report.checked.append("statistics recomputed on a sample of layers and groups")
    return report


def _validate_tables(folder: Path, report: ReleaseReport) -> None:
    import pandas as pd

    from filterdb.validate.failures import SchemaValidationError
    from filterdb.validate.layout import validate_dataset
    from filterdb.validate.tables import validate_layers, validate_models

    try:
        with xr.open_dataset(folder / "filters.nc") as ds:
            validate_dataset(ds, str(folder / "filters.nc"))
            from filterdb.validate.weights_check import check_weights

            check_weights(ds)  # finite weights, filter_layer, no duplicated models
            n_filters = int(ds.sizes["filter"])
        models = pd.read_csv(
            folder / "models.csv",
            index_col="model",
            keep_default_na=False,
            na_values={"accuracy": [""], "share_3x3": [""], "n_train_samples": [""]},
        )
        validate_models(models, source=str(folder / "models.csv"))
        # ids such as "NA" or "null" and empty layer names are strings, not missing values
        layers = pd.read_csv(
            folder / "layers.csv",
            index_col="layer",
            keep_default_na=False,
            na_values={"conv_depth_norm": [""]},
            dtype={"model": str, "layer_name": str},
        )
        validate_layers(layers, n_filters=n_filters, source=str(folder / "layers.csv"))
        report.checked.append("filters.nc, models.csv and layers.csv pass the schemas")
    except SchemaValidationError as exc:
        report.problems.append(str(exc))


def validate_all(
    releases_dir: str | os.PathLike[str] = "releases", **kwargs: Any
) -> list[ReleaseReport]:
    """:func:`validate_release` on every ``releases/v*`` folder, oldest first.

    A folder whose manifest is missing or malformed gets a report with that one problem, so the
    other versions are still checked.
    """
    folders = [p for p in Path(releases_dir).glob("v*") if p.is_dir() and SEMVER.fullmatch(p.name)]
    folders.sort(key=lambda p: version_key(p.name.removeprefix("v")))
    reports = []
    for f in folders:
        try:
            reports.append(validate_release(f, **kwargs))
        except (ReleaseError, OSError) as exc:  # malformed manifest, unreadable file
            reports.append(ReleaseReport(str(f), problems=[str(exc)]))
    return reports
