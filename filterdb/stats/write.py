"""Writing the statistics: ``stats/degeneracy.nc``, ``stats/shifts.nc`` and the degeneracy summary.

:func:`write_degeneracy` and :func:`write_shifts` compute one statistic and write it atomically;
:func:`write_stats` computes both (:func:`filterdb.stats.compute.compute_stats`) and
:func:`write_results` commits the three files as one set. :func:`degeneracy_summary` is the flat
summary written to ``metrics/degeneracy.json``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from filterdb.atomic import (
    atomic_paths,
    disk_full_as_error,
    write_atomic_netcdf,
    write_atomic_text,
)
from filterdb.stats.compute import compute_stats
from filterdb.stats.degeneracy import compute_degeneracy, weighted_mean
from filterdb.stats.params import DegeneracyParams, ShiftsParams
from filterdb.stats.shifts import compute_shifts

__all__ = [
    "degeneracy_summary",
    "write_degeneracy",
    "write_results",
    "write_shifts",
    "write_stats",
]


def _json_float(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def degeneracy_summary(stats: xr.Dataset) -> dict[str, Any]:
    """Flat summary of a degeneracy dataset for ``metrics/degeneracy.json``.

    Parameters
    ----------
    stats : xarray.Dataset
        Output of :func:`filterdb.stats.degeneracy.compute_degeneracy` (or ``stats/degeneracy.nc``).

    Returns
    -------
    dict
        Counts (``n_models``, ``n_layers``, ``n_filters``, ``n_layers_degenerated``,
        ``n_layers_random_like``, ``n_layers_sparse_collapsed``, ``n_layers_undefined``,
        ``n_models_with_degenerated_layers``), shares (``share_layers_degenerated`` over layers
        with a defined flag, ``share_filters_degenerated``), means (``entropy_mean_fw``,
        ``sparsity_mean_fw``, ``entropy_norm_mean_fw``, ``orthogonality_mean_fw`` filter-weighted;
        ``entropy_mean_layers`` unweighted). Undefined values are ``None`` (JSON ``null``).
    """
    deg = stats["degenerated"].values
    nf = stats["n_filters"].values.astype(np.float64)
    defined = deg >= 0
    n_def = int(defined.sum())
    f_def = float(nf[defined].sum())
    h = stats["entropy"].values
    per_model = stats["n_layers_degenerated"].values if "n_layers_degenerated" in stats else []
    out: dict[str, Any] = {
        "n_models": int(stats.sizes.get("model", 0)),
        "n_layers": int(stats.sizes.get("layer", 0)),
        "n_filters": int(nf.sum()),
        "n_layers_degenerated": int((deg == 1).sum()),
        "n_layers_random_like": int((stats["random_like"].values == 1).sum()),
        "n_layers_sparse_collapsed": int((stats["sparse_collapsed"].values == 1).sum()),
        "n_layers_undefined": int((~defined).sum()),
        "n_models_with_degenerated_layers": int((np.asarray(per_model) > 0).sum()),
        "share_layers_degenerated": _json_float((deg == 1).sum() / n_def if n_def else math.nan),
        "share_filters_degenerated": _json_float(
            nf[deg == 1].sum() / f_def if f_def > 0 else math.nan
        ),
        "entropy_mean_fw": _json_float(weighted_mean(h, nf)),
        "sparsity_mean_fw": _json_float(weighted_mean(stats["sparsity"].values, nf)),
        "entropy_norm_mean_fw": _json_float(weighted_mean(stats["entropy_norm"].values, nf)),
        "orthogonality_mean_fw": _json_float(weighted_mean(stats["orthogonality"].values, nf)),
        "entropy_mean_layers": _json_float(
            float(np.nanmean(h)) if np.isfinite(h).any() else math.nan
        ),
    }
    return out


def write_degeneracy(
    path_in: str | os.PathLike[str],
    path_nc: str | os.PathLike[str],
    path_json: str | os.PathLike[str] | None,
    params: DegeneracyParams | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute degeneracy statistics of ``path_in`` and write them atomically.

    Parameters
    ----------
    path_in : path
        ``data/filters.nc``.
    path_nc : path
        Output ``stats/degeneracy.nc``.
    path_json : path or None
        Output ``metrics/degeneracy.json`` (the :func:`degeneracy_summary`); skipped if None.
    params : DegeneracyParams or dict, optional
        ``params.yaml: degeneracy``.

    Returns
    -------
    dict
        The summary written to ``path_json``.
    """
    with xr.open_dataset(path_in) as ds:
        stats = compute_degeneracy(ds, params)
    write_atomic_netcdf(stats, path_nc)
    summary = degeneracy_summary(stats)
    if path_json is not None:
        write_atomic_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", path_json)
    return summary


def write_shifts(
    path_in: str | os.PathLike[str],
    path_nc: str | os.PathLike[str],
    params: ShiftsParams | Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Compute shift statistics of ``path_in`` and write them atomically to ``path_nc``."""
    with xr.open_dataset(path_in) as ds:
        out = compute_shifts(ds, params)
    write_atomic_netcdf(out, path_nc)
    return out


def write_stats(
    path_in: str | os.PathLike[str],
    degeneracy_nc: str | os.PathLike[str],
    degeneracy_json: str | os.PathLike[str] | None,
    shifts_nc: str | os.PathLike[str],
    degeneracy_params: DegeneracyParams | Mapping[str, Any] | None = None,
    shifts_params: ShiftsParams | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute both statistics in three passes (degeneracy shares the first) and write them.

    Returns
    -------
    dict
        The degeneracy summary (also written to ``degeneracy_json`` when given).
    """
    with xr.open_dataset(path_in) as ds:
        deg, shifts = compute_stats(ds, degeneracy_params, shifts_params)
    return write_results(deg, shifts, degeneracy_nc, degeneracy_json, shifts_nc)


def write_results(
    deg: xr.Dataset,
    shifts: xr.Dataset,
    degeneracy_nc: str | os.PathLike[str],
    degeneracy_json: str | os.PathLike[str] | None,
    shifts_nc: str | os.PathLike[str],
) -> dict[str, Any]:
    """Write computed statistics as one set: both netCDF files and the degeneracy summary.

    Every file is written to a temporary sibling first and the set is committed with
    :func:`filterdb.atomic.atomic_paths`: renamed into place only when all are complete, under a
    journal that the next run completes if this one is killed between the renames. So the
    outputs are always the previous set or the new one, never a degeneracy file of one input
    beside shift files of another.

    Returns
    -------
    dict
        The degeneracy summary (also written to ``degeneracy_json`` when given).

    Raises
    ------
    filterdb.atomic.DiskFullError
        A file could not be written for lack of space (named; the previous set stays).
    """
    summary = degeneracy_summary(deg)
    targets = [Path(degeneracy_nc), Path(shifts_nc)]
    if degeneracy_json is not None:
        targets.append(Path(degeneracy_json))
    with atomic_paths(*targets) as temps:  # renames on exit, after every write succeeded
        with disk_full_as_error(targets[0], temps[0]):
            deg.to_netcdf(temps[0])
        with disk_full_as_error(targets[1], temps[1]):
            shifts.to_netcdf(temps[1])
        if degeneracy_json is not None:
            with disk_full_as_error(targets[2], temps[2]):
                temps[2].write_text(
                    json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8"
                )
    return summary
