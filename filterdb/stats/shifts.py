"""Distribution shifts of filter structure between meta-parameter groups (METHODS.md section 3).

The published recipe, streamed: scale every filter by its own peak ``f / max|f|``; fit one global
9-component PCA (mean ``mu``, basis ``V``, explained-variance ratios ``eta``); histogram each
component's coefficients ``c = (f - mu) V^T`` with ``bins`` equal bins over one global range
(the min and max of all coefficients of all components), density-normalised, empty bins floored
to ``eps`` and renormalised; symmetric KL (natural log) per component; and
``D(P, Q) = sum_i eta_i KLsym(h_P,i, h_Q,i)`` for every pair of groups of every axis.

Population (``population``): with ``trained`` (the default, the study's population) the PCA,
the global coefficient range and every axis except ``trained`` use only models whose
``training`` is known and not ``random_init_label``. Random-init filters are projected in the
same basis and binned with the same edges for the ``trained`` axis only; their coefficients
outside the trained range are clipped into the end bins (counted per component and side in
``n_coef_outside``), so every random-init filter is counted and its mass beyond the trained
range shows up as mass in the end bins instead of disappearing. Models without a ``training``
value are left out (``n_filters_excluded``). With ``all`` every model is pooled everywhere (the
behaviour before the parameter existed). Each ``shift_<axis>`` records its population in the
attribute ``population``; the file has the global attributes ``population`` and ``sign_rule``.

Passes over ``weight`` (each one sequential, chunk-aligned, fixed memory):

1. PCA sums (count, mean, centred 9x9 scatter merged with Chan's formula, float64); the
   degeneracy statistics share this pass in :func:`compute_stats`.
2. The global coefficient range (needs the PCA) and, per component, the coefficient of largest
   magnitude (first in file order on ties), which fixes the u-based signs.
3. Histogram counts per (model, depth decile, component, bin) in one ``bincount`` (needs the
   range). Every axis's groups are sums of these counts, so all axes cost one pass.

Exactness forces three passes: the bin edges depend on the global coefficient range, which
depends on the PCA basis, which depends on all filters; counts binned against a provisional
range cannot be re-binned exactly, and spilling the coefficients would write more bytes (float64)
than re-reading the float32 weights. Coefficients are recomputed identically in passes 2 and 3.

Conventions and edge cases:

- PCA signs (``sign_rule``): ``v-based`` (default) makes each component's entry of largest
  magnitude positive (scikit-learn >= 1.5, ``svd_flip(u_based_decision=False)``); ``u-based``
  makes the coefficient of largest magnitude over the fit population positive, which is the
  sign of the largest-magnitude entry of ``U`` in ``X - mu = U S V`` (scikit-learn 0.24, used by
  the study, ``svd_flip(u_based_decision=True)``). ``U`` is never formed: the peak coefficient
  is accumulated in pass 2 and the range of a flipped component is the negated range, exactly
  (IEEE negation commutes with the projection), so no extra pass is needed. A component whose
  coefficients are all zero keeps its sign (scikit-learn would multiply it by 0). The signs do
  not change ``eta``, but ``D`` depends on them through the asymmetric global range.
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from filterdb._atomic import atomic_paths, disk_full_as_error, write_atomic_netcdf
from filterdb.dataset.reading import (
    FoldScales,
    check_filter_view,
    chunk_size_of,
    default_workers,
    iter_chunks,
    iter_layers,
    layer_table,
    ordered_map,
    tap,
)
from filterdb.errors import InputError
from filterdb.params import section_params
from filterdb.stats.degeneracy import (
    DegeneracyParams,
    ScatterAccumulator,
    _DegeneracyPass,
    blas_limit,
    col_min_max,
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
    "count_outside",
    "depth_deciles",
    "histogram_probabilities",
    "model_roles",
    "scale_filters",
    "shift_matrix",
    "slot_counts",
    "symmetric_kl",
    "write_shifts",
    "write_stats",
]

STATS_VERSION = 1
DEPTH_AXIS = "depth"
TRAINED_AXIS = "trained"
#: Values of ``ShiftsParams.population``.
POPULATIONS = ("trained", "all")
#: Values of ``ShiftsParams.sign_rule``.
SIGN_RULES = ("v-based", "u-based")
#: Population attribute of the ``trained`` axis under ``population: trained``.
TRAINED_AXIS_POPULATION = "trained+random-init"

# role of a model (and its filters) in the statistics
_FIT = 0  # in the PCA, the range and every axis
_PROJECTED = 1  # projected in the basis, binned with the same edges, on the trained axis only
_OUT = -1  # in nothing


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
        The ``training`` value that means untrained, for the ``trained`` axis and the
        population.
    population : {"trained", "all"}
        ``trained``: the PCA, the coefficient range and all axes but ``trained`` use the models
        whose ``training`` is known and not ``random_init_label``; random-init filters are
        projected in that basis for the ``trained`` axis only (clipped into the end bins when
        outside the range). ``all``: every model everywhere.
    sign_rule : {"v-based", "u-based"}
        PCA component signs: ``v-based`` makes each component's largest-magnitude entry
        positive; ``u-based`` (scikit-learn 0.24, the study) makes each component's
        largest-magnitude coefficient over the fit population positive.
    filters : {"raw", "folded"}
        ``raw``: the conv's own weights; ``folded``: ``weight * fold_scale`` per output channel
        (BatchNorm folded, as the study measured), folded chunk by chunk where the passes read
        them. Peak scaling cancels positive scales; a negative scale flips the filter's sign.
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
    population: str = "trained"
    sign_rule: str = "v-based"
    chunk_size: int | None = None
    store_model_counts: bool = True
    blas_threads: int | None = 1
    filters: str = "raw"

    def __post_init__(self) -> None:
        check_filter_view(self.filters, "shifts")
        for key, allowed in (("population", POPULATIONS), ("sign_rule", SIGN_RULES)):
            value = getattr(self, key)
            if not isinstance(value, str) or value not in allowed:
                raise InputError(
                    f"shifts.{key} must be one of {', '.join(allowed)}; got {value!r}"
                    + ("" if isinstance(value, str) else f" ({type(value).__name__})")
                )
        if not isinstance(self.random_init_label, str) or not self.random_init_label:
            raise InputError(
                f"shifts.random_init_label must be a non-empty string; "
                f"got {self.random_init_label!r}"
            )
        object.__setattr__(self, "axes", tuple(self.axes))
        object.__setattr__(self, "depth_edges", tuple(float(e) for e in self.depth_edges))
        if not 1 <= int(self.n_components) <= 9:
            raise InputError(f"n_components must be in 1..9, got {self.n_components}")
        if int(self.bins) < 1:
            raise InputError(f"bins must be >= 1, got {self.bins}")
        if not self.eps > 0:
            raise InputError(f"eps must be > 0, got {self.eps}")
        e = np.asarray(self.depth_edges)
        if e.size < 2 or np.any(np.diff(e) <= 0):
            raise InputError("depth_edges must be at least two increasing numbers")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ShiftsParams:
        """Build from a mapping (e.g. ``params.yaml: shifts``); unknown keys raise."""
        return section_params(cls, values, "shifts")

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
        of largest magnitude is positive (v-based signs; :meth:`flip` changes them).
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

    def _transform_owned(self, x: np.ndarray) -> np.ndarray:
        """:meth:`transform` of a float64 array the caller owns: centred in place (the same
        arithmetic, one temporary less), so ``x`` is overwritten."""
        np.subtract(x, self.mean_, out=x)
        return np.dot(x, self.components_.T)

    def flip(self, signs: np.ndarray) -> StreamingPCA:
        """Multiply component ``i`` by ``signs[i]`` (``+1`` or ``-1``); returns ``self``."""
        signs = np.asarray(signs, dtype=np.float64)
        if not np.all(np.abs(signs) == 1.0):
            raise ValueError(f"signs must be +1 or -1, got {signs}")
        self.components_ = self.components_ * signs[:, None]
        return self


class CoefficientRange:
    """Streaming min and max of coefficients, and each component's peak coefficient.

    :meth:`update` takes coefficient rows ``(n, k)``: it tracks the global min and max over all
    values, the min and max per column, and per column the value of largest magnitude (the
    first in ``index`` order on ties, as ``numpy.argmax`` over the rows of ``U`` picks it).

    Attributes
    ----------
    min_, max_ : float
        Global extremes (NaN when nothing was seen).
    component_min_, component_max_ : numpy.ndarray
        ``(k,)`` extremes per column (NaN when nothing was seen).
    peak_ : numpy.ndarray
        ``(k,)`` per column the value of largest magnitude; its sign is the u-based sign.
    peak_index_ : numpy.ndarray
        ``(k,)`` int64 ``index`` of that value (-1 when nothing was seen).
    """

    def _state(self) -> tuple[float, float]:
        if not hasattr(self, "_lo"):
            self._lo, self._hi = math.inf, -math.inf
            self._seen = 0
            self._cols: tuple[np.ndarray, ...] | None = None
        return self._lo, self._hi

    def update(self, values: np.ndarray, index: np.ndarray | None = None) -> CoefficientRange:
        """Add coefficient rows ``(n, k)`` (other shapes: only the global extremes).

        ``index`` gives each row's position in the data (increasing; default: the number of
        rows added before); it breaks ties of the peak magnitude. Returns ``self``.
        """
        lo, hi = self._state()
        v = np.asarray(values)
        if v.ndim == 2 and v.shape[0]:
            n = v.shape[0]
            cmin, cmax = col_min_max(v)  # exact, as v.min(axis=0), v.max(axis=0)
            # the global extremes are the extremes of the columns' (NaN propagates alike)
            self._lo, self._hi = min(lo, float(cmin.min())), max(hi, float(cmax.max()))
            idx = (
                np.arange(self._seen, self._seen + n, dtype=np.int64)
                if index is None
                else np.asarray(index, dtype=np.int64)
            )
            arg = np.argmax(np.abs(v), axis=0)  # first occurrence: the smallest index
            cols = np.arange(v.shape[1])
            self._merge_cols((cmin, cmax, v[arg, cols].astype(np.float64), idx[arg]))
        elif v.size:
            self._lo, self._hi = min(lo, float(v.min())), max(hi, float(v.max()))
        if v.ndim == 2:
            self._seen += v.shape[0]
        return self

    def _merge_cols(self, other: tuple[np.ndarray, ...] | None) -> None:
        if other is None:
            return
        if self._cols is None:
            self._cols = tuple(np.array(a) for a in other)
            return
        cmin, cmax, peak, pidx = self._cols
        omin, omax, opeak, oidx = other
        if omin.shape != cmin.shape:
            raise ValueError("cannot combine coefficient rows with different numbers of columns")
        a, b = np.abs(peak), np.abs(opeak)
        take = (b > a) | ((b == a) & (oidx < pidx))
        self._cols = (
            np.minimum(cmin, omin),
            np.maximum(cmax, omax),
            np.where(take, opeak, peak),
            np.where(take, oidx, pidx),
        )

    def merge(self, other: CoefficientRange) -> CoefficientRange:
        """Combine with another accumulator; returns ``self``."""
        lo, hi = self._state()
        olo, ohi = other._state()
        self._lo, self._hi = min(lo, olo), max(hi, ohi)
        self._merge_cols(other._cols)
        self._seen += other._seen
        return self

    def finalize(self, n_components: int | None = None) -> CoefficientRange:
        """Set the attributes (``n_components`` sizes the per-column ones when nothing was
        seen); returns ``self``."""
        lo, hi = self._state()
        empty = lo > hi
        self.min_ = math.nan if empty else lo
        self.max_ = math.nan if empty else hi
        if self._cols is not None:
            cmin, cmax, peak, pidx = (np.array(a) for a in self._cols)
        else:
            k = int(n_components or 0)
            cmin, cmax, peak = (np.full(k, np.nan) for _ in range(3))
            pidx = np.full(k, -1, np.int64)
        self.component_min_, self.component_max_ = cmin, cmax
        self.peak_, self.peak_index_ = peak, pidx
        return self

    def u_based_signs(self) -> np.ndarray:
        """``sign(peak_)`` per component, ``+1`` where the peak is 0 or undefined."""
        return np.where(self.peak_ < 0, -1.0, 1.0)

    def flipped(self, signs: np.ndarray) -> CoefficientRange:
        """The finalized range of the coefficients after multiplying column ``i`` by
        ``signs[i]`` (exact: negation commutes with the projection in IEEE arithmetic)."""
        signs = np.asarray(signs, dtype=np.float64)
        neg = signs < 0
        out = CoefficientRange()
        out._state()
        out._seen = self._seen
        cmin = np.where(neg, -self.component_max_, self.component_min_)
        cmax = np.where(neg, -self.component_min_, self.component_max_)
        out._cols = (cmin, cmax, self.peak_ * signs, self.peak_index_.copy())
        if cmin.size and np.isfinite(cmin).all():
            out._lo, out._hi = float(cmin.min()), float(cmax.max())
        else:
            out._lo, out._hi = self._lo, self._hi
        return out.finalize(signs.size)


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

    As numpy does, an estimate ``e = int((x - lo) / (hi - lo) * bins)`` (clipped to the bins)
    is corrected against the edges themselves: ``e - 1`` where ``x < edges[e]``, ``e + 1``
    where ``x >= edges[e + 1]`` (never past the last bin, which is closed on the right). The
    two corrections exclude each other, so both are read off the estimate, with two lookups
    into small tables and no boolean indexing. The result is a new ``intp`` array.
    """
    bins = edges.size - 1
    first, last = edges[0], edges[-1]
    x = np.asarray(x, dtype=np.float64)
    # upper[e] = edges[e + 1], except the last bin: NaN, so that no comparison moves it up
    upper = np.append(edges[1:-1], np.nan)
    t = np.subtract(x, first)
    t /= last - first
    t *= bins
    with np.errstate(invalid="ignore"):
        idx = t.astype(np.intp)
    np.clip(idx, 0, bins - 1, out=idx)
    move = np.empty(x.shape, dtype=bool)
    np.take(edges, idx, out=t)
    np.less(x, t, out=move)  # below the estimate's lower edge: one bin down
    np.take(upper, idx, out=t)
    idx -= move
    np.greater_equal(x, t, out=move)  # at or above its upper edge: one bin up
    idx += move
    np.maximum(idx, 0, out=idx)  # below the first edge: bin 0
    return idx


def slot_counts(
    coefs: np.ndarray, slots: np.ndarray, edges: np.ndarray
) -> tuple[int, np.ndarray | None]:
    """Histogram counts of coefficient rows per (group slot, component, bin), one ``bincount``.

    Parameters
    ----------
    coefs : numpy.ndarray
        ``(n, k)`` coefficients.
    slots : numpy.ndarray
        ``(n,)`` group slot of each row; rows with a negative slot are skipped.
    edges : numpy.ndarray
        Common bin edges (:func:`histogram_edges`); binned by :func:`bin_indices`.

    Returns
    -------
    first_slot : int
        The lowest slot seen (0 when none).
    counts : numpy.ndarray or None
        int64 ``(last_slot - first_slot + 1, k, bins)``, or None when no row has a slot.
    """
    coefs = np.asarray(coefs, dtype=np.float64)
    slots = np.asarray(slots, dtype=np.int64)
    keep = slots >= 0
    if not keep.all():
        coefs, slots = coefs[keep], slots[keep]
    if slots.size == 0:
        return 0, None
    k, bins = coefs.shape[1], edges.size - 1
    s0, s1 = int(slots.min()), int(slots.max())
    key = bin_indices(coefs, edges)  # a new array: the key is built in it
    key += np.arange(k, dtype=np.intp) * bins
    if s1 > s0:
        key += ((slots - s0) * (k * bins))[:, None]
    local = np.bincount(key.ravel(), minlength=(s1 - s0 + 1) * k * bins)
    return s0, local.reshape(s1 - s0 + 1, k, bins)


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
        s0, local = slot_counts(coefs, slots, self.edges)
        if local is not None:
            counts[s0 : s0 + local.shape[0]] += local
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


# --------------------------------------------------------------------------------------------
# the passes


def model_roles(
    ds: xr.Dataset, params: ShiftsParams | Mapping[str, Any] | None = None
) -> np.ndarray:
    """Each model's role in the statistics under ``params.population``.

    Returns
    -------
    numpy.ndarray
        int8 per model: 0 in the PCA, the range and every axis (the fit population); 1 only
        projected for the ``trained`` axis (random-init under ``population: trained``); -1 in
        nothing (no ``training`` value under ``population: trained``). All 0 with
        ``population: all``.
    """
    p = ShiftsParams.coerce(params)
    n = int(ds.sizes.get("model", 0))
    if p.population == "all":
        return np.zeros(n, np.int8)
    if "training" not in ds.variables:
        raise InputError(
            "shifts.population 'trained' needs the model variable 'training' to tell trained "
            "from random-init models; the dataset has none (set population: all to pool them)"
        )
    _, grp = axis_groups(ds, TRAINED_AXIS, p)  # 0 random-init, 1 trained, -1 unknown
    return np.where(grp == 1, _FIT, np.where(grp == 0, _PROJECTED, _OUT)).astype(np.int8)


def _apply_sign_rule(pca: StreamingPCA, rng: CoefficientRange, rule: str) -> CoefficientRange:
    """Flip ``pca`` to ``rule`` (it is v-based after ``finalize``); returns the range after the
    flip (finalized). ``rng`` holds the coefficients of the v-based basis."""
    if rule == "v-based":
        return rng
    signs = rng.u_based_signs()
    pca.flip(signs)
    return rng.flipped(signs)


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
        roles = model_roles(ds, params)
        # models beyond the model table have no training value: out of a trained population
        pad = _FIT if params.population == "all" else _OUT
        self.model_role = np.concatenate([roles, np.full(self.n_models - roles.size, pad, np.int8)])
        self.layer_role = self.model_role[self.layer_model] if n_layers else np.zeros(0, np.int8)
        # with population 'all' nothing is masked: every finite filter is in the PCA and range
        self.masked = params.population != "all"
        self.pca = StreamingPCA(params.n_components)
        self.n_nonfinite = 0
        self.fold = FoldScales(ds) if params.filters == "folded" else None

    def _scaled(self, start: int, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Peak-scaled rows of a chunk read at filter ``start``, BatchNorm-folded first when
        ``filters`` is ``folded`` (see :func:`scale_filters`)."""
        return scale_filters(self.fold.apply(start, arr) if self.fold is not None else arr)

    def _per_filter(self, start: int, n: int, per_layer: np.ndarray, fill: int) -> np.ndarray:
        out = np.full(n, fill, dtype=per_layer.dtype)
        end = start + n
        ends = self.first + self.count
        lo = int(np.searchsorted(ends, start, side="right"))
        hi = int(np.searchsorted(self.first, end, side="left"))
        for li in range(lo, hi):
            a = max(int(self.first[li]), start) - start
            b = min(int(ends[li]), end) - start
            out[a:b] = per_layer[li]
        return out

    def roles(self, start: int, n: int) -> np.ndarray:
        """Role of each filter of ``[start, start + n)`` (filters in no layer: -1)."""
        return self._per_filter(start, n, self.layer_role, _OUT)

    def slots(self, start: int, n: int) -> np.ndarray:
        return self._per_filter(start, n, self.layer_slot, -1)

    # Per-chunk kernels. Each is a pure function of one chunk (safe on any thread) and returns
    # a small partial result; callers fold the partials in file order (PCA sums) or in any
    # order (extremes, integer counts), so threads and dask tasks give the sequential bits.

    # pass 1
    def fit_rows(self, start: int, arr: np.ndarray) -> tuple[np.ndarray, int]:
        """Peak-scaled finite rows of the fit population in a chunk, and its non-finite count
        (over all filters of the chunk, whatever their role)."""
        x, finite = self._scaled(start, arr)
        bad = int((~finite).sum())
        keep = finite & (self.roles(start, arr.shape[0]) == _FIT) if self.masked else finite
        if not keep.all():
            x = x[keep]
        return x, bad

    def pca_partial(self, start: int, arr: np.ndarray) -> tuple[StreamingPCA, int]:
        """PCA sums of one chunk (merge them in file order) and its non-finite count."""
        x, bad = self.fit_rows(start, arr)
        return StreamingPCA(self.p.n_components).update(x), bad

    def merge_pca(self, part: StreamingPCA, bad: int) -> None:
        """Fold one chunk's :meth:`pca_partial` into the running sums (call in file order)."""
        self.n_nonfinite += bad
        self.pca.merge(part)

    def pca_chunk(self, start: int, arr: np.ndarray) -> None:
        self.merge_pca(*self.pca_partial(start, arr))

    # pass 2
    def fit_coefficients(self, start: int, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients of the fit rows of a chunk and their filter indices."""
        x, finite = self._scaled(start, arr)
        keep = finite & (self.roles(start, arr.shape[0]) == _FIT) if self.masked else finite
        if not keep.all():
            x = x[keep]
        return self.pca._transform_owned(x), start + np.flatnonzero(keep)

    def range_partial(self, start: int, arr: np.ndarray) -> CoefficientRange:
        """Extremes and peak coefficients of one chunk (merge them in any order)."""
        return CoefficientRange().update(*self.fit_coefficients(start, arr))

    def range_chunk(self, rng: CoefficientRange, start: int, arr: np.ndarray) -> None:
        rng.update(*self.fit_coefficients(start, arr))

    # pass 3
    def coefficients(
        self, start: int, arr: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coefficients of the binned rows of a chunk (finite, role fit or projected), the row
        mask, and whether each binned row is projected only."""
        x, finite = self._scaled(start, arr)
        keep = finite
        projected = np.zeros(0, bool)
        if self.masked:
            role = self.roles(start, arr.shape[0])
            keep = finite & (role != _OUT)
            projected = role[keep] == _PROJECTED
        if not keep.all():
            x = x[keep]
        if not self.masked:
            projected = np.zeros(x.shape[0], bool)
        return self.pca._transform_owned(x), keep, projected

    def hist_partial(
        self, edges: np.ndarray, start: int, arr: np.ndarray
    ) -> tuple[int, np.ndarray | None, np.ndarray]:
        """Histogram counts of one chunk: ``(first_slot, counts or None, outside)`` as
        :func:`slot_counts`, plus the clipped coefficients per component and side."""
        c, keep, projected = self.coefficients(start, arr)
        outside = np.zeros((c.shape[1], 2), np.int64)
        if projected.any():
            count_outside(outside, c[projected], edges)
        s0, counts = slot_counts(c, self.slots(start, arr.shape[0])[keep], edges)
        return s0, counts, outside

    def hist_chunk(
        self, hist: GroupHistogram, outside: np.ndarray, start: int, arr: np.ndarray
    ) -> None:
        c, keep, projected = self.coefficients(start, arr)
        hist.update(c, self.slots(start, arr.shape[0])[keep])
        count_outside(outside, c[projected], hist.edges)

    def run_after_pass1(self, chunk: int, workers: int = 1) -> xr.Dataset:
        """Passes 2 and 3 (after the PCA sums of pass 1), chunks computed on ``workers``
        threads."""
        self.pca.finalize()
        rng = CoefficientRange()
        for part in ordered_map(self.range_partial, iter_chunks(self.ds, chunk), workers):
            rng.merge(part)  # pass 2
        rng = _apply_sign_rule(self.pca, rng.finalize(self.p.n_components), self.p.sign_rule)
        edges = histogram_edges(rng.min_, rng.max_, self.p.bins)
        k = self.p.n_components
        counts = np.zeros((self.n_models * self.n_depth_slots, k, self.p.bins), np.int64)
        outside = np.zeros((k, 2), np.int64)
        jobs = ((edges, start, arr) for start, arr in iter_chunks(self.ds, chunk))
        for s0, local, out in ordered_map(self.hist_partial, jobs, workers):  # pass 3
            if local is not None:
                counts[s0 : s0 + local.shape[0]] += local
            outside += out
        counts = counts.reshape(self.n_models, self.n_depth_slots, k, self.p.bins)
        return _assemble_shifts(self, rng, edges, counts, outside)


def count_outside(out: np.ndarray, coefs: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Add to ``out[component, (below, above)]`` the coefficients outside ``edges``."""
    if coefs.size:
        out[:, 0] += (coefs < edges[0]).sum(axis=0)
        out[:, 1] += (coefs > edges[-1]).sum(axis=0)
    return out


def _group_block(
    name: str,
    labels: list[str],
    counts: np.ndarray,
    n_models: np.ndarray,
    edges: np.ndarray,
    eta: np.ndarray,
    eps: float,
    matrix_attrs: Mapping[str, Any],
) -> dict[str, xr.Variable]:
    probs = histogram_probabilities(counts, edges, eps)
    d, kl = shift_matrix(probs, eta)
    dim, dim_b = name, f"{name}_b"
    return {
        f"shift_{name}": xr.Variable(
            (dim, dim_b),
            d,
            {
                "long_name": f"D(P, Q) = sum_i eta_i KLsym between {name} groups",
                "units": "nat",
                **matrix_attrs,
            },
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


def _population_groups(
    labels: list[str], model_group: np.ndarray, fit: np.ndarray
) -> tuple[list[str], np.ndarray]:
    """Keep only the fit population's models and the labels that one of them has."""
    group = np.where(fit[: model_group.size], model_group, -1)
    present = sorted(set(group[group >= 0].tolist()))
    remap = np.full(len(labels) + 1, -1, np.int64)
    remap[present] = np.arange(len(present))
    return [labels[i] for i in present], np.where(group >= 0, remap[group], -1)


def _assemble_shifts(
    sp: _ShiftsPasses,
    rng: CoefficientRange,
    edges: np.ndarray,
    counts: np.ndarray,
    outside: np.ndarray,
) -> xr.Dataset:
    p, pca, ds = sp.p, sp.pca, sp.ds
    k = p.n_components
    eta = pca.explained_variance_ratio_
    data: dict[str, xr.Variable] = {
        "pca_mean": xr.Variable("tap", pca.mean_, {"long_name": "mean of peak-scaled filters"}),
        "pca_components": xr.Variable(
            ("component", "tap"),
            pca.components_,
            {"long_name": "principal axes (rows)", "sign_rule": p.sign_rule},
        ),
        "explained_variance": xr.Variable("component", pca.explained_variance_),
        "explained_variance_ratio": xr.Variable("component", eta),
        "bin_edges": xr.Variable("bin_edge", edges),
        "coef_peak": xr.Variable(
            "component",
            rng.peak_,
            {
                "long_name": "coefficient of largest magnitude per component over the PCA "
                "population (positive for every component under the u-based sign rule)",
            },
        ),
        "n_coef_outside": xr.Variable(
            ("component", "side"),
            outside,
            {
                "long_name": "coefficients of projected-only (random-init) filters outside the "
                "global range, clipped into the end bins",
            },
        ),
    }
    coords: dict[str, Any] = {
        "component": np.arange(k),
        "tap": np.arange(9),
        "bin": np.arange(p.bins),
        "bin_center": ("bin", (edges[:-1] + edges[1:]) / 2.0),
        "side": np.asarray(["below", "above"], dtype=object),
    }
    fit = sp.model_role == _FIT
    projected = sp.model_role == _PROJECTED
    per_model = counts.sum(axis=1)  # (model, component, bin)
    model_filters = per_model[:, 0, :].sum(axis=-1)
    has = model_filters > 0
    basis_attrs = {"basis_population": p.population, "sign_rule": p.sign_rule}
    for axis in p.axes:
        population = p.population
        if axis == DEPTH_AXIS:
            labels = _depth_labels(p.depth_edges)
            c = counts[fit, : sp.n_dec].sum(axis=0)
            nm = (counts[fit, : sp.n_dec, 0, :].sum(axis=-1) > 0).sum(axis=0)
            coords["depth_lower"] = (DEPTH_AXIS, np.asarray(p.depth_edges[:-1]))
            coords["depth_upper"] = (DEPTH_AXIS, np.asarray(p.depth_edges[1:]))
        else:
            labels, model_group = axis_groups(ds, axis, p)
            if axis == TRAINED_AXIS:
                if p.population != "all":
                    population = TRAINED_AXIS_POPULATION
            elif p.population != "all":
                labels, model_group = _population_groups(labels, model_group, fit)
            onehot = (model_group[None, :] == np.arange(len(labels))[:, None]).astype(np.int64)
            onehot = np.pad(onehot, ((0, 0), (0, sp.n_models - onehot.shape[1])))
            c = np.tensordot(onehot, per_model, axes=(1, 0))
            nm = (onehot * has[None, :]).sum(axis=1)
        coords[axis] = np.asarray(labels, dtype=object)
        coords[f"{axis}_b"] = np.asarray(labels, dtype=object)
        attrs = {"population": population, **basis_attrs}
        data.update(_group_block(axis, labels, c, nm, edges, eta, p.eps, attrs))
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
    n_projected = int(model_filters[projected].sum())
    n_used = int(pca.n_samples_) + n_projected
    n_total = int(ds.sizes.get("filter", n_used + sp.n_nonfinite))
    if p.population == "all":
        population_note = "all models pooled everywhere"
    else:
        population_note = (
            f"PCA, range and axes on models whose training is not {p.random_init_label!r}; "
            f"{p.random_init_label} filters projected in the same basis for the trained axis "
            "only, clipped into the end bins outside the range"
        )
    if p.sign_rule == "v-based":
        sign_note = "largest-magnitude entry of each component positive (v-based)"
    else:
        sign_note = "largest-magnitude coefficient of each component positive (u-based)"
    out = xr.Dataset(data, coords=coords)
    out.attrs.update(
        title="filterdb distribution-shift statistics",
        filterdb_stats_version=STATS_VERSION,
        axes=" ".join(p.axes),
        population=p.population,
        sign_rule=p.sign_rule,
        filters=p.filters,
        n_filters_used=n_used,
        n_filters_pca=int(pca.n_samples_),
        n_filters_projected=n_projected,
        n_filters_excluded=n_total - n_used - int(sp.n_nonfinite),
        n_filters_nonfinite=int(sp.n_nonfinite),
        n_models_pca=int((fit & has).sum()),
        n_models_projected=int((projected & has).sum()),
        coef_min=rng.min_,
        coef_max=rng.max_,
        passes=3,
        comment=(
            f"METHODS.md section 3 (docs/methods.md): peak-scaled filters, one global PCA "
            f"({sign_note}), histograms over the global coefficient range, eps-floored and "
            f"renormalised, symmetric KL (nat), D = sum eta_i KLsym. Population: "
            f"{population_note}. Empty groups have NaN histograms and D."
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
    workers: int | None = None,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Degeneracy and shift statistics with the degeneracy sharing the first pass.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the filterdb layout, typically opened lazily.
    degeneracy_params, shifts_params : params or dict, optional
        ``params.yaml: degeneracy`` and ``shifts``.
    workers : int, optional
        Compute threads (default :func:`filterdb.dataset.reading.default_workers`: the usable
        cores, or ``$FILTERDB_THREADS``). The calling thread reads the chunks in file order; chunks
        and layers are computed on the threads and their partial results folded in file order,
        so the results are bit-identical for any number of threads.

    Returns
    -------
    degeneracy, shifts : xarray.Dataset
        As :func:`filterdb.stats.degeneracy.compute_degeneracy` and :func:`compute_shifts`.
    """
    dp = DegeneracyParams.coerce(degeneracy_params)
    sp = ShiftsParams.coerce(shifts_params)
    chunk = chunk_size_of(ds, sp.chunk_size if sp.chunk_size is not None else dp.chunk_size)
    n_workers = default_workers() if workers is None else max(int(workers), 1)
    deg = _DegeneracyPass(ds, dp)
    passes = _ShiftsPasses(ds, sp)
    with blas_limit(sp.blas_threads):
        jobs = _pass1_jobs(iter_chunks(ds, chunk), deg, passes)
        for kind, a, b in ordered_map(_run_job, jobs, n_workers):  # pass 1, shared
            if kind == "pca":
                passes.merge_pca(a, b)  # file order: the sequential summation order
            else:
                deg.set_row(a, b)
        return deg.result(), passes.run_after_pass1(chunk, n_workers)


def _run_job(kind: str, fn: Callable[..., Any], *args: Any) -> tuple[str, Any, Any]:
    """Run one job of :func:`_pass1_jobs`: ``("pca", sums, n_bad)`` or ``("layer", li, row)``."""
    out = fn(*args)
    return (kind, *out) if kind == "pca" else (kind, args[0], out)


def _pass1_jobs(
    chunks: Iterator[tuple[int, np.ndarray]], deg: _DegeneracyPass, passes: _ShiftsPasses
) -> Iterator[tuple[Any, ...]]:
    """The jobs of the shared first pass, in file order: each chunk's PCA sums, and each
    layer's degeneracy statistics as soon as its last chunk is read."""
    read: list[tuple[int, np.ndarray]] = []
    for li, w in iter_layers(tap(chunks, lambda s, a: read.append((s, a))), deg.first, deg.count):
        for start, arr in read:
            yield ("pca", passes.pca_partial, start, arr)
        read.clear()
        yield ("layer", deg.layer_row, li, w)
    for start, arr in read:  # chunks after the last layer
        yield ("pca", passes.pca_partial, start, arr)


def compute_shifts(
    ds: xr.Dataset,
    params: ShiftsParams | Mapping[str, Any] | None = None,
    workers: int | None = None,
) -> xr.Dataset:
    """Distribution-shift statistics of every axis.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the filterdb layout (``docs/data-layout.md``).
    params : ShiftsParams or dict, optional
        ``params.yaml: shifts``.
    workers : int, optional
        Compute threads, as in :func:`compute_stats` (the result does not depend on it).

    Returns
    -------
    xarray.Dataset
        ``pca_mean(tap)``, ``pca_components(component, tap)``, ``explained_variance(_ratio)``,
        ``bin_edges(bin_edge)``; per axis ``A`` (coordinates ``A`` and ``A_b`` hold the group
        labels): ``shift_A(A, A_b)``, ``klsym_A(A, A_b, component)``,
        ``prob_A(A, component, bin)``, ``count_A(A, component, bin)``, ``n_filters_A(A)``,
        ``n_models_A(A)``; ``coef_peak(component)`` (largest-magnitude coefficient over the PCA
        population), ``n_coef_outside(component, side)`` (clipped coefficients of random-init
        filters); optionally ``count_model_depth(model, depth_slot, component, bin)``. Each
        ``shift_A`` has the attributes ``population`` (``trained``, ``all``, or
        ``trained+random-init`` for the ``trained`` axis of a trained population),
        ``basis_population`` and ``sign_rule``; global attributes ``population``,
        ``sign_rule``, ``n_filters_pca`` / ``_projected`` / ``_excluded`` / ``_nonfinite`` /
        ``_used``, ``n_models_pca`` / ``_projected``, ``coef_min``, ``coef_max``.
    """
    sp = ShiftsParams.coerce(params)
    passes = _ShiftsPasses(ds, sp)
    chunk = chunk_size_of(ds, sp.chunk_size)
    n_workers = default_workers() if workers is None else max(int(workers), 1)
    with blas_limit(sp.blas_threads):
        for part, bad in ordered_map(passes.pca_partial, iter_chunks(ds, chunk), n_workers):
            passes.merge_pca(part, bad)  # in file order
        return passes.run_after_pass1(chunk, n_workers)


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
    :func:`filterdb._atomic.atomic_paths`: renamed into place only when all are complete, under a
    journal that the next run completes if this one is killed between the renames. So the
    outputs are always the previous set or the new one, never a degeneracy file of one input
    beside shift files of another.

    Returns
    -------
    dict
        The degeneracy summary (also written to ``degeneracy_json`` when given).

    Raises
    ------
    filterdb._atomic.DiskFullError
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
