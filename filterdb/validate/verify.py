"""Independent spot checks of the stored statistics against the dataset (release validation).

The release issue asks that "the statistics recompute to the stored values on a sample of layers
and groups". The functions here re-derive a deterministic sample of stored numbers straight from
``data/filters.nc`` with plain numpy/scipy, written again from METHODS.md sections 2-3 in a
compact reference form. They deliberately do **not** call the statistics code of
:mod:`filterdb.stats` (:mod:`~filterdb.stats.degeneracy`, :mod:`~filterdb.stats.shifts` and the
modules they use), nor torch or any extraction code, so a bug there is not reproduced here.

Both checks return a list of human-readable problems (empty when everything agrees) and are
cheap: they read only the sampled layers or groups of ``weight``.

- :func:`recheck_degeneracy`: per-layer ``S``, ``H`` (via :func:`numpy.linalg.svd`), ``TH(n)``,
  ``H / TH``, ``O`` and the three-valued flags of a sample of layers (always the largest and the
  smallest layer), plus the alignment of ``stats/degeneracy.nc`` with ``data/filters.nc``.
- :func:`recheck_shifts`: for a sample of (axis, group) pairs (small groups preferred, empty
  groups skipped) the histogram counts and floored probabilities recomputed with
  :func:`numpy.histogram` from the stored PCA mean/basis and global range; every ``D`` and
  ``KLsym`` entry of the sampled groups' rows recomputed from the stored histograms and ``eta``
  with :func:`scipy.stats.entropy`; ``eta`` summing to 1 and an orthonormal basis. The
  stored ``population`` decides the groups' models: with ``trained`` only models whose
  ``training`` is known and not random-init, except on the ``trained`` axis, whose random-init
  group is clipped into the range and its clipped coefficients checked against
  ``n_coef_outside`` (files without the attribute pooled all models).

Examples
--------
>>> problems = recheck_degeneracy("data/filters.nc", "stats/degeneracy.nc")  # doctest: +SKIP
>>> problems += recheck_shifts("data/filters.nc", "stats/shifts.nc")  # doctest: +SKIP
>>> print("\\n".join(problems) or "statistics recompute to the stored values")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy.stats import entropy as scipy_entropy

from filterdb.dataset.flags import flag_lookup

__all__ = ["recheck_degeneracy", "recheck_shifts", "sample_groups", "sample_layers"]

PathLike = str | os.PathLike[str]

#: METHODS.md section 2 constants, used when the stored file does not state its parameters.
DEGENERACY_DEFAULTS: dict[str, float] = {
    "sparsity_divisor": 100.0,
    "th_a": 1.2618047,
    "th_b": 0.88767525,
    "th_c": 2.30436435,
    "th_d": -0.31050834,
    "random_margin": 0.02,
    "collapsed_entropy_below": 0.5,
    "collapsed_sparsity_at_least": 0.14,
}
#: Output channels per block of the Gram matrix in the reference ``O`` (bounds memory only).
GRAM_BLOCK = 1024
#: A coefficient closer than this (relative to the range width) to a bin edge may fall on
#: either side under a different summation order; such values are allowed to move one bin.
EDGE_TOLERANCE = 1e-9


# --------------------------------------------------------------------------------------------
# small helpers


def _fmt(x: Any) -> str:
    if isinstance(x, float | np.floating):
        return repr(float(x))
    if isinstance(x, np.integer):
        return str(int(x))
    return str(x)


def _differs(stored: float, recomputed: float, rtol: float, atol: float) -> bool:
    """True unless both are NaN or they agree within ``rtol``/``atol`` (inf equal to inf)."""
    s, r = float(stored), float(recomputed)
    if math.isnan(s) or math.isnan(r):
        return not (math.isnan(s) and math.isnan(r))
    return not bool(np.isclose(s, r, rtol=rtol, atol=atol))


def _param(attrs: dict[str, Any], name: str, default: Any) -> Any:
    value = attrs.get(f"param_{name}", default)
    if isinstance(value, str) and value == "none":
        return default
    return value


def _labels(values: Iterable[Any]) -> list[str]:
    return [str(v) for v in np.asarray(list(values)).tolist()]


# --------------------------------------------------------------------------------------------
# degeneracy: reference formulas (METHODS.md section 2)


def _ref_threshold(n: int, p: dict[str, float]) -> float:
    if n <= 0:
        return math.nan
    return p["th_a"] / (1.0 + math.exp(-p["th_b"] * (math.log2(n) - p["th_c"]))) + p["th_d"]


def _ref_layer(w: np.ndarray, c_out: int, p: dict[str, float]) -> dict[str, float]:
    """``S``, ``H``, ``TH``, ``H/TH``, ``O`` and flags of one layer, straight from the formulas."""
    x = np.asarray(w, dtype=np.float64).reshape(-1, 9)
    n = x.shape[0]
    th = _ref_threshold(n, p)
    s = h = o = math.nan
    if n and np.isfinite(x).all():
        a = np.abs(x)
        t = a.max() / p["sparsity_divisor"]
        if t > 0:
            s = float(np.all(a < t, axis=1).mean())
        if n >= 2 and np.ptp(x, axis=0).max() > 0:
            sv = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
            lam = sv**2 / (n - 1)
            pr = lam / lam.sum()
            pr = pr[pr > 0]
            h = float(-(pr * np.log10(pr)).sum())
        if c_out >= 2:
            rows = x.reshape(c_out, -1)
            norm = np.linalg.norm(rows, axis=1, keepdims=True)
            wh = rows / np.where(norm > 0, norm, 1.0)
            total = 0.0
            for i in range(0, c_out, GRAM_BLOCK):
                g = wh[i : i + GRAM_BLOCK] @ wh.T
                g[np.arange(g.shape[0]), i + np.arange(g.shape[0])] -= 1.0
                total += float(np.abs(g).sum())
            o = 1.0 - total / (c_out * (c_out - 1))

    def tri(cond: bool, *known: float) -> int:  # three-valued flag: 1 yes, 0 no, -1 unknown
        return (1 if cond else 0) if all(math.isfinite(k) for k in known) else -1

    random_like = tri(h >= th - p["random_margin"], h)
    low_h = tri(h < p["collapsed_entropy_below"], h)
    sparse = tri(s >= p["collapsed_sparsity_at_least"], s)
    collapsed = 0 if 0 in (low_h, sparse) else (1 if low_h == sparse == 1 else -1)
    degenerated = (
        1 if 1 in (random_like, collapsed) else (-1 if -1 in (random_like, collapsed) else 0)
    )
    return {
        "sparsity": s,
        "entropy": h,
        "threshold": th,
        "entropy_norm": h / th if math.isfinite(h) and th else math.nan,
        "orthogonality": o,
        "random_like": random_like,
        "sparse_collapsed": collapsed,
        "degenerated": degenerated,
    }


_FLOAT_VARS = ("sparsity", "entropy", "threshold", "entropy_norm", "orthogonality")
_FLAG_VARS = ("random_like", "sparse_collapsed", "degenerated")


def sample_layers(counts: np.ndarray, n_layers: int = 16, seed: int = 0) -> np.ndarray:
    """Deterministic sample of layer indices: the largest, the smallest, then random ones.

    Parameters
    ----------
    counts : numpy.ndarray
        Filters per layer (``layer_filter_count``).
    n_layers : int
        Sample size (all layers when it is at least their number).
    seed : int
        Seed of :func:`numpy.random.default_rng` for the random part.

    Returns
    -------
    numpy.ndarray
        Sorted distinct layer indices.

    Examples
    --------
    >>> sample_layers(np.array([5, 9, 1, 7]), n_layers=2).tolist()
    [1, 2]
    >>> sample_layers(np.array([5, 9, 1, 7]), n_layers=10).tolist()
    [0, 1, 2, 3]
    """
    counts = np.asarray(counts)
    total = counts.size
    if n_layers >= total:
        return np.arange(total)
    if n_layers <= 0 or total == 0:
        return np.zeros(0, dtype=np.int64)
    chosen = [int(np.argmax(counts)), int(np.argmin(counts))][:n_layers]
    rest = np.setdiff1d(np.arange(total), chosen)
    k = n_layers - len(set(chosen))
    extra = np.random.default_rng(seed).choice(rest, size=min(k, rest.size), replace=False)
    return np.unique(np.concatenate([chosen, extra]).astype(np.int64))


def recheck_degeneracy(
    filters_nc: PathLike,
    degeneracy_nc: PathLike,
    n_layers: int = 16,
    seed: int = 0,
    rtol: float = 1e-6,
    *,
    atol: float = 1e-9,
) -> list[str]:
    """Recompute the degeneracy statistics of a sample of layers and compare with the stored ones.

    Parameters
    ----------
    filters_nc : path-like
        The dataset (``data/filters.nc``).
    degeneracy_nc : path-like
        Its stored statistics (``stats/degeneracy.nc``).
    n_layers : int
        Layers to check: the largest and the smallest plus random ones (all when at least the
        number of layers).
    seed : int
        Seed of the random part of the sample.
    rtol, atol : float
        Tolerances for floats (NaN equals NaN); flags and counts must match exactly.

    Returns
    -------
    list of str
        One line per problem, naming the file, layer index and name, model, variable, stored and
        recomputed value; alignment problems (layer count, model ids, layer names, filter
        counts) first. Empty when everything agrees.

    Notes
    -----
    The parameters stored as ``param_*`` attributes are used (METHODS.md constants otherwise).
    ``H`` uses :func:`numpy.linalg.svd` of the centred ``n x 9`` matrix, not the scatter
    eigenvalues of the production code, and ``S`` compares in float64.
    """
    name = os.fspath(degeneracy_nc)
    problems: list[str] = []
    with xr.open_dataset(filters_nc) as ds, xr.open_dataset(degeneracy_nc) as st:
        models = _labels(ds["model"].values)
        n_lay = ds.sizes.get("layer", 0)
        stored_models = _labels(st["model"].values) if "model" in st.variables else []
        if stored_models != models:
            problems.append(
                f"{name}: model ids differ from {os.fspath(filters_nc)} "
                f"({len(stored_models)} vs {len(models)} models; first stored "
                f"{stored_models[:3]}, expected {models[:3]})"
            )
        if st.sizes.get("layer", 0) != n_lay:
            problems.append(
                f"{name}: {st.sizes.get('layer', 0)} layers but {os.fspath(filters_nc)} has {n_lay}"
            )
            return problems
        first = np.asarray(ds["layer_first_filter"].values, dtype=np.int64)
        count = np.asarray(ds["layer_filter_count"].values, dtype=np.int64)
        layer_model = np.asarray(ds["layer_model"].values, dtype=np.int64)
        layer_name = _labels(ds["layer_name"].values)
        for var, expected in (
            ("layer_name", layer_name),
            ("layer_model", layer_model.tolist()),
            ("n_filters", count.tolist()),
        ):
            if var in st.variables:
                got = st[var].values.tolist() if var != "layer_name" else _labels(st[var].values)
                bad = [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
                if bad:
                    i = bad[0]
                    problems.append(
                        f"{name}: {var} differs from {os.fspath(filters_nc)} at {len(bad)} "
                        f"layers (first: layer {i}, stored {got[i]!r}, expected {expected[i]!r})"
                    )
        if problems:
            return problems
        attrs = dict(st.attrs)
        p = {k: float(_param(attrs, k, v)) for k, v in DEGENERACY_DEFAULTS.items()}
        out_ch = np.asarray(ds["out_channels"].values, dtype=np.int64)
        weight = ds["weight"].variable
        stored = {v: np.asarray(st[v].values) for v in (*_FLOAT_VARS, *_FLAG_VARS) if v in st}
        for v in (*_FLOAT_VARS, *_FLAG_VARS):
            if v not in stored:
                problems.append(f"{name}: variable {v!r} is missing")
        for li in sample_layers(count, n_layers, seed).tolist():
            where = (
                f"{name}: layer {li} {layer_name[li]!r} of model {models[layer_model[li]]!r}"
                f" (n={int(count[li])})"
            )
            if out_ch[li] < 1 or count[li] % out_ch[li]:
                problems.append(f"{where}: out_channels {int(out_ch[li])} does not divide n")
                continue
            w = np.asarray(weight[first[li] : first[li] + count[li]].values)
            ref = _ref_layer(w, int(out_ch[li]), p)
            for v, values in stored.items():
                s, r = values[li], ref[v]
                bad = s != r if v in _FLAG_VARS else _differs(s, r, rtol, atol)
                if bad:
                    problems.append(f"{where}: {v} stored {_fmt(s)}, recomputed {_fmt(r)}")
    return problems


# --------------------------------------------------------------------------------------------
# shifts (METHODS.md section 3)


@dataclass(frozen=True)
class _Group:
    axis: str
    index: int
    label: str
    n_filters: int


def sample_groups(
    shifts: xr.Dataset, n_groups: int = 3, seed: int = 0, max_filters: int = 500_000
) -> list[tuple[str, int]]:
    """Deterministic sample of non-empty ``(axis, group index)`` pairs, small groups preferred.

    The smallest non-empty group of all axes is always included; the others are drawn with
    ``numpy.random.default_rng(seed)`` among the groups of at most ``max_filters`` filters (the
    smallest groups when too few are that small).

    Parameters
    ----------
    shifts : xarray.Dataset
        Stored shift statistics (``n_filters_<axis>`` per axis listed in ``attrs["axes"]``).
    n_groups : int
        Sample size.
    seed : int
        Seed of the random draw.
    max_filters : int
        Size limit of randomly drawn groups (keeps the check cheap).

    Returns
    -------
    list of (str, int)
        Sorted by axis order, then group index.
    """
    groups = _groups(shifts)
    groups = [g for g in groups if g.n_filters > 0]
    if n_groups <= 0 or not groups:
        return []
    by_size = sorted(groups, key=lambda g: (g.n_filters, g.axis, g.index))
    chosen = [by_size[0]]
    small = [g for g in by_size[1:] if g.n_filters <= max_filters]
    if len(small) < n_groups - 1:
        small = by_size[1:n_groups]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(small), size=min(n_groups - 1, len(small)), replace=False)
    chosen += [small[int(i)] for i in np.sort(pick)]
    order = {g: i for i, g in enumerate(groups)}
    return [(g.axis, g.index) for g in sorted(chosen, key=order.__getitem__)]


def _axes(shifts: xr.Dataset) -> list[str]:
    axes = str(shifts.attrs.get("axes", "")).split()
    return axes or sorted(v[len("shift_") :] for v in shifts.data_vars if v.startswith("shift_"))


def _groups(shifts: xr.Dataset) -> list[_Group]:
    out = []
    for axis in _axes(shifts):
        labels = _labels(shifts[axis].values)
        sizes = np.asarray(shifts[f"n_filters_{axis}"].values, dtype=np.int64)
        pairs = enumerate(zip(labels, sizes, strict=True))
        out += [_Group(axis, i, lab, int(n)) for i, (lab, n) in pairs]
    return out


def _model_labels(ds: xr.Dataset, name: str) -> np.ndarray:
    """Per-model string value of a categorical model variable (``None`` where missing)."""
    var = ds[name]
    raw = np.asarray(var.values)
    if raw.dtype.kind in "OSU":
        return np.array([None if str(v) in ("", "nan", "None") else str(v) for v in raw], object)
    lookup = flag_lookup(var.attrs)
    codes = np.where(np.isfinite(raw.astype(np.float64)), raw, -1).astype(np.int64)
    return np.array([lookup.get(int(c)) for c in codes], dtype=object)


def _population(shifts: xr.Dataset) -> str:
    """``trained`` or ``all`` (files written before the parameter existed pooled all models)."""
    return str(shifts.attrs.get("population", _param(dict(shifts.attrs), "population", "all")))


def _trained_models(ds: xr.Dataset, random_label: str) -> np.ndarray:
    """Per model: ``training`` is known and not random-init."""
    training = _model_labels(ds, "training")
    return np.array([v is not None and v != random_label for v in training], dtype=bool)


def _group_layers(
    ds: xr.Dataset, shifts: xr.Dataset, g: _Group, random_label: str, population: str = "all"
) -> np.ndarray:
    """Layer indices of a group, from the layer and model tables of the dataset."""
    layer_model = np.asarray(ds["layer_model"].values, dtype=np.int64)
    n_models = int(ds.sizes.get("model", 0))
    if population == "all" or g.axis == "trained":
        members = np.ones(n_models, dtype=bool)
    else:
        members = _trained_models(ds, random_label)
    if g.axis == "depth":
        lo = float(shifts["depth_lower"].values[g.index])
        hi = float(shifts["depth_upper"].values[g.index])
        d = np.asarray(ds["conv_depth_norm"].values, dtype=np.float64)
        keep = ((d > lo) | ((g.index == 0) & (d == lo))) & (d <= hi)  # pandas.cut, lowest incl.
        return np.flatnonzero(keep & members[layer_model])
    if g.axis == "trained":
        training = _model_labels(ds, "training")
        is_random = np.array([v == random_label for v in training])
        known = np.array([v is not None for v in training], dtype=bool)
        wanted = is_random if g.label == random_label else ~is_random & known
    else:
        wanted = (_model_labels(ds, g.axis) == g.label) & members
    return np.flatnonzero(np.asarray(wanted, dtype=bool)[layer_model])


def _read_layers(ds: xr.Dataset, layers: np.ndarray) -> np.ndarray:
    first = np.asarray(ds["layer_first_filter"].values, dtype=np.int64)[layers]
    count = np.asarray(ds["layer_filter_count"].values, dtype=np.int64)[layers]
    weight = ds["weight"].variable
    parts = [
        np.asarray(weight[a : a + n].values) for a, n in zip(first, count, strict=True) if n > 0
    ]
    return np.concatenate(parts).reshape(-1, 9) if parts else np.zeros((0, 9), np.float32)


def _floored(counts: np.ndarray, edges: np.ndarray, eps: float) -> np.ndarray:
    """Density histogram (counts / n / width), empty bins set to ``eps``, renormalised."""
    dens = counts / counts.sum() / np.diff(edges)
    dens = np.where(counts == 0, eps, dens)
    return dens / dens.sum()


def recheck_shifts(
    filters_nc: PathLike,
    shifts_nc: PathLike,
    n_groups: int = 3,
    seed: int = 0,
    rtol: float = 1e-6,
    *,
    atol: float = 1e-12,
    max_filters: int = 500_000,
) -> list[str]:
    """Recompute the histograms and shifts of a sample of groups and compare with the stored ones.

    Parameters
    ----------
    filters_nc : path-like
        The dataset (``data/filters.nc``).
    shifts_nc : path-like
        Its stored shift statistics (``stats/shifts.nc``).
    n_groups : int
        ``(axis, group)`` pairs to check (see :func:`sample_groups`; empty groups are skipped).
    seed : int
        Seed of the sample.
    rtol, atol : float
        Tolerances for floats (NaN equals NaN).
    max_filters : int
        Largest group drawn at random (the check reads every filter of a sampled group).

    Returns
    -------
    list of str
        One line per problem naming the file, axis, group, variable, stored and recomputed
        values; empty when everything agrees.

    Notes
    -----
    Per sampled group: its filters (the layers of the group's models, or of its depth range)
    are peak-scaled, projected with the stored ``pca_mean`` and ``pca_components``, and
    histogrammed with :func:`numpy.histogram` over ``(coef_min, coef_max)`` with the stored
    number of bins; the counts must equal ``count_<axis>`` (a coefficient within ``1e-9`` of
    the range width of a bin edge may sit in either neighbouring bin), and ``prob_<axis>`` must
    equal the stored counts as density, empty bins floored to ``eps``, renormalised. Each
    ``shift_<axis>`` and ``klsym_<axis>`` entry of the group's row is recomputed from the stored
    ``prob_<axis>`` and ``explained_variance_ratio`` with :func:`scipy.stats.entropy`. Globally:
    ``eta`` sums to 1 (with 9 components), the basis rows are orthonormal, ``bin_edges`` equal
    ``numpy.linspace(coef_min, coef_max, bins + 1)``, ``n_filters_used + n_filters_nonfinite``
    equals the number of filters, the model ids and categorical labels match the dataset.
    """
    name = os.fspath(shifts_nc)
    problems: list[str] = []
    with xr.open_dataset(filters_nc) as ds, xr.open_dataset(shifts_nc) as st:
        problems += _check_shifts_alignment(ds, st, name, os.fspath(filters_nc))
        if problems:
            return problems
        problems += _check_shifts_global(st, name, rtol, atol)
        attrs = dict(st.attrs)
        eps = float(_param(attrs, "eps", 1.1920929e-07))
        random_label = str(_param(attrs, "random_init_label", "random-init"))
        population = _population(st)
        mu = np.asarray(st["pca_mean"].values, dtype=np.float64)
        basis = np.asarray(st["pca_components"].values, dtype=np.float64)
        eta = np.asarray(st["explained_variance_ratio"].values, dtype=np.float64)
        edges = np.asarray(st["bin_edges"].values, dtype=np.float64)
        lo, hi = float(attrs["coef_min"]), float(attrs["coef_max"])
        bins = edges.size - 1
        groups = {(g.axis, g.index): g for g in _groups(st)}
        for axis, gi in sample_groups(st, n_groups, seed, max_filters):
            g = groups[(axis, gi)]
            where = f"{name}: axis {axis!r} group {g.label!r} (#{gi}, n={g.n_filters})"
            layers = _group_layers(ds, st, g, random_label, population)
            raw = _read_layers(ds, layers)
            peak = np.abs(raw).max(axis=1).astype(np.float64) if raw.size else np.zeros(0)
            finite = np.isfinite(raw).all(axis=1)
            x = raw[finite].astype(np.float64)
            x /= np.where(peak[finite] > 0, peak[finite], 1.0)[:, None]
            coef = (x - mu) @ basis.T
            if x.shape[0] != g.n_filters:
                problems.append(
                    f"{where}: n_filters_{axis} stored {g.n_filters}, recomputed {x.shape[0]}"
                )
            span = (hi - lo) if hi > lo else 1.0
            outside = (coef < lo - EDGE_TOLERANCE * span) | (coef > hi + EDGE_TOLERANCE * span)
            projected = population != "all" and axis == "trained" and g.label == random_label
            if projected:  # outside the fit population: clipped into the end bins by design
                problems += _check_clipped(st, coef, lo, hi, span, where)
            elif outside.any():
                problems.append(
                    f"{where}: {int(outside.sum())} coefficients outside the stored range "
                    f"[{lo!r}, {hi!r}] (coef_min/coef_max are not global)"
                )
            coef = np.clip(coef, lo, hi)
            pos = (coef - edges[0]) / span * bins
            near_edge = np.abs(pos - np.round(pos)) * span / bins < EDGE_TOLERANCE * span
            stored_counts = np.asarray(st[f"count_{axis}"].values[gi], dtype=np.int64)
            stored_prob = np.asarray(st[f"prob_{axis}"].values[gi], dtype=np.float64)
            for c in range(basis.shape[0]):
                counts, _ = np.histogram(coef[:, c], bins=bins, range=(lo, hi))
                diff = np.abs(counts - stored_counts[c])
                slack = 2 * int(near_edge[:, c].sum())
                if diff.sum() > slack:
                    b = int(np.argmax(diff))
                    problems.append(
                        f"{where}: count_{axis}[component {c}, bin {b}] stored "
                        f"{int(stored_counts[c, b])}, recomputed {int(counts[b])} "
                        f"({int(diff.sum())} filters in other bins)"
                    )
                if stored_counts[c].sum() > 0:  # probabilities from the stored counts
                    prob = _floored(stored_counts[c].astype(np.float64), edges, eps)
                    bad = ~np.isclose(stored_prob[c], prob, rtol=rtol, atol=atol)
                    if bad.any():
                        b = int(np.argmax(bad))
                        problems.append(
                            f"{where}: prob_{axis}[component {c}, bin {b}] stored "
                            f"{_fmt(stored_prob[c, b])}, recomputed {_fmt(prob[b])}"
                        )
            problems += _check_shift_row(st, axis, gi, eta, where, rtol, atol)
    return problems


def _check_clipped(
    st: xr.Dataset, coef: np.ndarray, lo: float, hi: float, span: float, where: str
) -> list[str]:
    """Coefficients of projected-only filters below/above the range against ``n_coef_outside``."""
    if "n_coef_outside" not in st.variables:
        return []
    stored = np.asarray(st["n_coef_outside"].values, dtype=np.int64)
    tol = EDGE_TOLERANCE * span
    bounds = (
        ((coef < lo - tol).sum(axis=0), (coef < lo + tol).sum(axis=0)),
        ((coef > hi + tol).sum(axis=0), (coef > hi - tol).sum(axis=0)),
    )
    problems = []
    for side, (least, most) in enumerate(bounds):
        bad = (stored[:, side] < least) | (stored[:, side] > most)
        if bad.any():
            c = int(np.argmax(bad))
            problems.append(
                f"{where}: n_coef_outside[component {c}, {('below', 'above')[side]}] stored "
                f"{int(stored[c, side])}, recomputed {int(least[c])}"
            )
    return problems


def _check_shifts_alignment(ds: xr.Dataset, st: xr.Dataset, name: str, fname: str) -> list[str]:
    problems = []
    n = ds.sizes.get("filter", 0)
    used = int(st.attrs.get("n_filters_used", -1))
    nonfinite = int(st.attrs.get("n_filters_nonfinite", 0))
    excluded = int(st.attrs.get("n_filters_excluded", 0))
    if used + nonfinite + excluded != n:
        problems.append(
            f"{name}: n_filters_used + n_filters_nonfinite + n_filters_excluded = {used} + "
            f"{nonfinite} + {excluded}, but {fname} has {n} filters"
        )
    models = _labels(ds["model"].values)
    if "model" in st.variables:
        stored = _labels(st["model"].values)
        if stored != models:
            problems.append(
                f"{name}: model ids differ from {fname} ({len(stored)} vs {len(models)} models; "
                f"first stored {stored[:3]}, expected {models[:3]})"
            )
    if _population(st) == "all" or "training" not in ds.variables:
        members = np.ones(ds.sizes.get("model", 0), dtype=bool)
    else:
        label = str(_param(dict(st.attrs), "random_init_label", "random-init"))
        members = _trained_models(ds, label)
    for axis in _axes(st):
        if axis in ("depth", "trained") or axis not in ds.variables:
            continue
        stored = _labels(st[axis].values)
        values = _model_labels(ds, axis)[members]
        expected = sorted({v for v in values if v is not None})
        if stored != expected:
            problems.append(
                f"{name}: groups of axis {axis!r} are {stored}, but {fname} has {expected}"
            )
    return problems


def _check_shifts_global(st: xr.Dataset, name: str, rtol: float, atol: float) -> list[str]:
    problems = []
    eta = np.asarray(st["explained_variance_ratio"].values, dtype=np.float64)
    basis = np.asarray(st["pca_components"].values, dtype=np.float64)
    if eta.size == 9 and np.isfinite(eta).all() and _differs(eta.sum(), 1.0, rtol, 1e-9):
        problems.append(f"{name}: explained_variance_ratio sums to {eta.sum()!r}, not 1")
    if np.isfinite(eta).all() and (np.any(eta < 0) or np.any(np.diff(eta) > 1e-12)):
        problems.append(f"{name}: explained_variance_ratio is not non-negative and decreasing")
    gram = basis @ basis.T
    err = float(np.abs(gram - np.eye(basis.shape[0])).max())
    if not err <= 1e-9:
        problems.append(f"{name}: pca_components not orthonormal (max |V V^T - I| = {err!r})")
    edges = np.asarray(st["bin_edges"].values, dtype=np.float64)
    lo, hi = float(st.attrs["coef_min"]), float(st.attrs["coef_max"])
    if lo < hi:
        expect = np.linspace(lo, hi, edges.size)
        if not np.array_equal(edges, expect):
            problems.append(
                f"{name}: bin_edges are not linspace(coef_min={lo!r}, coef_max={hi!r}, "
                f"{edges.size})"
            )
    return problems


def _check_shift_row(
    st: xr.Dataset, axis: str, a: int, eta: np.ndarray, where: str, rtol: float, atol: float
) -> list[str]:
    """Recompute ``D[a, b]`` and ``KLsym[a, b, :]`` for every ``b`` from stored histograms."""
    problems = []
    prob = np.asarray(st[f"prob_{axis}"].values, dtype=np.float64)
    shift = np.asarray(st[f"shift_{axis}"].values, dtype=np.float64)
    klsym = np.asarray(st[f"klsym_{axis}"].values, dtype=np.float64)
    labels = _labels(st[axis].values)
    sizes = np.asarray(st[f"n_filters_{axis}"].values)
    for b in range(prob.shape[0]):
        if sizes[b] == 0:
            kl = np.full(prob.shape[1], np.nan)
        else:
            kl = np.array(
                [
                    scipy_entropy(prob[a, c], prob[b, c]) + scipy_entropy(prob[b, c], prob[a, c])
                    for c in range(prob.shape[1])
                ]
            )
        d = float(np.sum(eta * kl))
        pair = f"{where} vs {labels[b]!r}"
        for c in range(prob.shape[1]):
            if _differs(klsym[a, b, c], kl[c], rtol, atol):
                problems.append(
                    f"{pair}: klsym_{axis}[component {c}] stored {_fmt(klsym[a, b, c])}, "
                    f"recomputed {_fmt(kl[c])}"
                )
                break
        for s in (shift[a, b], shift[b, a]):
            if _differs(s, d, rtol, atol):
                problems.append(f"{pair}: shift_{axis} stored {_fmt(s)}, recomputed {_fmt(d)}")
                break
    return problems
