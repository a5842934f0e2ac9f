"""The groups of the shift statistics' axes: labels and each model's group, depth deciles.

A model-level axis (``task``, ``family``, ``training``, ...) groups models by a categorical
variable of the layout; ``trained`` collapses ``training`` into random-init and trained; ``depth``
groups layers by deciles of ``conv_depth_norm``. A value of -1 means "on no group of this axis".
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from filterdb.errors import InputError
from filterdb.stats.params import TRAINED_AXIS, ShiftsParams

__all__ = ["axis_groups", "depth_deciles", "depth_labels", "population_groups"]


def depth_deciles(depth_norm: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Group index of each normalised depth: right-closed bins, lowest edge included.

    Matches ``pandas.cut(depth_norm, edges, include_lowest=True)``; values outside the edges or
    NaN give -1.
    """
    e = np.asarray(edges, dtype=np.float64)
    x = np.asarray(depth_norm, dtype=np.float64)
    idx = np.searchsorted(e, x, side="left") - 1
    idx = np.where(x == e[0], 0, idx)
    bad = ~np.isfinite(x) | (x < e[0]) | (x > e[-1])
    return np.where(bad, -1, idx).astype(np.int64)


def depth_labels(edges: Sequence[float]) -> list[str]:
    """Labels ``lo-hi`` of the depth groups between consecutive ``edges``."""
    return [f"{lo:g}-{hi:g}" for lo, hi in itertools.pairwise(edges)]


def _categorical(ds: xr.Dataset, name: str) -> tuple[list[str], np.ndarray]:
    """Labels and per-model codes (-1 missing) of a model-level categorical variable."""
    if name not in ds.variables:
        raise InputError(f"axis {name!r}: the dataset has no model variable {name!r}")
    var = ds[name]
    raw = np.asarray(var.values)
    if raw.dtype.kind in "OSU":
        labels = sorted({str(v) for v in raw if str(v) not in ("", "nan", "None")})
        lookup = {lab: i for i, lab in enumerate(labels)}
        return labels, np.array([lookup.get(str(v), -1) for v in raw], np.int64)
    meanings = str(var.attrs.get("flag_meanings", "")).split()
    values = var.attrs.get("flag_values")
    finite = np.isfinite(raw.astype(np.float64))
    codes = np.where(finite, raw.astype(np.float64), -1).astype(np.int64)
    if not meanings:
        present = sorted(set(codes[codes >= 0].tolist()))
        meanings = [str(v) for v in present]
        values = present
    values = np.atleast_1d(np.asarray(values if values is not None else range(len(meanings))))
    lookup = {int(v): i for i, v in enumerate(values.tolist())}
    return meanings, np.array([lookup.get(int(c), -1) for c in codes], np.int64)


def axis_groups(
    ds: xr.Dataset, axis: str, params: ShiftsParams | Mapping[str, Any] | None = None
) -> tuple[list[str], np.ndarray]:
    """Group labels of a model-level axis and each model's group (-1: not on this axis).

    ``trained`` collapses ``training`` into ``random-init`` and ``trained``; other names are
    model-level categorical variables of the layout (codes with ``flag_values`` and
    ``flag_meanings``). The ``depth`` axis is per layer and handled by :func:`depth_deciles`.
    """
    p = ShiftsParams.coerce(params)
    if axis == TRAINED_AXIS:
        labels, codes = _categorical(ds, "training")
        is_random = np.array([lab == p.random_init_label for lab in labels], bool)
        out = np.where(codes < 0, -1, np.where(is_random[np.maximum(codes, 0)], 0, 1))
        return ["random-init", "trained"], out.astype(np.int64)
    return _categorical(ds, axis)


def population_groups(
    labels: list[str], model_group: np.ndarray, fit: np.ndarray
) -> tuple[list[str], np.ndarray]:
    """Keep only the fit population's models and the labels that one of them has."""
    group = np.where(fit[: model_group.size], model_group, -1)
    present = sorted(set(group[group >= 0].tolist()))
    remap = np.full(len(labels) + 1, -1, np.int64)
    remap[present] = np.arange(len(present))
    return [labels[i] for i in present], np.where(group >= 0, remap[group], -1)
