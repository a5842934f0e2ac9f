"""A short Markdown summary of the statistics files (``stats/degeneracy.nc``, ``stats/shifts.nc``).

Nothing here re-reads the filters: every number comes from the statistics datasets.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from filterdb._reading import write_atomic_text
from filterdb.degeneracy import degeneracy_summary

__all__ = ["render_report", "shift_extremes", "write_report"]


def _fmt(x: Any, digits: int = 3) -> str:
    if isinstance(x, float | np.floating):
        return "n/a" if not math.isfinite(float(x)) else f"{float(x):.{digits}f}"
    return str(x)


def _num(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return out


def shift_extremes(sh: xr.Dataset, axis: str, k: int = 3) -> tuple[list, list]:
    """The ``k`` largest and smallest off-diagonal shifts of an axis.

    Returns
    -------
    largest, smallest : list of (str, str, float)
        Group pairs ``(a, b)`` with ``a < b`` in the stored order and their ``D``; NaN pairs
        (empty groups) are left out.
    """
    d = sh[f"shift_{axis}"].values
    labels = np.asarray(sh[axis].values).astype(str)
    iu = np.triu_indices(len(labels), k=1)
    vals = d[iu]
    ok = np.isfinite(vals)
    pairs = [(labels[i], labels[j], float(v)) for i, j, v in
             zip(iu[0][ok], iu[1][ok], vals[ok], strict=True)]
    pairs.sort(key=lambda p: p[2])
    return pairs[::-1][:k], pairs[:k]


def render_report(deg: xr.Dataset | None, sh: xr.Dataset | None, top: int = 10) -> str:
    """Markdown text of the report (see :func:`write_report`)."""
    lines = ["# filterdb statistics report", ""]
    if deg is not None:
        s = degeneracy_summary(deg)
        lines += ["## Degeneracy", ""]
        lines += [
            f"{s['n_models']} models, {s['n_layers']} layers, {s['n_filters']} filters. "
            f"Degenerated layers: {s['n_layers_degenerated']} "
            f"(share {_fmt(_num(s['share_layers_degenerated']))}; random-like "
            f"{s['n_layers_random_like']}, sparse-collapsed {s['n_layers_sparse_collapsed']}, "
            f"undefined {s['n_layers_undefined']}). Filter-weighted mean H "
            f"{_fmt(_num(s['entropy_mean_fw']))}, mean S "
            f"{_fmt(_num(s['sparsity_mean_fw']))}.",
            "",
        ]
        models = np.asarray(deg["model"].values).astype(str)
        share = deg["share_layers_degenerated"].values
        order = [m for m in np.lexsort((-deg["n_layers_degenerated"].values, -np.nan_to_num(
            share, nan=-1.0))) if deg["n_layers"].values[m] > 0][:top]
        lines += ["### Most degenerated models", ""]
        lines += _table(
            ["model", "layers", "degenerated", "share", "mean H (fw)", "mean S (fw)"],
            [[models[m], int(deg["n_layers"].values[m]),
              int(deg["n_layers_degenerated"].values[m]), float(share[m]),
              float(deg["entropy_mean_fw"].values[m]), float(deg["sparsity_mean_fw"].values[m])]
             for m in order],
        )
        lm = deg["layer_model"].values
        names = np.asarray(deg["layer_name"].values).astype(str)
        hn = deg["entropy_norm"].values
        sp = deg["sparsity"].values
        flag = deg["degenerated"].values
        rand = [i for i in np.argsort(-np.nan_to_num(hn, nan=-np.inf)) if flag[i] == 1][:top]
        coll = [i for i in np.argsort(-np.nan_to_num(sp, nan=-np.inf))
                if deg["sparse_collapsed"].values[i] == 1][:top]
        for title, idx in (("Most random-like layers (highest H/TH)", rand),
                           ("Most sparse-collapsed layers (highest S)", coll)):
            lines += ["", f"### {title}", ""]
            if not idx:
                lines.append("None.")
                continue
            lines += _table(
                ["model", "layer", "n", "H", "H/TH", "S", "O"],
                [[models[lm[i]], names[i], int(deg["n_filters"].values[i]),
                  float(deg["entropy"].values[i]), float(hn[i]), float(sp[i]),
                  float(deg["orthogonality"].values[i])] for i in idx],
            )
        lines.append("")
    if sh is not None:
        eta = sh["explained_variance_ratio"].values
        lines += ["## Distribution shifts", "",
                  f"Global PCA over {sh.attrs.get('n_filters_used', '?')} peak-scaled filters "
                  f"({sh.attrs.get('n_filters_nonfinite', 0)} non-finite left out).", ""]
        lines += _table([f"v{i + 1}" for i in range(len(eta))], [[float(e) for e in eta]])
        for axis in str(sh.attrs.get("axes", "")).split():
            if f"shift_{axis}" not in sh:
                continue
            big, small = shift_extremes(sh, axis)
            sizes = sh[f"n_filters_{axis}"].values
            n_empty = int((sizes == 0).sum())
            lines += ["", f"### {axis}", "",
                      f"{len(sizes)} groups ({n_empty} empty), "
                      f"{int(sh[f'n_models_{axis}'].values.max(initial=0))} models in the "
                      f"largest."]
            if not big:
                lines += ["", "No pair of non-empty groups."]
                continue
            rows = [["largest", a, b, d] for a, b, d in big]
            rows += [["smallest", a, b, d] for a, b, d in small]
            lines += ["", *_table(["", "group a", "group b", "D"], rows)]
        lines.append("")
    return "\n".join(lines)


def write_report(
    degeneracy_nc: str | os.PathLike[str] | None,
    shifts_nc: str | os.PathLike[str] | None,
    out_md: str | os.PathLike[str],
    top: int = 10,
) -> Path:
    """Write the Markdown report atomically.

    Parameters
    ----------
    degeneracy_nc, shifts_nc : path or None
        ``stats/degeneracy.nc`` and ``stats/shifts.nc`` (a section is skipped when None).
    out_md : path
        Output Markdown file.
    top : int
        Rows in the "most degenerated" tables.

    Returns
    -------
    pathlib.Path
        ``out_md``. The report lists the totals and the most degenerated models and layers,
        the PCA explained-variance ratios, and per axis the largest and smallest shifts.
    """
    deg = sh = None
    if degeneracy_nc is not None:
        with xr.open_dataset(degeneracy_nc) as ds:
            deg = ds.load()
    if shifts_nc is not None:
        with xr.open_dataset(shifts_nc) as ds:
            sh = ds.load()
    return write_atomic_text(render_report(deg, sh, top), out_md)
