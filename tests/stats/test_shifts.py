"""Specification of the distribution-shift statistics (METHODS.md section 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import entropy
from sklearn.decomposition import PCA
from sklearn.utils.extmath import svd_flip

from filterdb.stats.accumulators import CoefficientRange, StreamingPCA
from filterdb.stats.binning import GroupHistogram, bin_indices, histogram_edges
from filterdb.stats.compute import compute_stats
from filterdb.stats.degeneracy import compute_degeneracy
from filterdb.stats.groups import axis_groups, depth_deciles
from filterdb.stats.params import ShiftsParams
from filterdb.stats.shifts import compute_shifts, model_roles, scale_filters
from filterdb.stats.write import write_shifts
from tests.conftest_stats import LayerSpec, ModelSpec, make_dataset, write_dataset

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


ALL = {"population": "all"}  # every model pooled everywhere (the behaviour before `population`)


@pytest.fixture(scope="module")
def shifts(data_file) -> xr.Dataset:
    with xr.open_dataset(data_file) as ds:
        return compute_shifts(ds, ALL).load()


@pytest.fixture(scope="module")
def shifts_trained(data_file) -> xr.Dataset:
    with xr.open_dataset(data_file) as ds:
        return compute_shifts(ds).load()  # the default population: trained


# ---- the independent in-memory recipe ----------------------------------------------------------


def training_of_filter(ds: xr.Dataset) -> np.ndarray:
    """Each filter's model's ``training`` label (from the codes, not from filterdb)."""
    labels = np.array(ds["training"].attrs["flag_meanings"].split())
    return labels[ds["training"].values][ds["layer_model"].values[ds["filter_layer"].values]]


def reference(ds: xr.Dataset, shifts: xr.Dataset, fit: np.ndarray | None = None):
    """sklearn PCA + numpy.histogram(density=True) + scipy entropy, on filters in memory.

    ``fit`` (a per-filter mask, default all) selects the filters of the PCA and the range; every
    filter is projected, and values outside the range are clipped into the end bins.
    """
    w = ds["weight"].values.reshape(-1, 9).astype(np.float64)
    fit = np.ones(w.shape[0], bool) if fit is None else fit
    peak = np.abs(w).max(axis=1, keepdims=True)
    x = np.divide(w, peak, out=np.zeros_like(w), where=peak > 0)
    pca = PCA(n_components=9, svd_solver="full").fit(x[fit])
    comps = pca.components_.copy()
    signs = np.sign((comps * shifts["pca_components"].values).sum(axis=1))  # align signs
    comps *= signs[:, None]
    c = (x - pca.mean_) @ comps.T
    lo, hi = c[fit].min(), c[fit].max()
    layer = ds["filter_layer"].values
    model_of_filter = ds["layer_model"].values[layer]
    depth_of_filter = ds["conv_depth_norm"].values[layer]

    def probs(mask):
        out = []
        for i in range(9):
            d, _ = np.histogram(np.clip(c[mask, i], lo, hi), bins=70, range=(lo, hi),
                                density=True)
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


def test_pca_signs_make_the_largest_entry_of_each_component_positive(shifts, shifts_trained):
    for sh in (shifts, shifts_trained):  # v-based is the default sign rule
        v = sh["pca_components"].values
        assert (v[np.arange(9), np.abs(v).argmax(axis=1)] > 0).all()
        assert sh.attrs["sign_rule"] == "v-based"


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


def test_population_all_reproduces_the_results_from_before_the_parameter(shifts):
    # numbers of this fixture computed by filterdb before `population` and `sign_rule` existed
    assert list(shifts["task"].values) == ["classification", "gan-generator", "segmentation"]
    d = shifts["shift_task"].values
    np.testing.assert_allclose(d[np.triu_indices(3, 1)],
                               [0.23127149866148078, 0.26235910614679964, 0.1462903390644584],
                               rtol=1e-9)
    assert shifts.attrs["coef_min"] == pytest.approx(-2.2496457014137796, rel=1e-12)
    assert shifts.attrs["coef_max"] == pytest.approx(2.0425227834046975, rel=1e-12)
    assert shifts["shift_family"].values[0, 1] == pytest.approx(0.2190096807847753, rel=1e-9)
    assert shifts["shift_trained"].values[0, 1] == pytest.approx(0.10859597580144037, rel=1e-9)
    assert shifts.attrs["population"] == "all" and shifts.attrs["n_filters_projected"] == 0
    assert all(shifts[f"shift_{a}"].attrs["population"] == "all" for a in ShiftsParams().axes)


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
    with pytest.raises(ValueError, match="unknown key"):
        ShiftsParams.from_dict({"bin": 10})
    with pytest.raises(ValueError, match="n_components"):
        ShiftsParams.from_dict({"n_components": 10})
    with pytest.raises(ValueError, match="depth_edges"):
        ShiftsParams.from_dict({"depth_edges": [0, 1, 0.5]})
    assert ShiftsParams().population == "trained" and ShiftsParams().sign_rule == "v-based"
    with pytest.raises(ValueError, match=r"shifts\.population must be one of trained, all"):
        ShiftsParams.from_dict({"population": "everything"})
    with pytest.raises(ValueError, match=r"shifts\.population is True, not a string"):
        ShiftsParams.from_dict({"population": True})
    with pytest.raises(ValueError, match=r"shifts\.sign_rule must be one of v-based, u-based"):
        ShiftsParams.from_dict({"sign_rule": "u"})
    with pytest.raises(ValueError, match=r"shifts\.sign_rule is 1, not a string"):
        ShiftsParams.from_dict({"sign_rule": 1})
    with pytest.raises(ValueError, match=r"shifts\.random_init_label"):
        ShiftsParams.from_dict({"random_init_label": None})


def test_constants_are_honoured(data_file):
    with xr.open_dataset(data_file) as ds:
        sh = compute_shifts(ds, {"bins": 12, "n_components": 3, "axes": ["family", "depth"],
                                 "depth_edges": [0, 0.5, 1], "store_model_counts": False})
    assert sh.sizes["bin"] == 12 and sh.sizes["component"] == 3 and sh.sizes["depth"] == 2
    assert "shift_task" not in sh and "count_model_depth" not in sh
    assert sh["explained_variance_ratio"].sum() < 1


@pytest.mark.parametrize("population", ["all", "trained"])
def test_chunk_size_does_not_change_results(data_file, shifts, shifts_trained, population):
    ref = shifts if population == "all" else shifts_trained
    with xr.open_dataset(data_file) as ds:
        small = compute_shifts(ds, {"chunk_size": 37, "population": population})
    for name in ("count_task", "count_depth", "count_model_depth", "n_coef_outside"):
        np.testing.assert_array_equal(small[name].values, ref[name].values)
    np.testing.assert_allclose(small["shift_task"], ref["shift_task"], rtol=1e-9)


def test_combined_pass_equals_separate_computations(data_file, shifts, shifts_trained):
    with xr.open_dataset(data_file) as ds:
        deg, sh = compute_stats(ds)
        _, sh_all = compute_stats(ds, None, ALL)
        deg_alone = compute_degeneracy(ds)
    xr.testing.assert_identical(sh, shifts_trained)
    xr.testing.assert_identical(sh_all, shifts)
    xr.testing.assert_identical(deg, deg_alone)


def test_write_shifts_roundtrips_through_netcdf(data_file, shifts_trained, tmp_path):
    out = tmp_path / "stats" / "shifts.nc"
    write_shifts(data_file, out)
    assert not list(out.parent.glob("*.tmp"))
    with xr.open_dataset(out) as back:
        np.testing.assert_allclose(back["shift_task"], shifts_trained["shift_task"])
        assert list(back["task"].values) == list(shifts_trained["task"].values)
        assert back.attrs["axes"].split() == list(ShiftsParams().axes)
        assert back.attrs["population"] == "trained" and back.attrs["sign_rule"] == "v-based"
        assert back["shift_task"].attrs["population"] == "trained"
        assert back["shift_trained"].attrs["population"] == "trained+random-init"
        assert back["shift_task"].attrs["sign_rule"] == "v-based"


# ---- populations -------------------------------------------------------------------------------


def test_default_population_fits_pca_range_and_axes_on_trained_models_only(
    data_file, shifts_trained
):
    sh = shifts_trained
    with xr.open_dataset(data_file) as ds:
        training = training_of_filter(ds)
        fit = training != "random-init"
        pca, comps, (lo, hi), model_of, depth_of, probs = reference(ds, sh, fit)
        task_labels = np.array(ds["task"].attrs["flag_meanings"].split())[ds["task"].values]
        fam_labels = np.array(ds["family"].attrs["flag_meanings"].split())[ds["family"].values]
        is_trained_model = np.array(ds["training"].attrs["flag_meanings"].split())[
            ds["training"].values] != "random-init"
    assert 0 < fit.sum() < fit.size
    assert sh.attrs["population"] == "trained"
    assert sh.attrs["n_filters_pca"] == fit.sum()
    assert sh.attrs["n_filters_projected"] == (~fit).sum()
    assert sh.attrs["n_filters_used"] == fit.size and sh.attrs["n_filters_excluded"] == 0
    assert sh.attrs["n_models_pca"] == is_trained_model.sum()
    np.testing.assert_allclose(sh["pca_mean"], pca.mean_, rtol=RTOL)
    np.testing.assert_allclose(sh["explained_variance_ratio"], pca.explained_variance_ratio_,
                               rtol=RTOL)
    np.testing.assert_allclose(sh["pca_components"], comps, rtol=RTOL, atol=1e-9)
    assert sh.attrs["coef_min"] == pytest.approx(lo, rel=RTOL)
    assert sh.attrs["coef_max"] == pytest.approx(hi, rel=RTOL)
    # meta-parameter axes: trained models only; labels only random-init models have are gone
    task_of = task_labels[model_of]
    expected = sorted(set(task_labels[is_trained_model]))
    assert list(sh["task"].values) == expected and "gan-generator" not in expected
    for label in expected:
        mask = fit & (task_of == label)
        np.testing.assert_allclose(sh["prob_task"].sel(task=label).values, probs(mask),
                                   rtol=RTOL)
        assert sh["n_filters_task"].sel(task=label) == mask.sum()
    assert "random-init" not in list(sh["training"].values)
    deciles = pd.cut(depth_of, np.linspace(0, 1, 11), include_lowest=True, labels=False)
    for gi in range(10):
        mask = fit & (deciles == gi)
        if mask.any():
            np.testing.assert_allclose(sh["prob_depth"].values[gi], probs(mask), rtol=RTOL)
        else:
            assert sh["n_filters_depth"].values[gi] == 0
    # the trained axis: random-init projected in the same basis, binned with the same edges
    np.testing.assert_allclose(sh["prob_trained"].sel(trained="random-init").values,
                               probs(~fit), rtol=RTOL)
    np.testing.assert_allclose(sh["prob_trained"].sel(trained="trained").values, probs(fit),
                               rtol=RTOL)
    # model counts of every meta-parameter axis add up to the number of trained models
    n_trained = int(sh["n_models_trained"].sel(trained="trained"))
    assert n_trained == is_trained_model.sum()
    for axis in ("task", "visual_category", "training_dataset", "family", "training"):
        assert int(sh[f"n_models_{axis}"].sum()) == n_trained, axis
        assert int(sh[f"n_filters_{axis}"].sum()) == fit.sum(), axis
    assert sorted(set(fam_labels[is_trained_model])) == list(sh["family"].values)


def test_model_roles_follow_the_population(data_file):
    with xr.open_dataset(data_file) as ds:
        training = np.array(ds["training"].attrs["flag_meanings"].split())[ds["training"].values]
        np.testing.assert_array_equal(model_roles(ds), np.where(training == "random-init", 1, 0))
        assert (model_roles(ds, ALL) == 0).all()


def clipping_dataset() -> xr.Dataset:
    """Trained models with nearly identical filters (a narrow range), random-init i.i.d. normal."""
    models = [ModelSpec(f"t{m}", [LayerSpec(16, 8), LayerSpec(8, 16)],
                        {"training": "normal", "task": ["classification", "segmentation"][m]})
              for m in range(2)]
    models.append(ModelSpec("r", [LayerSpec(16, 16, 1, "normal")],
                            {"training": "random-init", "task": "gan-generator"}))
    rng = np.random.default_rng(5)
    base = np.linspace(0.5, 1.0, 9)
    weights = {li: (base + 0.05 * rng.standard_normal((128, 9))).astype(np.float32)
               for li in range(4)}
    return make_dataset(models, seed=2, weights=weights)


def test_random_init_coefficients_outside_the_trained_range_are_clipped_into_end_bins():
    ds = clipping_dataset()
    sh = compute_shifts(ds)
    fit = training_of_filter(ds) != "random-init"
    _, _, (lo, hi), _, _, probs = reference(ds, sh, fit)
    w = ds["weight"].values.reshape(-1, 9).astype(np.float64)
    x = w / np.abs(w).max(axis=1, keepdims=True)
    c = (x[~fit] - sh["pca_mean"].values) @ sh["pca_components"].values.T
    below, above = (c < lo).sum(axis=0), (c > hi).sum(axis=0)
    assert below.sum() + above.sum() > 0  # the case this test is about
    np.testing.assert_array_equal(sh["n_coef_outside"].sel(side="below").values, below)
    np.testing.assert_array_equal(sh["n_coef_outside"].sel(side="above").values, above)
    counts = sh["count_trained"].sel(trained="random-init").values
    assert (counts.sum(axis=1) == (~fit).sum()).all()  # every random-init filter is counted
    for i in range(9):
        want, _ = np.histogram(np.clip(c[:, i], lo, hi), bins=70, range=(lo, hi))
        np.testing.assert_array_equal(counts[i], want)
        assert counts[i, 0] >= below[i] and counts[i, -1] >= above[i]
    np.testing.assert_allclose(sh["prob_trained"].sel(trained="random-init").values,
                               probs(~fit), rtol=RTOL)
    assert "gan-generator" not in list(sh["task"].values)
    assert np.isfinite(sh["shift_trained"].values).all()


def test_models_without_training_value_are_left_out_of_a_trained_population():
    ds = clipping_dataset()
    codes = ds["training"].values.copy()
    codes[1] = -1  # t1: unknown
    ds = ds.assign(training=("model", codes, ds["training"].attrs))
    sh = compute_shifts(ds, {"axes": ["task", "trained"]})
    n_t1 = int(ds["n_filters_3x3"].values[1])
    assert sh.attrs["n_filters_excluded"] == n_t1
    assert sh.attrs["n_filters_pca"] == int(ds["n_filters_3x3"].values[0])
    assert list(sh["task"].values) == ["classification"]
    assert int(sh["n_filters_trained"].sum()) == ds.sizes["filter"] - n_t1
    # with `all` the unknown model is pooled as before
    assert compute_shifts(ds, {"axes": ["task"], "population": "all"}).attrs[
        "n_filters_excluded"] == 0


def test_trained_population_needs_the_training_variable():
    ds = edge_dataset().drop_vars("training")
    with pytest.raises(ValueError, match="population 'trained' needs the model variable"):
        compute_shifts(ds, {"axes": ["task"]})
    assert compute_shifts(ds, {"axes": ["task"], "population": "all"}).sizes["task"] == 2


# ---- sign rule ---------------------------------------------------------------------------------


def sklearn_u_based(x: np.ndarray) -> np.ndarray:
    """Components with scikit-learn 0.24's signs: ``svd_flip(U, Vt, u_based_decision=True)``."""
    xc = x - x.mean(axis=0)
    u, _, vt = np.linalg.svd(xc, full_matrices=False)
    return svd_flip(u, vt, u_based_decision=True)[1]


def test_streamed_u_based_signs_equal_sklearn_svd_flip_on_random_data():
    rng = np.random.default_rng(11)
    for trial in range(20):
        x = rng.normal(size=(400 + trial, 9)) * rng.uniform(0.2, 3.0, 9) + rng.normal(size=9)
        pca = StreamingPCA().update(x[:150]).update(x[150:]).finalize()
        parts = [(0, 90), (90, 200), (200, x.shape[0])]
        order = rng.permutation(len(parts))  # workers finish in any order
        rngs = [CoefficientRange().update(pca.transform(x[a:b]), np.arange(a, b))
                for a, b in parts]
        acc = CoefficientRange()
        for i in order:
            acc.merge(rngs[i])
        acc.finalize()
        want = sklearn_u_based(x)
        pca.flip(acc.u_based_signs())
        np.testing.assert_allclose(pca.components_, want, atol=1e-9)
        c = pca.transform(x)
        peak = c[np.argmax(np.abs(c), axis=0), np.arange(9)]
        assert (peak > 0).all()
        flipped = acc.flipped(acc.u_based_signs())
        assert (flipped.min_, flipped.max_) == (c.min(), c.max())
        np.testing.assert_array_equal(flipped.component_min_, c.min(axis=0))
        np.testing.assert_array_equal(flipped.component_max_, c.max(axis=0))


def test_peak_ties_go_to_the_first_row_as_numpy_argmax():
    c = np.array([[1.0, -2.0], [-1.0, 2.0], [0.5, -2.0]])
    one = CoefficientRange().update(c, np.arange(3)).finalize()
    late = CoefficientRange().update(c[1:], np.arange(1, 3))
    merged = late.merge(CoefficientRange().update(c[:1], np.arange(1))).finalize()
    for r in (one, merged):
        assert r.peak_.tolist() == [1.0, -2.0] and r.peak_index_.tolist() == [0, 0]
        assert r.u_based_signs().tolist() == [1.0, -1.0]


@pytest.mark.parametrize("population", ["all", "trained"])
def test_u_based_shifts_match_sklearn_signs_on_the_fit_population(data_file, population):
    with xr.open_dataset(data_file) as ds:
        sh = compute_shifts(ds, {"sign_rule": "u-based", "population": population})
        v_based = compute_shifts(ds, {"population": population})
        x, _ = scale_filters(ds["weight"].values)
        fit = np.ones(x.shape[0], bool)
        if population == "trained":
            fit = training_of_filter(ds) != "random-init"
    want = sklearn_u_based(x[fit])
    np.testing.assert_allclose(sh["pca_components"].values, want, atol=1e-9)
    assert sh.attrs["sign_rule"] == "u-based" and sh["shift_task"].attrs["sign_rule"] == "u-based"
    assert (sh["coef_peak"].values > 0).all()
    # the range of the flipped basis is exactly the range of its coefficients
    c = (x[fit] - sh["pca_mean"].values) @ sh["pca_components"].values.T
    assert (sh.attrs["coef_min"], sh.attrs["coef_max"]) == (c.min(), c.max())
    # same PCA up to signs, same eta; flipped components show as negative peaks under v-based
    flips = np.sign((sh["pca_components"].values * v_based["pca_components"].values).sum(1))
    np.testing.assert_array_equal(flips, np.sign(v_based["coef_peak"].values))
    np.testing.assert_array_equal(sh["explained_variance_ratio"],
                                  v_based["explained_variance_ratio"])
    if (flips < 0).any():  # D depends on the signs through the asymmetric global range
        assert not np.allclose(sh["shift_task"].values, v_based["shift_task"].values)
