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
   degeneracy statistics share this pass in :func:`filterdb.stats.compute.compute_stats`.
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

This module holds the passes (:class:`ShiftsPasses`) and the assembly of their results; the
accumulators are in :mod:`filterdb.stats.accumulators`, the binning in
:mod:`filterdb.stats.binning`, the groups of each axis in :mod:`filterdb.stats.groups` and the
symmetric KL and ``D`` in :mod:`filterdb.stats.divergence`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from filterdb.dataset.reading import (
    FoldScales,
    chunk_size_of,
    default_workers,
    iter_chunks,
    layer_table,
    ordered_map,
)
from filterdb.errors import InputError
from filterdb.stats.accumulators import CoefficientRange, StreamingPCA, row_peak
from filterdb.stats.binning import GroupHistogram, count_outside, histogram_edges, slot_counts
from filterdb.stats.divergence import histogram_probabilities, shift_matrix
from filterdb.stats.groups import axis_groups, depth_deciles, depth_labels, population_groups
from filterdb.stats.params import DEPTH_AXIS, TRAINED_AXIS, ShiftsParams, blas_limit

__all__ = [
    "ShiftsPasses",
    "apply_sign_rule",
    "assemble_shifts",
    "compute_shifts",
    "model_roles",
    "scale_filters",
]


STATS_VERSION = 1
#: Population attribute of the ``trained`` axis under ``population: trained``.
TRAINED_AXIS_POPULATION = "trained+random-init"

# role of a model (and its filters) in the statistics
_FIT = 0  # in the PCA, the range and every axis
_PROJECTED = 1  # projected in the basis, binned with the same edges, on the trained axis only
_OUT = -1  # in nothing


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


def apply_sign_rule(pca: StreamingPCA, rng: CoefficientRange, rule: str) -> CoefficientRange:
    """Flip ``pca`` to ``rule`` (it is v-based after ``finalize``); returns the range after the
    flip (finalized). ``rng`` holds the coefficients of the v-based basis."""
    if rule == "v-based":
        return rng
    signs = rng.u_based_signs()
    pca.flip(signs)
    return rng.flipped(signs)


class ShiftsPasses:
    """The three passes of the shift statistics over one dataset (see the module docstring).

    Holds the per-filter roles and group slots, the PCA sums (pass 1) and the per-chunk kernels
    of every pass; :func:`compute_shifts`, :func:`filterdb.stats.compute.compute_stats` and the
    dask tasks of :mod:`filterdb.stats.distributed` all run these kernels.
    """

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
        return self.pca.transform_owned(x), start + np.flatnonzero(keep)

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
        return self.pca.transform_owned(x), keep, projected

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
        rng = apply_sign_rule(self.pca, rng.finalize(self.p.n_components), self.p.sign_rule)
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
        return assemble_shifts(self, rng, edges, counts, outside)


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


def assemble_shifts(
    sp: ShiftsPasses,
    rng: CoefficientRange,
    edges: np.ndarray,
    counts: np.ndarray,
    outside: np.ndarray,
) -> xr.Dataset:
    """The shift dataset (as :func:`compute_shifts` returns it) from the finished passes: the
    PCA of ``sp``, the coefficient range ``rng`` after the sign rule, the bin ``edges``, the
    counts per (model, depth slot, component, bin) and the clipped coefficients ``outside``."""
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
            labels = depth_labels(p.depth_edges)
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
                labels, model_group = population_groups(labels, model_group, fit)
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
        coords["depth_slot"] = np.asarray([*depth_labels(p.depth_edges), "none"], dtype=object)
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
        Compute threads, as in :func:`filterdb.stats.compute.compute_stats` (the result does not
        depend on it).

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
    passes = ShiftsPasses(ds, sp)
    chunk = chunk_size_of(ds, sp.chunk_size)
    n_workers = default_workers() if workers is None else max(int(workers), 1)
    with blas_limit(sp.blas_threads):
        for part, bad in ordered_map(passes.pca_partial, iter_chunks(ds, chunk), n_workers):
            passes.merge_pca(part, bad)  # in file order
        return passes.run_after_pass1(chunk, n_workers)
