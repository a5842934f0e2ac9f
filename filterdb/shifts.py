"""Distribution shifts of filter structure between meta-parameter groups (METHODS.md section 3).

The published recipe, streamed: scale every filter by its own peak ``f / max|f|``; fit one global
9-component PCA (mean ``mu``, basis ``V``, explained-variance ratios ``eta``); histogram each
component's coefficients ``c = (f - mu) V^T`` with ``bins`` equal bins over one global range
(the min and max of all coefficients of all components), density-normalised, empty bins floored
to ``eps`` and renormalised; symmetric KL (natural log) per component; and
``D(P, Q) = sum_i eta_i KLsym(h_P,i, h_Q,i)`` for every pair of groups of every axis.

Passes over ``weight`` (each one sequential, chunk-aligned, fixed memory):

1. PCA sums (count, mean, centred 9x9 scatter merged with Chan's formula, float64); the
   degeneracy statistics share this pass in :func:`compute_stats`.
2. The global coefficient range (needs the PCA).
3. Histogram counts per (model, depth decile, component, bin) in one ``bincount`` (needs the
   range). Every axis's groups are sums of these counts, so all axes cost one pass.

Exactness forces three passes: the bin edges depend on the global coefficient range, which
depends on the PCA basis, which depends on all filters; counts binned against a provisional
range cannot be re-binned exactly, and spilling the coefficients would write more bytes (float64)
than re-reading the float32 weights. Coefficients are recomputed identically in passes 2 and 3.

Conventions and edge cases:

- PCA signs: each component's entry of largest magnitude is positive (scikit-learn's
  ``svd_flip(u_based_decision=False)``), so coefficients and the range are reproducible.
- Binning reproduces ``numpy.histogram(range=(min, max), bins=bins)`` exactly (including its
  ULP corrections; a zero-width range is widened by 0.5 on each side as numpy does).
- All-zero filters stay zero after scaling; filters with non-finite weights are left out of
  PCA and histograms and counted in the attribute ``n_filters_nonfinite``.
- An empty group (e.g. a depth decile no layer falls into) keeps its row: ``n_filters = 0``,
  histogram and ``D`` row/column NaN (diagonal included). A group of one filter is an ordinary
  group (one non-empty bin per component, finite ``D``).
- Zero total variance (fewer than two distinct filters overall): ``eta`` is NaN, so ``D`` is NaN.
- Models without a value on an axis (code < 0 or NaN) are left out of that axis only.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import xarray as xr

from filterdb._reading import (
    chunk_size_of,
    iter_chunks,
    iter_layers,
    layer_table,
    tap,
    write_atomic_netcdf,
    write_atomic_text,
)
from filterdb.degeneracy import (
    DegeneracyParams,
    ScatterAccumulator,
    _DegeneracyPass,
    blas_limit,
    degeneracy_summary,
    row_peak,
)

__all__ = [
    "CoefficientRange",
    "GroupHistogram",
    "ShiftsParams",
    "StreamingPCA",
    "axis_groups",
    "compute_shifts",
    "compute_stats",
    "depth_deciles",
    "histogram_probabilities",
    "scale_filters",
    "shift_matrix",
    "symmetric_kl",
    "write_shifts",
    "write_stats",
]

STATS_VERSION = 1
DEPTH_AXIS = "depth"
TRAINED_AXIS = "trained"


@dataclass(frozen=True)
class ShiftsParams:
    """Constants of the shift statistics (``params.yaml`` section ``shifts:``).

    Attributes
    ----------
    n_components : int
        PCA components used (1..9); ``eta`` stays relative to the total variance.
    bins : int
        Equal-width histogram bins per component.
    eps : float
        Floor for empty bins before renormalising (float32 machine epsilon).
    axes : sequence of str
        Grouping axes: model-level categorical variables of the layout (``task``,
        ``visual_category``, ``training_dataset``, ``family``, ``training``, ...), ``trained``
        (``training`` collapsed to ``random-init`` vs ``trained``) and ``depth`` (deciles of
        ``conv_depth_norm``).
    depth_edges : sequence of float
        Cut points of the depth groups, right-closed, lowest included (pandas ``cut``).
    random_init_label : str
        The ``training`` value that means untrained, for the ``trained`` axis.
    chunk_size : int or None
        Filters per read; ``None`` follows the on-disk chunking of ``weight``.
    store_model_counts : bool
        Also store the raw counts per (model, depth decile, component, bin), from which any
        other grouping of models can be histogrammed without re-reading the data.
    blas_threads : int or None
        BLAS threads while computing (``None``: leave as is); see ``DegeneracyParams``.
    """

    n_components: int = 9
    bins: int = 70
    eps: float = 1.1920929e-07
    axes: tuple[str, ...] = (
        "task",
        "visual_category",
        "training_dataset",
        "family",
        "training",
        TRAINED_AXIS,
        DEPTH_AXIS,
    )
    depth_edges: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    random_init_label: str = "random-init"
    chunk_size: int | None = None
    store_model_counts: bool = True
    blas_threads: int | None = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", tuple(self.axes))
        object.__setattr__(self, "depth_edges", tuple(float(e) for e in self.depth_edges))
        if not 1 <= int(self.n_components) <= 9:
            raise ValueError(f"n_components must be in 1..9, got {self.n_components}")
        if int(self.bins) < 1:
            raise ValueError(f"bins must be >= 1, got {self.bins}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        e = np.asarray(self.depth_edges)
        if e.size < 2 or np.any(np.diff(e) <= 0):
            raise ValueError("depth_edges must be at least two increasing numbers")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ShiftsParams:
        """Build from a mapping (e.g. ``params.yaml: shifts``); unknown keys raise."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown keys in params 'shifts': {unknown}; known: {sorted(known)}")
        return cls(**values)

    @classmethod
    def coerce(cls, params: ShiftsParams | Mapping[str, Any] | None) -> ShiftsParams:
        """Return ``params`` as :class:`ShiftsParams` (``None`` gives the defaults)."""
        if isinstance(params, cls):
            return params
        return cls.from_dict(params)

    def as_attrs(self) -> dict[str, Any]:
        """The parameters as netCDF-safe attributes (``param_<name>``)."""
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if v is None:
                v = "none"
            elif isinstance(v, bool):
                v = int(v)
            elif isinstance(v, tuple) and v and isinstance(v[0], str):
                v = " ".join(v)
            elif isinstance(v, tuple):
                v = np.asarray(v, dtype=np.float64)
            out[f"param_{k}"] = v
        return out


# --------------------------------------------------------------------------------------------
# building blocks


def scale_filters(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale each filter by its peak magnitude.

    Parameters
    ----------
    w : numpy.ndarray
        Filters, shape ``(n, 3, 3)`` or ``(n, 9)``.

    Returns
    -------
    scaled : numpy.ndarray
        ``(n, 9)`` float64, ``f / max_j |f_j|``; all-zero filters stay zero.
    finite : numpy.ndarray
        ``(n,)`` bool, False where a filter holds NaN or inf (its row is meaningless).

    Examples
    --------
    >>> s, ok = scale_filters(np.array([[0, 2, -4, 0, 0, 0, 0, 0, 1], [0] * 9], "f4"))
    >>> s[0, :3].tolist(), s[1].max(), ok.tolist()
    ([0.0, 0.5, -1.0], np.float64(0.0), [True, True])
    """
    raw = np.asarray(w).reshape(-1, 9)
    peak = row_peak(raw).astype(np.float64)  # exact: |.| and max are exact in any precision
    finite = np.isfinite(peak)
    x = raw.astype(np.float64)
    with np.errstate(invalid="ignore"):
        x /= np.where(peak > 0, peak, 1.0)[:, None]
    return x, finite


class StreamingPCA:
    """PCA from streamed rows: count, mean and centred scatter (float64, Chan's merge).

    Parameters
    ----------
    n_components : int
        Components kept (the ratios stay relative to the total variance).

    Attributes
    ----------
    n_samples_ : int
        Rows seen.
    mean_ : numpy.ndarray
        ``(n_features,)`` mean row.
    components_ : numpy.ndarray
        ``(n_components, n_features)`` principal axes, by decreasing variance; each row's entry
        of largest magnitude is positive.
    explained_variance_ : numpy.ndarray
        Variances along the components (denominator ``n - 1``, as scikit-learn).
    explained_variance_ratio_ : numpy.ndarray
        ``explained_variance_ / total variance``; NaN when the total variance is 0.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 9)) * np.arange(9, 0, -1)
    >>> pca = StreamingPCA().update(x[:200]).update(x[200:]).finalize()
    >>> bool(np.isclose(pca.explained_variance_ratio_.sum(), 1.0))
    True
    """

    def __init__(self, n_components: int = 9, n_features: int = 9) -> None:
        self.n_components = n_components
        self.n_features = n_features

    def _acc(self) -> ScatterAccumulator:
        if not hasattr(self, "_scatter"):
            self._scatter = ScatterAccumulator(self.n_features)
        return self._scatter

    def update(self, x: np.ndarray) -> StreamingPCA:
        """Add rows ``x`` of shape ``(n, n_features)``; returns ``self``."""
        self._acc().update(x)
        return self

    def merge(self, other: StreamingPCA) -> StreamingPCA:
        """Combine with another accumulator (parallel workers); returns ``self``."""
        self._acc().merge(other._acc())
        return self

    def finalize(self) -> StreamingPCA:
        """Compute the learned attributes from the accumulated sums; returns ``self``."""
        acc = self._acc().finalize()
        n = acc.n_
        self.n_samples_ = n
        self.mean_ = acc.mean_
        cov = acc.scatter_ / (n - 1) if n > 1 else np.zeros_like(acc.scatter_)
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1]
        vals = np.clip(vals[order], 0.0, None)
        comps = vecs[:, order].T
        idx = np.argmax(np.abs(comps), axis=1)
        signs = np.sign(comps[np.arange(comps.shape[0]), idx])
        comps *= np.where(signs == 0, 1.0, signs)[:, None]
        total = vals.sum()
        k = self.n_components
        self.components_ = comps[:k]
        self.explained_variance_ = vals[:k]
        self.explained_variance_ratio_ = vals[:k] / total if total > 0 else np.full(k, np.nan)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Coefficients ``(x - mean_) @ components_.T`` (float64)."""
        return np.dot(np.asarray(x, dtype=np.float64) - self.mean_, self.components_.T)


class CoefficientRange:
    """Streaming global min and max of all values seen.

    Attributes
    ----------
    min_, max_ : float
        Extremes (NaN when nothing was seen).
    """

    def _state(self) -> tuple[float, float]:
        if not hasattr(self, "_lo"):
            self._lo, self._hi = math.inf, -math.inf
        return self._lo, self._hi

    def update(self, values: np.ndarray) -> CoefficientRange:
        """Add values (any shape); returns ``self``."""
        lo, hi = self._state()
        v = np.asarray(values)
        if v.size:
            self._lo, self._hi = min(lo, float(v.min())), max(hi, float(v.max()))
        return self

    def merge(self, other: CoefficientRange) -> CoefficientRange:
        """Combine with another accumulator; returns ``self``."""
        lo, hi = self._state()
        olo, ohi = other._state()
        self._lo, self._hi = min(lo, olo), max(hi, ohi)
        return self

    def finalize(self) -> CoefficientRange:
        """Set ``min_`` and ``max_``; returns ``self``."""
        lo, hi = self._state()
        empty = lo > hi
        self.min_ = math.nan if empty else lo
        self.max_ = math.nan if empty else hi
        return self


def histogram_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """Bin edges as ``numpy.histogram(range=(lo, hi), bins=bins)`` makes them.

    A zero-width range is widened by 0.5 on each side; an undefined (NaN) range gives ``[0, 1]``
    (numpy's choice for empty data).
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, int(bins) + 1, endpoint=True, dtype=np.float64)


def bin_indices(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value, exactly as ``numpy.histogram`` assigns it for equal bins.

    Values below the first edge go to bin 0 and above the last to the last bin (the streaming
    passes only bin values inside the range; clipping guards against nothing being dropped).
    """
    bins = edges.size - 1
    first, last = edges[0], edges[-1]
    idx = ((x - first) / (last - first) * bins).astype(np.intp)
    np.clip(idx, 0, bins - 1, out=idx)
    idx[x < edges[idx]] -= 1
    np.clip(idx, 0, bins - 1, out=idx)
    inc = (x >= edges[idx + 1]) & (idx != bins - 1)
    idx[inc] += 1
    return idx


class GroupHistogram:
    """Streaming histogram counts per (group slot, component, bin) in one ``bincount``.

    Parameters
    ----------
    n_slots : int
        Number of group slots (values of ``slots`` in :meth:`update` are ``0..n_slots-1``;
        negative slots are skipped).
    edges : numpy.ndarray
        Common bin edges (from :func:`histogram_edges`).

    Attributes
    ----------
    counts_ : numpy.ndarray
        int64 ``(n_slots, n_components, bins)``.
    """

    def __init__(self, n_slots: int, edges: np.ndarray) -> None:
        self.n_slots = n_slots
        self.edges = edges

    def _state(self, n_components: int | None = None) -> np.ndarray:
        if not hasattr(self, "_counts"):
            if n_components is None:
                raise ValueError("update() the histogram before finalize() or merge()")
            self._counts = np.zeros(
                (self.n_slots, n_components, self.edges.size - 1), dtype=np.int64
            )
        return self._counts

    def update(self, coefs: np.ndarray, slots: np.ndarray) -> GroupHistogram:
        """Add coefficient rows ``(n, n_components)`` with their group slot ``(n,)``."""
        coefs = np.asarray(coefs, dtype=np.float64)
        counts = self._state(coefs.shape[1])
        slots = np.asarray(slots, dtype=np.int64)
        keep = slots >= 0
        if not keep.all():
            coefs, slots = coefs[keep], slots[keep]
        if slots.size == 0:
            return self
        k, bins = counts.shape[1], counts.shape[2]
        s0, s1 = int(slots.min()), int(slots.max())
        idx = bin_indices(coefs, self.edges)
        key = ((slots - s0)[:, None] * k + np.arange(k)) * bins + idx
        local = np.bincount(key.ravel(), minlength=(s1 - s0 + 1) * k * bins)
        counts[s0 : s1 + 1] += local.reshape(s1 - s0 + 1, k, bins)
        return self

    def merge(self, other: GroupHistogram) -> GroupHistogram:
        """Add another accumulator's counts (same edges and slots); returns ``self``."""
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge histograms with different bin edges")
        if hasattr(other, "_counts"):
            self._state(other._counts.shape[1])
            self._counts += other._counts
        return self

    def finalize(self, n_components: int | None = None) -> GroupHistogram:
        """Set ``counts_``; returns ``self``."""
        self.counts_ = self._state(n_components).copy()
        return self


def histogram_probabilities(counts: np.ndarray, edges: np.ndarray, eps: float) -> np.ndarray:
    """Turn counts into the recipe's floored probability vectors.

    ``density = counts / n / width`` (as ``numpy.histogram(density=True)``), empty bins set to
    ``eps``, then divided by its sum. Along the last axis; rows with no counts give NaN.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=-1, keepdims=True)
    width = np.diff(edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        dens = counts / width / n
    dens = np.where(counts == 0, eps, dens)
    dens = np.where(n > 0, dens, np.nan)
    return dens / dens.sum(axis=-1, keepdims=True)


def symmetric_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``KL(p||q) + KL(q||p)`` (natural log) along the last axis; NaN if either is NaN."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    return (p * np.log(p / q)).sum(axis=-1) + (q * np.log(q / p)).sum(axis=-1)


def shift_matrix(probs: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise shifts ``D`` between groups.

    Parameters
    ----------
    probs : numpy.ndarray
        ``(groups, components, bins)`` from :func:`histogram_probabilities`.
    eta : numpy.ndarray
        ``(components,)`` explained-variance ratios.

    Returns
    -------
    D : numpy.ndarray
        ``(groups, groups)``, ``D[a, b] = sum_i eta_i KLsym(p_a,i, p_b,i)``: symmetric, zero on
        the diagonal of non-empty groups, NaN rows/columns for empty groups.
    klsym : numpy.ndarray
        ``(groups, groups, components)`` per-component symmetric KL.
    """
    g = probs.shape[0]
    kl = np.zeros((g, g, probs.shape[1]))
    for a in range(g):
        kl[a] = symmetric_kl(probs[a][None], probs)
    kl = (kl + kl.transpose(1, 0, 2)) / 2.0  # exact symmetry against rounding
    empty = np.isnan(probs).any(axis=(1, 2))
    for a in range(g):
        kl[a, a] = np.nan if empty[a] else 0.0
    return (kl * eta).sum(axis=-1), kl


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


def _depth_labels(edges: Sequence[float]) -> list[str]:
    return [f"{lo:g}-{hi:g}" for lo, hi in itertools.pairwise(edges)]


def _categorical(ds: xr.Dataset, name: str) -> tuple[list[str], np.ndarray]:
    """Labels and per-model codes (-1 missing) of a model-level categorical variable."""
    if name not in ds.variables:
        raise ValueError(f"axis {name!r}: the dataset has no model variable {name!r}")
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


# --------------------------------------------------------------------------------------------
# the passes


class _ShiftsPasses:
    def __init__(self, ds: xr.Dataset, params: ShiftsParams) -> None:
        self.ds = ds
        self.p = params
        self.first, self.count = layer_table(ds)
        self.n_models = int(ds.sizes.get("model", 0))
        n_layers = len(self.first)
        self.layer_model = (
            np.asarray(ds["layer_model"].values, dtype=np.int64)
            if "layer_model" in ds.variables
            else np.zeros(n_layers, np.int64)
        )
        self.n_models = max(self.n_models, int(self.layer_model.max(initial=-1)) + 1)
        depth = (
            np.asarray(ds["conv_depth_norm"].values, dtype=np.float64)
            if "conv_depth_norm" in ds.variables
            else np.full(n_layers, np.nan)
        )
        self.n_dec = len(params.depth_edges) - 1
        dec = depth_deciles(depth, params.depth_edges)
        self.n_depth_slots = self.n_dec + 1  # last slot: no depth group
        self.layer_slot = self.layer_model * self.n_depth_slots + np.where(
            dec >= 0, dec, self.n_dec
        )
        self.pca = StreamingPCA(params.n_components)
        self.n_nonfinite = 0

    # pass 1
    def pca_chunk(self, start: int, arr: np.ndarray) -> None:
        x, finite = scale_filters(arr)
        if not finite.all():
            self.n_nonfinite += int((~finite).sum())
            x = x[finite]
        self.pca.update(x)

    def coefficients(self, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, finite = scale_filters(arr)
        if not finite.all():
            x = x[finite]
        return self.pca.transform(x), finite

    def slots(self, start: int, n: int) -> np.ndarray:
        out = np.full(n, -1, dtype=np.int64)
        end = start + n
        ends = self.first + self.count
        lo = int(np.searchsorted(ends, start, side="right"))
        hi = int(np.searchsorted(self.first, end, side="left"))
        for li in range(lo, hi):
            a = max(int(self.first[li]), start) - start
            b = min(int(ends[li]), end) - start
            out[a:b] = self.layer_slot[li]
        return out

    def run_after_pass1(self, chunk: int) -> xr.Dataset:
        self.pca.finalize()
        rng = CoefficientRange()
        for _, arr in iter_chunks(self.ds, chunk):  # pass 2
            rng.update(self.coefficients(arr)[0])
        rng.finalize()
        edges = histogram_edges(rng.min_, rng.max_, self.p.bins)
        hist = GroupHistogram(self.n_models * self.n_depth_slots, edges)
        for start, arr in iter_chunks(self.ds, chunk):  # pass 3
            c, finite = self.coefficients(arr)
            hist.update(c, self.slots(start, arr.shape[0])[finite])
        hist.finalize(self.p.n_components)
        counts = hist.counts_.reshape(
            self.n_models, self.n_depth_slots, self.p.n_components, self.p.bins
        )
        return _assemble_shifts(self, rng, edges, counts)


def _group_block(
    name: str,
    labels: list[str],
    counts: np.ndarray,
    n_models: np.ndarray,
    edges: np.ndarray,
    eta: np.ndarray,
    eps: float,
) -> dict[str, xr.Variable]:
    probs = histogram_probabilities(counts, edges, eps)
    d, kl = shift_matrix(probs, eta)
    dim, dim_b = name, f"{name}_b"
    return {
        f"shift_{name}": xr.Variable(
            (dim, dim_b),
            d,
            {"long_name": f"D(P, Q) = sum_i eta_i KLsym between {name} groups", "units": "nat"},
        ),
        f"klsym_{name}": xr.Variable(
            (dim, dim_b, "component"), kl, {"long_name": "symmetric KL per component"}
        ),
        f"prob_{name}": xr.Variable(
            (dim, "component", "bin"),
            probs,
            {"long_name": "histogram density, empty bins floored to eps, renormalised"},
        ),
        f"count_{name}": xr.Variable((dim, "component", "bin"), counts.astype(np.int64)),
        f"n_filters_{name}": xr.Variable(dim, counts[:, 0, :].sum(axis=-1).astype(np.int64)),
        f"n_models_{name}": xr.Variable(dim, n_models.astype(np.int64)),
    }


def _assemble_shifts(
    sp: _ShiftsPasses, rng: CoefficientRange, edges: np.ndarray, counts: np.ndarray
) -> xr.Dataset:
    p, pca, ds = sp.p, sp.pca, sp.ds
    k = p.n_components
    eta = pca.explained_variance_ratio_
    data: dict[str, xr.Variable] = {
        "pca_mean": xr.Variable("tap", pca.mean_, {"long_name": "mean of peak-scaled filters"}),
        "pca_components": xr.Variable(
            ("component", "tap"), pca.components_, {"long_name": "principal axes (rows)"}
        ),
        "explained_variance": xr.Variable("component", pca.explained_variance_),
        "explained_variance_ratio": xr.Variable("component", eta),
        "bin_edges": xr.Variable("bin_edge", edges),
    }
    coords: dict[str, Any] = {
        "component": np.arange(k),
        "tap": np.arange(9),
        "bin": np.arange(p.bins),
        "bin_center": ("bin", (edges[:-1] + edges[1:]) / 2.0),
    }
    per_model = counts.sum(axis=1)  # (model, component, bin)
    has = per_model[:, 0, :].sum(axis=-1) > 0
    for axis in p.axes:
        if axis == DEPTH_AXIS:
            labels = _depth_labels(p.depth_edges)
            c = counts[:, : sp.n_dec].sum(axis=0)
            nm = (counts[:, : sp.n_dec, 0, :].sum(axis=-1) > 0).sum(axis=0)
            coords["depth_lower"] = (DEPTH_AXIS, np.asarray(p.depth_edges[:-1]))
            coords["depth_upper"] = (DEPTH_AXIS, np.asarray(p.depth_edges[1:]))
        else:
            labels, model_group = axis_groups(ds, axis, p)
            onehot = (model_group[None, :] == np.arange(len(labels))[:, None]).astype(np.int64)
            onehot = np.pad(onehot, ((0, 0), (0, sp.n_models - onehot.shape[1])))
            c = np.tensordot(onehot, per_model, axes=(1, 0))
            nm = (onehot * has[None, :]).sum(axis=1)
        coords[axis] = np.asarray(labels, dtype=object)
        coords[f"{axis}_b"] = np.asarray(labels, dtype=object)
        data.update(_group_block(axis, labels, c, nm, edges, eta, p.eps))
    if p.store_model_counts:
        data["count_model_depth"] = xr.Variable(
            ("model", "depth_slot", "component", "bin"),
            counts,
            {
                "long_name": "counts per model and depth group (last slot: no depth group)",
            },
            encoding={"zlib": True, "complevel": 4},
        )
        coords["depth_slot"] = np.asarray([*_depth_labels(p.depth_edges), "none"], dtype=object)
        if "model" in ds.variables:
            coords["model"] = np.asarray(ds["model"].values)
    out = xr.Dataset(data, coords=coords)
    out.attrs.update(
        title="filterdb distribution-shift statistics",
        filterdb_stats_version=STATS_VERSION,
        axes=" ".join(p.axes),
        n_filters_used=int(pca.n_samples_),
        n_filters_nonfinite=int(sp.n_nonfinite),
        coef_min=rng.min_,
        coef_max=rng.max_,
        passes=3,
        comment=(
            "METHODS.md section 3: peak-scaled filters, one global PCA (largest-magnitude entry "
            "of each component positive), histograms over the global coefficient range, "
            "eps-floored and renormalised, symmetric KL (nat), D = sum eta_i KLsym. Empty groups "
            "have NaN histograms and D."
        ),
        **p.as_attrs(),
    )
    return out


# --------------------------------------------------------------------------------------------
# public entry points


def compute_stats(
    ds: xr.Dataset,
    degeneracy_params: DegeneracyParams | Mapping[str, Any] | None = None,
    shifts_params: ShiftsParams | Mapping[str, Any] | None = None,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Degeneracy and shift statistics with the degeneracy sharing the first pass.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the filterdb layout, typically opened lazily.
    degeneracy_params, shifts_params : params or dict, optional
        ``params.yaml: degeneracy`` and ``shifts``.

    Returns
    -------
    degeneracy, shifts : xarray.Dataset
        As :func:`filterdb.degeneracy.compute_degeneracy` and :func:`compute_shifts`.
    """
    dp = DegeneracyParams.coerce(degeneracy_params)
    sp = ShiftsParams.coerce(shifts_params)
    chunk = chunk_size_of(ds, sp.chunk_size if sp.chunk_size is not None else dp.chunk_size)
    deg = _DegeneracyPass(ds, dp)
    passes = _ShiftsPasses(ds, sp)
    with blas_limit(sp.blas_threads):
        chunks = tap(iter_chunks(ds, chunk), passes.pca_chunk)
        for li, w in iter_layers(chunks, deg.first, deg.count):  # pass 1, shared
            deg.layer(li, w)
        return deg.result(), passes.run_after_pass1(chunk)


def compute_shifts(
    ds: xr.Dataset, params: ShiftsParams | Mapping[str, Any] | None = None
) -> xr.Dataset:
    """Distribution-shift statistics of every axis.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the filterdb layout (``docs/data-layout.md``).
    params : ShiftsParams or dict, optional
        ``params.yaml: shifts``.

    Returns
    -------
    xarray.Dataset
        ``pca_mean(tap)``, ``pca_components(component, tap)``, ``explained_variance(_ratio)``,
        ``bin_edges(bin_edge)``; per axis ``A`` (coordinates ``A`` and ``A_b`` hold the group
        labels): ``shift_A(A, A_b)``, ``klsym_A(A, A_b, component)``,
        ``prob_A(A, component, bin)``, ``count_A(A, component, bin)``, ``n_filters_A(A)``,
        ``n_models_A(A)``; optionally ``count_model_depth(model, depth_slot, component, bin)``.
    """
    sp = ShiftsParams.coerce(params)
    passes = _ShiftsPasses(ds, sp)
    chunk = chunk_size_of(ds, sp.chunk_size)
    with blas_limit(sp.blas_threads):
        for start, arr in iter_chunks(ds, chunk):
            passes.pca_chunk(start, arr)
        return passes.run_after_pass1(chunk)


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
    """Write computed statistics atomically: both netCDF files and the degeneracy summary.

    Returns
    -------
    dict
        The degeneracy summary (also written to ``degeneracy_json`` when given).
    """
    write_atomic_netcdf(deg, degeneracy_nc)
    write_atomic_netcdf(shifts, shifts_nc)
    summary = degeneracy_summary(deg)
    if degeneracy_json is not None:
        write_atomic_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", degeneracy_json)
    return summary
