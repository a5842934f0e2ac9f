"""Per-layer degeneracy statistics (METHODS.md section 2) and their per-model aggregates.

For every layer with ``n`` 3x3 filters: sparsity ``S``, variance entropy ``H``, the randomness
threshold ``TH(n)``, ``H / TH(n)``, orthogonality ``O`` of the output channels, and the
"degenerated" flag with its two reasons (random-like, sparse-collapsed). Layers are read one at a
time, sequentially (see :mod:`filterdb.dataset.reading`); all sums are accumulated in float64.

Undefined values are NaN with a reason code, never a crash or a made-up number:

=====================  ===================================================================
situation              answer
=====================  ===================================================================
``n < 2`` filters      ``H`` NaN (``h_undefined = 1``: fewer than two filters)
all filters identical  ``H`` NaN (``h_undefined = 2``: zero variance), includes all-zero
non-finite weights     ``H``, ``S``, ``O`` NaN (reason code 3 / 2 / 2: non-finite)
all-zero layer         ``S`` NaN (``s_undefined = 1``: the threshold ``max|W|/100`` is 0)
``c_out = 1``          ``O`` NaN (``o_undefined = 1``: needs two output channels)
zero output channel    stays zero in ``W_hat`` (as the formula says), ``O`` defined
=====================  ===================================================================

The flags are three-valued int8: 1 yes, 0 no, -1 undefined (Kleene logic: ``random_like`` is
undefined when ``H`` is; ``sparse_collapsed = (H < 0.5) and (S >= 0.14)`` is 0 as soon as one
known part is false; ``degenerated = random_like or sparse_collapsed``).

``filters: folded`` computes every statistic on the BatchNorm-folded filters
``weight * fold_scale`` (the study's view: its ONNX export folded BN into the conv), folded layer
by layer as it is read; ``raw`` (the default) on the conv's own weights. Folding rescales output
channels, so it changes ``S`` and ``H``; ``O`` normalises each output channel and takes
``|G - I|``, so a nonzero scale (of either sign) leaves it unchanged up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import xarray as xr

from filterdb.dataset.contract import CATEGORICAL
from filterdb.dataset.reading import (
    FoldScales,
    chunk_size_of,
    default_workers,
    iter_chunks,
    iter_layers,
    layer_table,
    ordered_map,
)
from filterdb.errors import InputError
from filterdb.stats import libm
from filterdb.stats.accumulators import LayerAccumulator
from filterdb.stats.params import DegeneracyParams, blas_limit

__all__ = [
    "DegeneracyPass",
    "compute_degeneracy",
    "layer_stats",
    "model_aggregates",
    "randomness_threshold",
    "weighted_mean",
]


STATS_VERSION = 1

#: Model-level categorical variables copied into ``stats/degeneracy.nc`` when present.
MODEL_META = CATEGORICAL

#: Model-level numbers copied too, so that reports (e.g. the training sweep) need only this file.
MODEL_NUMERIC = ("n_filters_3x3", "n_parameters", "n_train_samples", "accuracy")

H_REASONS = "defined fewer-than-two-filters zero-variance non-finite-weights"
S_REASONS = "defined all-zero-layer non-finite-weights"
O_REASONS = "defined single-output-channel non-finite-weights"


def randomness_threshold(
    n: float | np.ndarray, params: DegeneracyParams | Mapping[str, Any] | None = None
) -> float | np.ndarray:
    """Return ``TH(n)``, the variance entropy above which a layer of ``n`` filters looks random.

    Parameters
    ----------
    n : float or array_like
        Number of filters in the layer (``n <= 0`` gives NaN).
    params : DegeneracyParams or dict, optional
        Coefficients ``th_a .. th_d``.

    Returns
    -------
    float or numpy.ndarray
        ``a / (1 + exp(-b (log2 n - c))) + d``.

    Examples
    --------
    >>> round(float(randomness_threshold(9)), 3), round(float(randomness_threshold(576)), 3)
    (0.552, 0.948)
    """
    p = DegeneracyParams.coerce(params)
    n_arr = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log2n = np.where(n_arr > 0, libm.log2(np.where(n_arr > 0, n_arr, 1.0)), np.nan)
        th = p.th_a / (1.0 + libm.exp(-p.th_b * (log2n - p.th_c))) + p.th_d
    return float(th) if th.ndim == 0 else th


def _entropy_log10(eigvals: np.ndarray) -> float:
    lam = np.clip(eigvals, 0.0, None)
    total = lam.sum()
    if not total > 0:
        return math.nan
    p = lam / total
    p = p[p > 0]
    return float(-(p * libm.log10(p)).sum())


def _abs_sum(g: np.ndarray) -> float:
    """``float(np.abs(g).sum())``, with ``g`` overwritten by its magnitudes (no temporary)."""
    return float(np.abs(g, out=g).sum())


def _orthogonality(w: np.ndarray, c_out: int, block: int, scratch: bool = False) -> float:
    """O of a layer; ``scratch=True`` allows normalising ``w`` (float64, contiguous) in place
    instead of in a copy."""
    if scratch and w.dtype == np.float64 and w.flags.c_contiguous:
        rows = w.reshape(c_out, -1)
    else:
        rows = np.array(w, dtype=np.float64).reshape(c_out, -1)  # always a copy
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    wh = rows
    wh /= np.where(norms > 0, norms, 1.0)[:, None]  # in place; zero rows stay zero
    total = 0.0
    if c_out <= block:
        g = np.dot(wh, wh.T)
        g[np.diag_indices_from(g)] -= 1.0
        total = _abs_sum(g)
    else:
        for i0 in range(0, c_out, block):
            bi = wh[i0 : i0 + block]
            for j0 in range(i0, c_out, block):
                g = np.dot(bi, wh[j0 : j0 + block].T)
                if j0 == i0:
                    g[np.diag_indices_from(g)] -= 1.0
                    total += _abs_sum(g)
                else:
                    total += 2.0 * _abs_sum(g)
    return 1.0 - total / (c_out * (c_out - 1))


def _kleene_and(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    if a == 1 and b == 1:
        return 1
    return -1


def _kleene_or(a: int, b: int) -> int:
    if a == 1 or b == 1:
        return 1
    if a == 0 and b == 0:
        return 0
    return -1


def _flag(cond: bool, defined: bool) -> int:
    return (1 if cond else 0) if defined else -1


def layer_stats(
    w: np.ndarray,
    out_channels: int,
    in_per_group: int,
    params: DegeneracyParams | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Degeneracy statistics of one layer.

    Parameters
    ----------
    w : numpy.ndarray
        The layer's filters, shape ``(n, 3, 3)`` with ``n = out_channels * in_per_group``, in the
        layout's order (filter ``k`` is output channel ``k // in_per_group``).
    out_channels : int
        ``c_out`` of the conv.
    in_per_group : int
        ``c_in / groups``.
    params : DegeneracyParams or dict, optional
        Thresholds and ``TH`` coefficients (defaults: METHODS.md).

    Returns
    -------
    dict
        ``n``, ``sparsity`` (S), ``entropy`` (H), ``threshold`` (TH(n)), ``entropy_norm`` (H/TH),
        ``orthogonality`` (O), the int8 flags ``random_like``, ``sparse_collapsed``,
        ``degenerated`` (1/0/-1 undefined) and reason codes ``h_undefined``, ``s_undefined``,
        ``o_undefined`` (0 when defined; see the module docstring). Floats are NaN where
        undefined.

    Raises
    ------
    ValueError
        If ``w`` does not hold ``out_channels * in_per_group`` 3x3 filters.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> st = layer_stats(rng.normal(size=(64 * 9, 3, 3)).astype("f4"), 64, 9)
    >>> 0.9 < st["entropy"] < 0.96, st["degenerated"]
    (True, 1)
    >>> import math; math.isnan(layer_stats(np.ones((1, 3, 3), "f4"), 1, 1)["entropy"])
    True
    """
    p = DegeneracyParams.coerce(params)
    arr = np.asarray(w)
    if arr.ndim == 2 and arr.shape[1] == 9:
        arr = arr.reshape(-1, 3, 3)
    if arr.ndim != 3 or arr.shape[1:] != (3, 3):
        raise ValueError(f"expected (n, 3, 3) or (n, 9) filters, got shape {np.shape(w)}")
    n = arr.shape[0]
    if n != int(out_channels) * int(in_per_group):
        raise ValueError(
            f"layer has {n} filters but out_channels * in_per_group = "
            f"{out_channels} * {in_per_group} = {int(out_channels) * int(in_per_group)}"
        )
    acc = LayerAccumulator()
    step = 1 << 16
    # one float64 copy of the layer serves the scatter sums (read-only) and then O (normalised
    # in place); the values are those each step would convert on its own
    arr64 = arr.astype(np.float64) if n and int(out_channels) > 1 else None
    for i in range(0, n, step):
        acc.update(arr[i : i + step], None if arr64 is None else arr64[i : i + step])
    return _finish_layer(acc, arr, int(out_channels), p, arr64)


def _finish_layer(
    acc: LayerAccumulator,
    arr: np.ndarray,
    c_out: int,
    p: DegeneracyParams,
    arr64: np.ndarray | None = None,
) -> dict[str, Any]:
    n = acc.n
    th = randomness_threshold(n, p) if n > 0 else math.nan
    out: dict[str, Any] = {"n": n, "threshold": th}
    if n == 0:
        out.update(sparsity=math.nan, entropy=math.nan, orthogonality=math.nan)
        out.update(h_undefined=1, s_undefined=1, o_undefined=1)
    elif not acc.finite:
        out.update(sparsity=math.nan, entropy=math.nan, orthogonality=math.nan)
        out.update(h_undefined=3, s_undefined=2, o_undefined=2)
    else:
        peaks = np.concatenate(acc.peaks)
        if acc.max_abs > 0:
            t = acc.max_abs / p.sparsity_divisor
            out["sparsity"] = float(np.count_nonzero(peaks.astype(np.float64) < t)) / n
            out["s_undefined"] = 0
        else:
            out["sparsity"], out["s_undefined"] = math.nan, 1
        if n < 2:
            out["entropy"], out["h_undefined"] = math.nan, 1
        elif np.all(acc.tap_min == acc.tap_max):
            out["entropy"], out["h_undefined"] = math.nan, 2
        else:
            sc = acc.scatter.finalize()
            out["entropy"] = _entropy_log10(np.linalg.eigvalsh(sc.scatter_ / (n - 1)))
            out["h_undefined"] = 0 if math.isfinite(out["entropy"]) else 2
        if c_out < 2:
            out["orthogonality"], out["o_undefined"] = math.nan, 1
        else:
            block = max(int(p.gram_block), 1)
            if arr64 is not None:  # its last use: O may normalise it in place
                out["orthogonality"] = _orthogonality(arr64, c_out, block, scratch=True)
            else:
                out["orthogonality"] = _orthogonality(arr, c_out, block)
            out["o_undefined"] = 0
    h, s = out["entropy"], out["sparsity"]
    out["entropy_norm"] = h / th if math.isfinite(h) and th != 0 else math.nan
    h_def, s_def = math.isfinite(h), math.isfinite(s)
    random_like = _flag(h_def and h >= th - p.random_margin, h_def)
    low_h = _flag(h_def and h < p.collapsed_entropy_below, h_def)
    sparse = _flag(s_def and s >= p.collapsed_sparsity_at_least, s_def)
    sparse_collapsed = _kleene_and(low_h, sparse)
    out["random_like"] = random_like
    out["sparse_collapsed"] = sparse_collapsed
    out["degenerated"] = _kleene_or(random_like, sparse_collapsed)
    return out


_LAYER_FLOATS = ("sparsity", "entropy", "threshold", "entropy_norm", "orthogonality")
_LAYER_INT8 = (
    "random_like",
    "sparse_collapsed",
    "degenerated",
    "h_undefined",
    "s_undefined",
    "o_undefined",
)
_ATTRS = {
    "sparsity": {"long_name": "share of sparse filters S (all |w| < max|W| / divisor)"},
    "entropy": {"long_name": "variance entropy H (log10)", "valid_range": [0.0, math.log10(9)]},
    "threshold": {"long_name": "randomness threshold TH(n)"},
    "entropy_norm": {"long_name": "H / TH(n)"},
    "orthogonality": {"long_name": "orthogonality O of the output channels"},
    "n_filters": {"long_name": "number of 3x3 filters n"},
}
_FLAG_ATTRS = {"flag_values": np.array([-1, 0, 1], np.int8), "flag_meanings": "undefined no yes"}


def _reason_attrs(meanings: str) -> dict[str, Any]:
    k = len(meanings.split())
    return {"flag_values": np.arange(k, dtype=np.int8), "flag_meanings": meanings}


def _layer_meta(ds: xr.Dataset, name: str, default: Any, n_layers: int) -> np.ndarray:
    if name in ds.variables:
        return np.asarray(ds[name].values)
    return np.full(n_layers, default)


def compute_degeneracy(
    ds: xr.Dataset,
    params: DegeneracyParams | Mapping[str, Any] | None = None,
    workers: int | None = None,
) -> xr.Dataset:
    """Degeneracy statistics of every layer and their per-model aggregates.

    Reads ``weight`` once, sequentially, in chunk-aligned slices regrouped into whole layers.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the filterdb layout (``docs/data-layout.md``), typically opened lazily.
    params : DegeneracyParams or dict, optional
        Constants (``params.yaml: degeneracy``).
    workers : int, optional
        Compute threads (default :func:`filterdb.dataset.reading.default_workers`); layers are read
        in file order by the calling thread and computed on the threads. The result does not
        depend on it.

    Returns
    -------
    xarray.Dataset
        Dims ``layer`` and ``model`` aligned index for index with the input. Per layer:
        ``n_filters``, ``sparsity``, ``entropy``, ``threshold``, ``entropy_norm``,
        ``orthogonality``, flags ``random_like``, ``sparse_collapsed``, ``degenerated``
        (int8 1/0/-1) and reason codes; copies of ``layer_model``, ``layer_name``,
        ``conv_depth``, ``conv_depth_norm``. Per model: counts and shares of degenerated layers
        and filter-weighted means (see :func:`model_aggregates`), plus copies of the model's
        categorical meta-parameters.
    """
    p = DegeneracyParams.coerce(params)
    with blas_limit(p.blas_threads):
        return DegeneracyPass(ds, p).run_standalone(workers)


class DegeneracyPass:
    """Per-layer statistics fed from a shared sequential read (see
    :func:`filterdb.stats.compute.compute_stats`)."""

    def __init__(self, ds: xr.Dataset, params: DegeneracyParams) -> None:
        self.ds = ds
        self.params = params
        self.first, self.count = layer_table(ds)
        n_layers = len(self.first)
        self.out_channels = _layer_meta(ds, "out_channels", -1, n_layers).astype(np.int64)
        in_ch = _layer_meta(ds, "in_channels", -1, n_layers).astype(np.int64)
        groups = _layer_meta(ds, "groups", 1, n_layers).astype(np.int64)
        with np.errstate(divide="ignore"):
            self.in_per_group = np.where(groups > 0, in_ch // np.maximum(groups, 1), -1)
        self.rows: list[dict[str, Any]] = [{} for _ in range(n_layers)]
        self.fold = FoldScales(ds) if params.filters == "folded" else None

    def layer(self, li: int, w: np.ndarray) -> None:
        """Statistics of layer ``li`` from its raw weights ``w`` (folded here when asked)."""
        self.rows[li] = self.layer_row(li, w)

    def layer_row(self, li: int, w: np.ndarray) -> dict[str, Any]:
        """The statistics of layer ``li`` (a pure function of ``w``: safe on any thread)."""
        if self.fold is not None:
            w = self.fold.apply(int(self.first[li]), w)
        c_out = int(self.out_channels[li])
        g = int(self.in_per_group[li])
        n = w.shape[0]
        if c_out <= 0 or g <= 0 or c_out * g != n:
            raise InputError(
                f"layer {li}: {n} filters but out_channels={c_out}, in_channels/groups={g}"
            )
        return layer_stats(w, c_out, g, self.params)

    def set_row(self, li: int, row: dict[str, Any]) -> int:
        """Store the statistics of layer ``li``; returns ``li``."""
        self.rows[li] = row
        return li

    def _job(self, li: int, w: np.ndarray) -> tuple[int, dict[str, Any]]:
        return li, self.layer_row(li, w)

    def run_standalone(self, workers: int | None = None) -> xr.Dataset:
        chunk = chunk_size_of(self.ds, self.params.chunk_size)
        layers = iter_layers(iter_chunks(self.ds, chunk), self.first, self.count)
        n_workers = default_workers() if workers is None else int(workers)
        for li, row in ordered_map(self._job, layers, n_workers):
            self.set_row(li, row)
        return self.result()

    def result(self) -> xr.Dataset:
        return _assemble(self.ds, self.rows, self.count, self.params)


def _assemble(
    ds: xr.Dataset, rows: list[dict[str, Any]], count: np.ndarray, p: DegeneracyParams
) -> xr.Dataset:
    n_layers = len(rows)
    data: dict[str, Any] = {}
    for name in _LAYER_FLOATS:
        vals = np.array([r.get(name, math.nan) for r in rows], dtype=np.float64)
        data[name] = xr.Variable("layer", vals, _ATTRS.get(name, {}))
    for name in _LAYER_INT8:
        vals = np.array([r.get(name, -1) for r in rows], dtype=np.int8)
        if name.endswith("_undefined"):
            meanings = {"h": H_REASONS, "s": S_REASONS, "o": O_REASONS}[name[0]]
            attrs = _reason_attrs(meanings)
        else:
            attrs = dict(_FLAG_ATTRS)
        data[name] = xr.Variable("layer", vals, attrs)
    data["n_filters"] = xr.Variable("layer", count.astype(np.int64), _ATTRS["n_filters"])
    out = xr.Dataset(data)
    coords: dict[str, Any] = {}
    for name in ("layer_model", "layer_name", "conv_depth", "conv_depth_norm", "bn_follows"):
        if name in ds.variables:
            coords[name] = xr.Variable("layer", np.asarray(ds[name].values), ds[name].attrs)
    if "model" in ds.variables:
        coords["model"] = xr.Variable("model", np.asarray(ds["model"].values), ds["model"].attrs)
    out = out.assign_coords(coords)
    n_models = ds.sizes.get("model", 0)
    layer_model = (
        np.asarray(ds["layer_model"].values, dtype=np.int64)
        if "layer_model" in ds.variables
        else np.zeros(n_layers, np.int64)
    )
    for name, var in model_aggregates(out, layer_model, n_models).items():
        out[name] = var
    for name in (*MODEL_META, *MODEL_NUMERIC):
        if name in ds.variables and ds[name].dims == ("model",):
            out[name] = xr.Variable("model", np.asarray(ds[name].values), dict(ds[name].attrs))
    out.attrs.update(
        title="filterdb degeneracy statistics",
        filterdb_stats_version=STATS_VERSION,
        filters=p.filters,
        comment=(
            "Per-layer S, H, TH(n), H/TH, O and degenerated flags (METHODS.md section 2) on "
            + (
                "BatchNorm-folded filters (weight * fold_scale); "
                if p.filters == "folded"
                else "the conv's own weights (no BatchNorm folding); "
            )
            + "flags are int8 1 yes, 0 no, -1 undefined; NaN floats carry a reason code."
        ),
        **{f"param_{k}": ("none" if v is None else v) for k, v in asdict(p).items()},
    )
    return out


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """Mean of the finite ``values`` weighted by positive ``weights`` (NaN when there are none)."""
    ok = np.isfinite(values) & (weights > 0)
    wsum = weights[ok].sum()
    return float((values[ok] * weights[ok]).sum() / wsum) if wsum > 0 else math.nan


def model_aggregates(
    stats: xr.Dataset, layer_model: np.ndarray, n_models: int
) -> dict[str, xr.Variable]:
    """Per-model aggregates of per-layer statistics.

    Shares count only layers whose flag is defined (``n_layers_undefined`` says how many are
    not); a model without defined layers gets NaN shares and means. Filter-weighted means weight
    each layer by its number of filters and skip NaN values.

    Returns
    -------
    dict of str to xarray.Variable
        ``n_layers``, ``model_n_filters``, ``n_layers_degenerated``, ``n_layers_random_like``,
        ``n_layers_sparse_collapsed``, ``n_layers_undefined``, ``share_layers_degenerated``,
        ``share_filters_degenerated``, ``entropy_mean_fw``, ``sparsity_mean_fw``,
        ``entropy_norm_mean_fw``, ``orthogonality_mean_fw`` (all on ``model``).
    """
    nf = stats["n_filters"].values.astype(np.float64)
    deg = stats["degenerated"].values
    cols: dict[str, np.ndarray] = {
        k: np.zeros(n_models, np.int64)
        for k in (
            "n_layers",
            "model_n_filters",
            "n_layers_degenerated",
            "n_layers_random_like",
            "n_layers_sparse_collapsed",
            "n_layers_undefined",
        )
    }
    fcols = {
        k: np.full(n_models, math.nan)
        for k in (
            "share_layers_degenerated",
            "share_filters_degenerated",
            "entropy_mean_fw",
            "sparsity_mean_fw",
            "entropy_norm_mean_fw",
            "orthogonality_mean_fw",
        )
    }
    order = np.argsort(layer_model, kind="stable")
    bounds = np.searchsorted(layer_model[order], np.arange(n_models + 1))
    for m in range(n_models):
        idx = order[bounds[m] : bounds[m + 1]]
        if idx.size == 0:
            continue
        d = deg[idx]
        defined = d >= 0
        cols["n_layers"][m] = idx.size
        cols["model_n_filters"][m] = int(nf[idx].sum())
        cols["n_layers_degenerated"][m] = int((d == 1).sum())
        cols["n_layers_random_like"][m] = int((stats["random_like"].values[idx] == 1).sum())
        cols["n_layers_sparse_collapsed"][m] = int(
            (stats["sparse_collapsed"].values[idx] == 1).sum()
        )
        cols["n_layers_undefined"][m] = int((~defined).sum())
        if defined.any():
            fcols["share_layers_degenerated"][m] = float((d == 1).sum()) / defined.sum()
            fdef = nf[idx][defined].sum()
            if fdef > 0:
                fcols["share_filters_degenerated"][m] = nf[idx][d == 1].sum() / fdef
        for name, src in (
            ("entropy_mean_fw", "entropy"),
            ("sparsity_mean_fw", "sparsity"),
            ("entropy_norm_mean_fw", "entropy_norm"),
            ("orthogonality_mean_fw", "orthogonality"),
        ):
            fcols[name][m] = weighted_mean(stats[src].values[idx], nf[idx])
    out = {k: xr.Variable("model", v) for k, v in cols.items()}
    out.update({k: xr.Variable("model", v) for k, v in fcols.items()})
    return out
