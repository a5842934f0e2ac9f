"""Specification of the distribution-shift statistics (METHODS.md section 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest_stats import LayerSpec, ModelSpec, make_dataset, write_dataset
from scipy.stats import entropy
from sklearn.decomposition import PCA

from filterdb.degeneracy import compute_degeneracy
from filterdb.shifts import (
    CoefficientRange,
    GroupHistogram,
    ShiftsParams,
    StreamingPCA,
    axis_groups,
    bin_indices,
    compute_shifts,
    compute_stats,
    depth_deciles,
    histogram_edges,
    scale_filters,
    write_shifts,
)

RTOL = 1e-6
EPS = np.float32(np.finfo(np.float32).eps)


def zoo() -> list[ModelSpec]:
    """Six models over three tasks, two families, trained and random-init; depth varies."""
    out = []
    for m in range(6):
        layers = [LayerSpec(24, 16, 1, "structured"), LayerSpec(16, 24, 2, "structured"),
                  LayerSpec(32, 8, 1, "sparse" if m % 2 else "structured"),
                  LayerSpec(8, 32, 1, "normal" if m % 3 == 2 else "structured")]
        meta = {"task": ["classification", "segmentation", "gan-generator"][m % 3],
                "family": ["resnet", "vgg"][m % 2],
                "training": "random-init" if m % 3 == 2 else ["normal", "adversarial"][m % 2]}
        out.append(ModelSpec(f"m{m}", layers[: 2 + m % 3], meta))
    return out


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return write_dataset(make_dataset(zoo(), seed=3), tmp_path_factory.mktemp("sh") / "f.nc",
                         chunk=500)


@pytest.fixture(scope="module")
def shifts(data_file) -> xr.Dataset:
    with xr.open_dataset(data_file) as ds:
        return compute_shifts(ds).load()


# ---- the independent in-memory recipe ----------------------------------------------------------


def reference(ds: xr.Dataset, shifts: xr.Dataset):
    """sklearn PCA + numpy.histogram(density=True) + scipy entropy, on all filters in memory."""
    w = ds["weight"].values.reshape(-1, 9).astype(np.float64)
    peak = np.abs(w).max(axis=1, keepdims=True)
    x = np.divide(w, peak, out=np.zeros_like(w), where=peak > 0)
    pca = PCA(n_components=9, svd_solver="full").fit(x)
    comps = pca.components_.copy()
    signs = np.sign((comps * shifts["pca_components"].values).sum(axis=1))  # align signs
    comps *= signs[:, None]
    c = (x - pca.mean_) @ comps.T
    lo, hi = c.min(), c.max()
    layer = ds["filter_layer"].values
    model_of_filter = ds["layer_model"].values[layer]
    depth_of_filter = ds["conv_depth_norm"].values[layer]

    def probs(mask):
        out = []
        for i in range(9):
            d, _ = np.histogram(c[mask, i], bins=70, range=(lo, hi), density=True)
            d[d == 0] = EPS
            out.append(d / d.sum())
        return np.array(out)

    return pca, comps, (lo, hi), model_of_filter, depth_of_filter, probs


def test_pca_matches_sklearn(data_file, shifts):
    with xr.open_dataset(data_file) as ds:
        pca, comps, *_ = reference(ds, shifts)
    np.testing.assert_allclose(shifts["pca_mean"], pca.mean_, rtol=RTOL)
    np.testing.assert_allclose(shifts["explained_variance_ratio"], pca.explained_variance_ratio_,
                               rtol=RTOL)
    np.testing.assert_allclose(shifts["explained_variance"], pca.explained_variance_, rtol=RTOL)
    np.testing.assert_allclose(shifts["pca_components"], comps, rtol=RTOL, atol=1e-9)


def test_pca_signs_make_the_largest_entry_of_each_component_positive(shifts):
    v = shifts["pca_components"].values
    assert (v[np.arange(9), np.abs(v).argmax(axis=1)] > 0).all()


def test_group_histograms_match_numpy_histogram_density(data_file, shifts):
    with xr.open_dataset(data_file) as ds:
        _, _, (lo, hi), model_of, depth_of, probs = reference(ds, shifts)
        task_codes = ds["task"].values
        labels = ds["task"].attrs["flag_meanings"].split()
    assert shifts.attrs["coef_min"] == pytest.approx(lo, rel=RTOL)
    assert shifts.attrs["coef_max"] == pytest.approx(hi, rel=RTOL)
    for gi, label in enumerate(labels):
        mask = task_codes[model_of] == gi
        np.testing.assert_allclose(shifts["prob_task"].sel(task=label).values, probs(mask),
                                   rtol=RTOL)
        assert shifts["n_filters_task"].sel(task=label) == mask.sum()
    deciles = pd.cut(depth_of, np.linspace(0, 1, 11), include_lowest=True, labels=False)
    for gi in range(10):
        mask = deciles == gi
        got = shifts["prob_depth"].values[gi]
        if mask.any():
            np.testing.assert_allclose(got, probs(mask), rtol=RTOL)
        else:
            assert np.isnan(got).all()


def test_shift_matrix_matches_scipy_symmetric_kl_weighted_by_eta(shifts):
    p = shifts["prob_family"].values
    eta = shifts["explained_variance_ratio"].values
    d = shifts["shift_family"].values
    for a in range(p.shape[0]):
        for b in range(p.shape[0]):
            ref = sum(eta[i] * (entropy(p[a, i], p[b, i]) + entropy(p[b, i], p[a, i]))
                      for i in range(9))
            assert d[a, b] == pytest.approx(ref, rel=RTOL, abs=1e-15)
    np.testing.assert_array_equal(d, d.T)
    assert (np.diag(d) == 0).all() and (d[~np.eye(len(d), dtype=bool)] > 0).all()


def test_group_sizes_count_models_and_filters(data_file, shifts):
    with xr.open_dataset(data_file) as ds:
        fam = ds["family"].values
        nf = ds["n_filters_3x3"].values
        labels = ds["family"].attrs["flag_meanings"].split()
    for gi, label in enumerate(labels):
        assert shifts["n_models_family"].sel(family=label) == (fam == gi).sum()
        assert shifts["n_filters_family"].sel(family=label) == nf[fam == gi].sum()


def test_trained_axis_collapses_training_into_random_init_and_trained(data_file, shifts):
    with xr.open_dataset(data_file) as ds:
        labels, groups = axis_groups(ds, "trained")
        training = np.array(ds["training"].attrs["flag_meanings"].split())[ds["training"].values]
    assert labels == ["random-init", "trained"]
    np.testing.assert_array_equal(groups, np.where(training == "random-init", 0, 1))
    assert list(shifts["trained"].values) == ["random-init", "trained"]
    assert shifts["shift_trained"].values[0, 1] > 0


def test_depth_deciles_match_pandas_cut_with_lowest_included():
    x = np.array([0.0, 0.05, 0.1, 0.1000001, 0.3, 3 / 10, 0.7, 0.95, 1.0, np.nan, 1.2, -0.1])
    edges = ShiftsParams().depth_edges
    want = pd.cut(x, edges, include_lowest=True, labels=False)
    got = depth_deciles(x, edges)
    np.testing.assert_array_equal(got, np.where(np.isnan(want), -1, want))


def test_bin_indices_reproduce_numpy_histogram_including_values_on_edges():
    rng = np.random.default_rng(0)
    edges = histogram_edges(-2.3, 3.1, 70)
    x = np.concatenate([rng.uniform(-2.3, 3.1, 100_000), edges, np.nextafter(edges, 0)])
    x = np.clip(x, -2.3, 3.1)
    counts = np.bincount(bin_indices(x, edges), minlength=70)
    np.testing.assert_array_equal(counts, np.histogram(x, bins=70, range=(-2.3, 3.1))[0])


def test_zero_width_range_is_widened_as_numpy_does():
    np.testing.assert_array_equal(histogram_edges(1.0, 1.0, 4),
                                  np.histogram([1.0], bins=4)[1])


# ---- streaming accumulators -------------------------------------------------------------------


def test_accumulators_merged_from_workers_equal_one_pass():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 9)) * np.arange(9, 0, -1) + 0.2
    one = StreamingPCA().update(x).finalize()
    merged = StreamingPCA().update(x[:1000]).merge(StreamingPCA().update(x[1000:])).finalize()
    np.testing.assert_allclose(merged.components_, one.components_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(merged.explained_variance_ratio_, one.explained_variance_ratio_,
                               rtol=1e-12)
    c = one.transform(x)
    r = CoefficientRange().update(c[:10]).merge(CoefficientRange().update(c[10:])).finalize()
    assert (r.min_, r.max_) == (c.min(), c.max())
    edges = histogram_edges(r.min_, r.max_, 70)
    slots = rng.integers(0, 5, size=3000)
    whole = GroupHistogram(5, edges).update(c, slots).finalize().counts_
    parts = GroupHistogram(5, edges).update(c[:7], slots[:7])
    parts.merge(GroupHistogram(5, edges).update(c[7:], slots[7:]))
    np.testing.assert_array_equal(parts.finalize().counts_, whole)
    assert whole.sum() == 3000 * 9


def test_learned_attributes_appear_only_after_finalize():
    pca = StreamingPCA().update(np.random.default_rng(0).normal(size=(20, 9)))
    assert not hasattr(pca, "components_")
    assert pca.finalize().components_.shape == (9, 9)


def test_scaling_divides_by_peak_and_keeps_zero_filters_zero():
    w = np.zeros((3, 3, 3), np.float32)
    w[0, 0, 0], w[0, 2, 2] = -4.0, 2.0
    w[2, 1, 1] = np.nan
    x, finite = scale_filters(w)
    assert x[0, 0] == -1.0 and x[0, 8] == 0.5 and (x[1] == 0).all()
    assert finite.tolist() == [True, True, False]


# ---- edge cases --------------------------------------------------------------------------------


def edge_dataset(**weights) -> xr.Dataset:
    models = [
        ModelSpec("big", [LayerSpec(20, 20, 1, "structured"), LayerSpec(10, 10, 1, "structured")],
                  {"task": "classification"}),
        ModelSpec("one", [LayerSpec(1, 1, 1, "structured")], {"task": "segmentation"}),
    ]
    return make_dataset(models, seed=9, weights=weights.get("weights"))


def test_empty_group_keeps_its_row_with_nan_shift_and_zero_size():
    # two-layer model: depths 0 and 1 only -> deciles 2..9 are empty
    sh = compute_shifts(edge_dataset())
    n = sh["n_filters_depth"].values
    assert n[0] > 0 and n[9] > 0 and (n[1:9] == 0).all()
    d = sh["shift_depth"].values
    assert np.isnan(d[1]).all() and np.isnan(d[:, 1]).all()
    assert np.isfinite(d[0, 9]) and d[0, 9] == d[9, 0] and d[0, 0] == 0
    assert np.isnan(sh["prob_depth"].values[1]).all()


def test_group_of_one_filter_has_a_finite_shift():
    sh = compute_shifts(edge_dataset(), {"axes": ["task"]})
    assert sh["n_filters_task"].sel(task="segmentation") == 1
    assert sh["n_models_task"].sel(task="segmentation") == 1
    d = sh["shift_task"].values
    assert np.isfinite(d).all() and d[0, 1] > 0
    # one filter: exactly one non-empty bin per component, the rest floored to eps
    counts = sh["count_task"].sel(task="segmentation").values
    assert (counts.sum(axis=1) == 1).all()


def test_nonfinite_filters_are_left_out_and_counted():
    ds = edge_dataset()
    w = ds["weight"].values.copy()
    w[5, 0, 0] = np.nan
    w[17, 1, 2] = np.inf
    bad = ds.assign(weight=(("filter", "ky", "kx"), w))
    sh = compute_shifts(bad, {"axes": ["task"]})
    assert sh.attrs["n_filters_nonfinite"] == 2
    assert sh.attrs["n_filters_used"] == ds.sizes["filter"] - 2
    assert np.isfinite(sh["pca_components"].values).all()
    assert sh["n_filters_task"].values.sum() == ds.sizes["filter"] - 2


def test_identical_filters_everywhere_give_nan_ratios_and_shifts_not_numbers():
    ds = edge_dataset()
    w = np.ones_like(ds["weight"].values)
    sh = compute_shifts(ds.assign(weight=(("filter", "ky", "kx"), w)), {"axes": ["task"]})
    assert np.isnan(sh["explained_variance_ratio"].values).all()
    assert np.isnan(sh["shift_task"].values).all()
    assert not np.isinf(sh["shift_task"].values).any()


def test_missing_axis_variable_raises_a_clear_error():
    ds = edge_dataset().drop_vars("family")
    with pytest.raises(ValueError, match="family"):
        compute_shifts(ds)


# ---- parameters, passes, files -----------------------------------------------------------------


def test_params_from_dict_validate_keys_and_values():
    p = ShiftsParams.from_dict({"bins": 10, "axes": ["task"], "depth_edges": [0, 0.5, 1]})
    assert p.bins == 10 and p.axes == ("task",) and p.depth_edges == (0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="unknown keys"):
        ShiftsParams.from_dict({"bin": 10})
    with pytest.raises(ValueError, match="n_components"):
        ShiftsParams.from_dict({"n_components": 10})
    with pytest.raises(ValueError, match="depth_edges"):
        ShiftsParams.from_dict({"depth_edges": [0, 1, 0.5]})


def test_constants_are_honoured(data_file):
    with xr.open_dataset(data_file) as ds:
        sh = compute_shifts(ds, {"bins": 12, "n_components": 3, "axes": ["family", "depth"],
                                 "depth_edges": [0, 0.5, 1], "store_model_counts": False})
    assert sh.sizes["bin"] == 12 and sh.sizes["component"] == 3 and sh.sizes["depth"] == 2
    assert "shift_task" not in sh and "count_model_depth" not in sh
    assert sh["explained_variance_ratio"].sum() < 1


def test_chunk_size_does_not_change_results(data_file, shifts):
    with xr.open_dataset(data_file) as ds:
        small = compute_shifts(ds, {"chunk_size": 37})
    for name in ("count_task", "count_depth", "count_model_depth"):
        np.testing.assert_array_equal(small[name].values, shifts[name].values)
    np.testing.assert_allclose(small["shift_task"], shifts["shift_task"], rtol=1e-9)


def test_combined_pass_equals_separate_computations(data_file, shifts):
    with xr.open_dataset(data_file) as ds:
        deg, sh = compute_stats(ds)
        deg_alone = compute_degeneracy(ds)
    xr.testing.assert_identical(sh, shifts)
    xr.testing.assert_identical(deg, deg_alone)


def test_write_shifts_roundtrips_through_netcdf(data_file, shifts, tmp_path):
    out = tmp_path / "stats" / "shifts.nc"
    write_shifts(data_file, out)
    assert not list(out.parent.glob("*.tmp"))
    with xr.open_dataset(out) as back:
        np.testing.assert_allclose(back["shift_task"], shifts["shift_task"])
        assert list(back["task"].values) == list(shifts["task"].values)
        assert back.attrs["axes"].split() == list(ShiftsParams().axes)
