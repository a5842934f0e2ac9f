"""Figures (PNG, matplotlib Agg) and DVC-plots data, made from the statistics files only.

Inputs are ``stats/degeneracy.nc`` and ``stats/shifts.nc``; nothing re-reads the filters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from filterdb.atomic import atomic_path, settle_for_reading
from filterdb.dataset.flags import flag_lookup

__all__ = [
    "DEPTH_CSV",
    "degeneracy_table",
    "make_plots",
    "sort_by_column_mean",
]

#: DVC-plots friendly table written next to the figures.
DEPTH_CSV = "degeneracy_by_depth.csv"
DEPTH_CSV_COLUMNS = (
    "model",
    "family",
    "layer_name",
    "conv_depth_norm",
    "entropy",
    "entropy_norm",
    "sparsity",
    "orthogonality",
    "n_filters",
    "degenerated",
)


def _labels(ds: xr.Dataset, name: str) -> np.ndarray:
    """Per-model labels of a categorical code variable ('?' when missing)."""
    if name not in ds.variables:
        return np.full(ds.sizes.get("model", 0), "all", dtype=object)
    var = ds[name]
    lookup = flag_lookup(var.attrs)
    raw = np.asarray(var.values, dtype=np.float64)
    return np.array([lookup.get(int(c), "?") if np.isfinite(c) else "?" for c in raw], dtype=object)


def degeneracy_table(deg: xr.Dataset) -> pd.DataFrame:
    """One row per layer with its model, family, depth and degeneracy statistics.

    Columns are :data:`DEPTH_CSV_COLUMNS`; this is what ``degeneracy_by_depth.csv`` holds.
    """
    lm = np.asarray(deg["layer_model"].values, dtype=np.int64)
    models = np.asarray(deg["model"].values, dtype=object) if "model" in deg.variables else None
    family = _labels(deg, "family")
    return pd.DataFrame(
        {
            "model": models[lm] if models is not None else lm,
            "family": family[lm] if family.size else "all",
            "layer_name": np.asarray(deg["layer_name"].values, dtype=object),
            "conv_depth_norm": deg["conv_depth_norm"].values,
            "entropy": deg["entropy"].values,
            "entropy_norm": deg["entropy_norm"].values,
            "sparsity": deg["sparsity"].values,
            "orthogonality": deg["orthogonality"].values,
            "n_filters": deg["n_filters"].values,
            "degenerated": deg["degenerated"].values,
        },
        columns=list(DEPTH_CSV_COLUMNS),
    )


def sort_by_column_mean(d: np.ndarray) -> np.ndarray:
    """Order of groups by ascending column mean (NaN-skipping; empty groups last)."""
    with np.errstate(all="ignore"):
        means = np.array(
            [np.nanmean(c) if np.isfinite(c).any() else np.inf for c in np.asarray(d).T]
        )
    return np.argsort(means, kind="stable")


def _save(fig: plt.Figure, path: Path) -> Path:
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _heatmap(sh: xr.Dataset, axis: str, path: Path) -> Path:
    d = sh[f"shift_{axis}"].values
    labels = np.asarray(sh[axis].values).astype(str)
    order = sort_by_column_mean(d)
    d, labels = d[np.ix_(order, order)], labels[order]
    size = max(3.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(np.ma.masked_invalid(d), cmap="viridis")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    if len(labels) <= 15:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if np.isfinite(d[i, j]):
                    ax.text(j, i, f"{d[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(im, ax=ax, label="D (sum eta_i KLsym)")
    ax.set_title(f"shift between {axis} groups (sorted by column mean)")
    return _save(fig, path)


def _components(sh: xr.Dataset, path: Path) -> Path:
    v = sh["pca_components"].values
    eta = sh["explained_variance_ratio"].values
    k = v.shape[0]
    fig, axes = plt.subplots(1, k, figsize=(1.6 * k, 2.0))
    axes = np.atleast_1d(axes)
    lim = float(np.nanmax(np.abs(v))) or 1.0
    for i, ax in enumerate(axes):
        ax.imshow(v[i].reshape(3, 3), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"v{i + 1}: {eta[i]:.1%}" if np.isfinite(eta[i]) else f"v{i + 1}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("PCA eigen-filters and explained-variance ratios")
    return _save(fig, path)


def _coefficients(sh: xr.Dataset, axis: str, path: Path, max_groups: int) -> Path:
    probs = sh[f"prob_{axis}"].values
    n = sh[f"n_filters_{axis}"].values
    labels = np.asarray(sh[axis].values).astype(str)
    keep = [g for g in np.argsort(-n, kind="stable") if n[g] > 0][:max_groups]
    x = sh["bin_center"].values
    k = probs.shape[1]
    cols = min(k, 3)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for i in range(rows * cols):
        ax = axes.flat[i]
        if i >= k:
            ax.set_visible(False)
            continue
        for g in keep:
            ax.plot(x, probs[g, i], lw=1, label=labels[g])
        ax.set_yscale("log")
        ax.set_title(f"component {i + 1}", fontsize=9)
    if keep:
        axes.flat[0].legend(fontsize=6, loc="upper right")
    fig.suptitle(f"coefficient distributions per {axis} group")
    return _save(fig, path)


def _depth_figure(table: pd.DataFrame, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for fam, sub in table.groupby("family", sort=True):
        sub = sub.sort_values("conv_depth_norm")
        for ax, col in zip(axes, ("entropy_norm", "sparsity"), strict=True):
            ax.plot(sub["conv_depth_norm"], sub[col], ".", ms=3, alpha=0.5)
            binned = sub.groupby(
                pd.cut(sub["conv_depth_norm"], np.linspace(0, 1, 11), include_lowest=True),
                observed=True,
            )[col].mean()
            centers = [iv.mid for iv in binned.index]
            ax.plot(centers, binned.values, "-", label=str(fam), color=ax.lines[-1].get_color())
    axes[0].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[0].set_ylabel("H / TH(n)")
    axes[1].axhline(0.14, color="k", lw=0.8, ls="--")
    axes[1].set_ylabel("sparsity S")
    for ax in axes:
        ax.set_xlabel("normalised conv depth")
    axes[0].legend(fontsize=7, title="family")
    fig.suptitle("degeneracy over depth (dots: layers; lines: decile means per family)")
    return _save(fig, path)


def make_plots(
    degeneracy_nc: str | os.PathLike[str] | None,
    shifts_nc: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    max_groups: int = 10,
    axes: Sequence[str] | None = None,
    trained: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Draw every figure from the statistics files.

    Parameters
    ----------
    degeneracy_nc : path or None
        ``stats/degeneracy.nc``; skipped when None.
    shifts_nc : path or None
        ``stats/shifts.nc``; skipped when None.
    out_dir : path
        Directory for the PNGs and ``degeneracy_by_depth.csv`` (created if needed).
    max_groups : int
        Most populous groups drawn in the coefficient-distribution figures.
    axes : sequence of str, optional
        Axes to draw (default: all in the shifts file).
    trained : mapping, optional
        ``params.yaml: trained`` (widths of the training sweep for ``sweep.png``).

    Returns
    -------
    list of pathlib.Path
        Files written: ``shift_<axis>.png`` (D heatmaps, groups sorted by column mean),
        ``pca_components.png`` (the eigen-filters with their variance ratios),
        ``coefficients_<axis>.png`` (per-group histograms), ``degeneracy_by_depth.png``
        (H/TH and S over normalised depth per family) and ``degeneracy_by_depth.csv``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settle_for_reading(*(p for p in (shifts_nc, degeneracy_nc) if p is not None))
    written: list[Path] = []
    if shifts_nc is not None:
        with xr.open_dataset(shifts_nc) as sh:
            sh = sh.load()
        for axis in axes if axes is not None else str(sh.attrs.get("axes", "")).split():
            if f"shift_{axis}" not in sh:
                continue
            written.append(_heatmap(sh, axis, out / f"shift_{axis}.png"))
            written.append(_coefficients(sh, axis, out / f"coefficients_{axis}.png", max_groups))
        written.append(_components(sh, out / "pca_components.png"))
    if degeneracy_nc is not None:
        with xr.open_dataset(degeneracy_nc) as deg:
            deg = deg.load()
        table = degeneracy_table(deg)
        with atomic_path(out / DEPTH_CSV) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        written.append(out / DEPTH_CSV)
        written.append(_depth_figure(table, out / "degeneracy_by_depth.png"))
        from filterdb.report.markdown import model_table
        from filterdb.stats.sweep import plot_sweep, sweep_table

        sweep = sweep_table(deg, model_table(deg), trained)
        if not sweep.empty:
            written.append(plot_sweep(sweep, out / "sweep.png"))
    return written
