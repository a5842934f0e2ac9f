"""Specification of the per-layer degeneracy statistics (METHODS.md section 2)."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from filterdb.stats.accumulators import ScatterAccumulator
from filterdb.stats.degeneracy import compute_degeneracy, layer_stats, randomness_threshold
from filterdb.stats.params import DegeneracyParams
from filterdb.stats.write import degeneracy_summary, write_degeneracy
from tests.conftest import REPO
from tests.conftest_stats import LayerSpec, ModelSpec, make_dataset, simple_zoo, write_dataset

RTOL = 1e-6


# ---- independent in-memory recipes -----------------------------------------------------------


def ref_entropy(w: np.ndarray) -> float:
    x = np.asarray(w, np.float64).reshape(-1, 9)
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    lam = s**2 / (x.shape[0] - 1)
    p = lam / lam.sum()
    p = p[p > 0]
    return float(-(p * np.log10(p)).sum())


def ref_sparsity(w: np.ndarray) -> float:
    x = np.abs(np.asarray(w, np.float64).reshape(-1, 9))
    t = x.max() / 100
    return float(np.mean(np.all(x < t, axis=1)))


def ref_orthogonality(w: np.ndarray, c_out: int) -> float:
    rows = np.asarray(w, np.float64).reshape(c_out, -1)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    wh = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    g = wh @ wh.T
    return 1 - np.abs(g - np.eye(c_out)).sum() / (c_out * (c_out - 1))


# ---- threshold -------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "expected"), [(9, 0.552), (64, 0.906), (576, 0.949)])
def test_threshold_matches_published_reference_values(n, expected):
    # METHODS.md quotes three digits; the formula gives TH(576) = 0.94846 (quoted as 0.949)
    assert randomness_threshold(n) == pytest.approx(expected, abs=1e-3)


def test_threshold_is_nan_for_empty_layer_and_vectorised():
    th = randomness_threshold(np.array([0, 9, 576]))
    assert math.isnan(th[0])
    np.testing.assert_allclose(th[1:], [randomness_threshold(9), randomness_threshold(576)])


def test_threshold_coefficients_are_parameters():
    assert randomness_threshold(64, {"th_d": 0.0}) == pytest.approx(
        randomness_threshold(64) + 0.31050834
    )


# ---- per-layer values against the in-memory recipes --------------------------------------------


@pytest.mark.parametrize(("c_out", "g", "kind"), [(4, 3, "normal"), (32, 16, "structured"),
                                                  (64, 64, "sparse"), (2, 1, "normal")])
def test_layer_statistics_match_in_memory_recipes(c_out, g, kind):
    from tests.conftest_stats import GENERATORS

    w = GENERATORS[kind](np.random.default_rng(c_out * g), c_out * g)
    st = layer_stats(w, c_out, g)
    assert st["entropy"] == pytest.approx(ref_entropy(w), rel=RTOL, abs=1e-12)
    assert st["sparsity"] == pytest.approx(ref_sparsity(w), rel=RTOL)
    assert st["orthogonality"] == pytest.approx(ref_orthogonality(w, c_out), rel=RTOL)
    assert st["threshold"] == pytest.approx(randomness_threshold(c_out * g))
    assert st["entropy_norm"] == pytest.approx(st["entropy"] / st["threshold"])


@pytest.mark.parametrize(("n", "expected", "draws"), [(9, 0.699, 3000), (64, 0.922, 400),
                                                      (576, 0.950, 60)])
def test_mean_entropy_of_iid_normal_filters_matches_reference(n, expected, draws):
    rng = np.random.default_rng(n)
    hs = [layer_stats(rng.standard_normal((n, 3, 3)), n, 1)["entropy"] for _ in range(draws)]
    assert np.mean(hs) == pytest.approx(expected, abs=0.01)


def test_entropy_is_blockwise_exact_for_layers_larger_than_a_block():
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((70_000, 9)) * np.arange(1, 10) + 5.0).astype(np.float32)
    st = layer_stats(w.reshape(-1, 3, 3), 700, 100)
    assert st["entropy"] == pytest.approx(ref_entropy(w), rel=RTOL)


def test_orthogonality_is_one_for_orthonormal_output_channels():
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(18, 18)))
    w = q[:5].reshape(5 * 2, 3, 3)  # 5 output channels, 2 input channels each
    assert layer_stats(w, 5, 2)["orthogonality"] == pytest.approx(1.0, abs=1e-12)


def test_orthogonality_blocks_do_not_change_the_result():
    w = np.random.default_rng(1).normal(size=(50 * 3, 3, 3)).astype(np.float32)
    whole = layer_stats(w, 50, 3)["orthogonality"]
    blocked = layer_stats(w, 50, 3, {"gram_block": 7})["orthogonality"]
    assert blocked == pytest.approx(whole, rel=1e-12)


def test_orthogonality_of_grouped_layer_uses_output_channel_rows():
    w = np.random.default_rng(2).normal(size=(8 * 4, 3, 3))
    assert layer_stats(w, 8, 4)["orthogonality"] == pytest.approx(ref_orthogonality(w, 8))
    assert layer_stats(w, 8, 4)["orthogonality"] != pytest.approx(layer_stats(w, 32, 1)[
        "orthogonality"])


def test_sparsity_counts_filters_entirely_below_one_percent_of_the_layer_peak():
    w = np.ones((4, 3, 3), np.float32) * 0.5
    w[0, 0, 0] = 100.0  # peak: t = 1
    w[1] = 0.9  # all below t -> sparse
    w[2] = 0.0  # zero filter -> sparse
    w[3, 1, 1] = 1.0  # one tap at t -> not sparse
    w[3][w[3] == 0.5] = 0.1
    assert layer_stats(w, 4, 1)["sparsity"] == pytest.approx(2 / 4)


# ---- edge cases ----------------------------------------------------------------------------------


def test_single_filter_layer_has_undefined_entropy_and_orthogonality():
    st = layer_stats(np.arange(9, dtype=np.float32).reshape(1, 3, 3), 1, 1)
    assert math.isnan(st["entropy"]) and st["h_undefined"] == 1
    assert math.isnan(st["orthogonality"]) and st["o_undefined"] == 1
    assert st["sparsity"] == 0.0 and st["s_undefined"] == 0
    assert st["random_like"] == -1 and st["degenerated"] == -1


def test_all_zero_layer_has_undefined_sparsity_and_entropy():
    st = layer_stats(np.zeros((6, 3, 3), np.float32), 3, 2)
    assert math.isnan(st["sparsity"]) and st["s_undefined"] == 1
    assert math.isnan(st["entropy"]) and st["h_undefined"] == 2
    assert st["degenerated"] == -1
    # O follows the formula: zero rows stay zero, so |G - I| is the identity's diagonal
    assert st["orthogonality"] == pytest.approx(1 - 3 / (3 * 2))


def test_constant_layer_has_zero_variance_entropy_but_defined_sparsity():
    w = np.broadcast_to(np.arange(1, 10, dtype=np.float32).reshape(3, 3), (12, 3, 3))
    st = layer_stats(w, 4, 3)
    assert math.isnan(st["entropy"]) and st["h_undefined"] == 2
    assert st["sparsity"] == 0.0
    assert st["sparse_collapsed"] == 0  # S < 0.14 is known false, whatever H is
    assert st["degenerated"] == -1  # random-like is unknown


def test_nonfinite_weights_give_nan_with_reason_not_a_number():
    w = np.random.default_rng(0).normal(size=(8, 3, 3))
    w[3, 1, 1] = np.inf
    st = layer_stats(w, 8, 1)
    assert math.isnan(st["entropy"]) and st["h_undefined"] == 3
    assert math.isnan(st["sparsity"]) and st["s_undefined"] == 2
    assert math.isnan(st["orthogonality"]) and st["o_undefined"] == 2


def test_layer_stats_rejects_filter_count_that_does_not_match_the_shape():
    with pytest.raises(ValueError, match="out_channels"):
        layer_stats(np.zeros((10, 3, 3)), 3, 3)
    with pytest.raises(ValueError, match="filters"):
        layer_stats(np.zeros((10, 4)), 10, 1)


# ---- flags --------------------------------------------------------------------------------------


def test_iid_normal_layer_is_random_like_and_degenerated():
    w = np.random.default_rng(5).standard_normal((576, 3, 3))
    st = layer_stats(w, 64, 9)
    assert st["random_like"] == 1 and st["degenerated"] == 1 and st["sparse_collapsed"] == 0


def test_sparse_low_rank_layer_is_sparse_collapsed():
    rng = np.random.default_rng(6)
    w = np.zeros((200, 9))
    w[:, 4] = rng.normal(size=200)
    w[rng.random(200) < 0.5] = 0.0
    st = layer_stats(w, 20, 10)
    assert st["entropy"] < 0.5 and st["sparsity"] >= 0.14
    assert st["sparse_collapsed"] == 1 and st["random_like"] == 0 and st["degenerated"] == 1


def test_structured_dense_layer_is_not_degenerated():
    from tests.conftest_stats import gen_structured

    st = layer_stats(gen_structured(np.random.default_rng(7), 256), 16, 16)
    assert st["degenerated"] == 0


def test_thresholds_are_parameters():
    w = np.random.default_rng(5).standard_normal((576, 3, 3))
    st = layer_stats(w, 64, 9, {"random_margin": -0.5})
    assert st["random_like"] == 0


def test_params_from_dict_rejects_unknown_keys():
    assert DegeneracyParams.from_dict({"random_margin": 0.03}).random_margin == 0.03
    with pytest.raises(ValueError, match="unknown key"):
        DegeneracyParams.from_dict({"random_margn": 0.03})


# ---- accumulators --------------------------------------------------------------------------------


def test_scatter_accumulator_merge_equals_one_pass():
    x = np.random.default_rng(0).normal(loc=1e3, size=(1000, 9))
    a = ScatterAccumulator().update(x[:300]).update(x[300:650])
    b = ScatterAccumulator().update(x[650:])
    merged = a.merge(b).finalize()
    xc = x - x.mean(axis=0)
    np.testing.assert_allclose(merged.scatter_, xc.T @ xc, rtol=1e-9)
    np.testing.assert_allclose(merged.mean_, x.mean(axis=0), rtol=1e-12)
    assert merged.n_ == 1000


# ---- whole datasets ------------------------------------------------------------------------------


def edge_zoo() -> list[ModelSpec]:
    return [
        ModelSpec("a", [LayerSpec(8, 4, 1, "structured"), LayerSpec(1, 1, 1, "normal"),
                        LayerSpec(6, 6, 3, "zero"), LayerSpec(16, 8, 1, "sparse")]),
        ModelSpec("b", [LayerSpec(4, 4, 1, "constant"), LayerSpec(40, 40, 1, "normal")]),
    ]


@pytest.fixture(scope="module")
def edge_file(tmp_path_factory) -> Path:
    ds = make_dataset(edge_zoo(), seed=11)
    return write_dataset(ds, tmp_path_factory.mktemp("deg") / "filters.nc", chunk=7)


def test_dataset_statistics_match_per_layer_recipes_across_chunk_boundaries(edge_file):
    with xr.open_dataset(edge_file) as ds:
        stats = compute_degeneracy(ds)
        w_all = ds["weight"].values
        first, count = ds["layer_first_filter"].values, ds["layer_filter_count"].values
        c_outs = ds["out_channels"].values
        assert stats.sizes["layer"] == ds.sizes["layer"] and stats.sizes["model"] == 2
        np.testing.assert_array_equal(stats["layer_name"].values, ds["layer_name"].values)
        np.testing.assert_array_equal(stats["model"].values, ds["model"].values)
    for li in range(len(first)):
        w = w_all[first[li] : first[li] + count[li]]
        h = stats["entropy"].values[li]
        if stats["h_undefined"].values[li] == 0:
            assert h == pytest.approx(ref_entropy(w), rel=RTOL, abs=1e-12)
        else:
            assert math.isnan(h)
        if c_outs[li] > 1:
            assert stats["orthogonality"].values[li] == pytest.approx(
                ref_orthogonality(w, c_outs[li]), rel=RTOL
            )
    assert stats["h_undefined"].values.tolist() == [0, 1, 2, 0, 2, 0]
    assert stats["s_undefined"].values.tolist() == [0, 0, 1, 0, 0, 0]


def test_chunk_size_does_not_change_results(edge_file):
    with xr.open_dataset(edge_file) as ds:
        a = compute_degeneracy(ds, {"chunk_size": 3})
        b = compute_degeneracy(ds, {"chunk_size": 10_000})
    xr.testing.assert_allclose(a.drop_attrs(), b.drop_attrs(), rtol=1e-12)


def test_model_aggregates_are_filter_weighted_over_defined_layers(edge_file):
    with xr.open_dataset(edge_file) as ds:
        stats = compute_degeneracy(ds)
    lm = stats["layer_model"].values
    for m in range(2):
        sel = lm == m
        h, nf = stats["entropy"].values[sel], stats["n_filters"].values[sel]
        ok = np.isfinite(h)
        assert stats["entropy_mean_fw"].values[m] == pytest.approx(
            (h[ok] * nf[ok]).sum() / nf[ok].sum()
        )
        deg = stats["degenerated"].values[sel]
        assert stats["n_layers_undefined"].values[m] == (deg == -1).sum()
        assert stats["share_layers_degenerated"].values[m] == pytest.approx(
            (deg == 1).sum() / (deg >= 0).sum()
        )
    assert stats["model_n_filters"].values.sum() == stats["n_filters"].values.sum()


def test_summary_counts_and_shares_are_consistent_and_json_ready(edge_file):
    with xr.open_dataset(edge_file) as ds:
        stats = compute_degeneracy(ds)
    s = degeneracy_summary(stats)
    json.dumps(s, allow_nan=False)
    deg = stats["degenerated"].values
    assert s["n_layers"] == 6 and s["n_models"] == 2
    assert s["n_layers_degenerated"] == (deg == 1).sum()
    assert s["n_layers_undefined"] == (deg == -1).sum() == 3
    assert s["share_layers_degenerated"] == pytest.approx((deg == 1).sum() / 3, abs=1e-6)


def test_write_degeneracy_writes_netcdf_and_json_atomically(edge_file, tmp_path):
    out_nc, out_json = tmp_path / "stats" / "degeneracy.nc", tmp_path / "metrics" / "d.json"
    summary = write_degeneracy(edge_file, out_nc, out_json, {"chunk_size": 5})
    assert json.loads(out_json.read_text()) == summary
    assert not list(out_nc.parent.glob("*.tmp")) and not list(out_json.parent.glob("*.tmp"))
    with xr.open_dataset(out_nc) as back:
        assert back["degenerated"].dtype == np.int8
        assert back.attrs["param_chunk_size"] == 5
        assert back.sizes["layer"] == 6


def test_simple_zoo_runs_end_to_end_without_undefined_values(tmp_path):
    p = write_dataset(make_dataset(simple_zoo(), seed=1), tmp_path / "f.nc", chunk=300)
    with xr.open_dataset(p) as ds:
        stats = compute_degeneracy(ds)
    assert np.isfinite(stats["entropy"].values).all()
    assert (stats["degenerated"].values >= 0).all()


# ---- architecture -------------------------------------------------------------------------------

STATS_MODULES = [
    "stats/degeneracy", "stats/shifts", "report/plots", "report/markdown", "dataset/reading"
]


@pytest.mark.parametrize("name", STATS_MODULES)
def test_statistics_modules_never_import_extraction_code(name):
    path = REPO / "filterdb" / f"{name}.py"
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    forbidden = {"torch", "torchvision", "timm", "filterdb.extract.filters", "filterdb.sources",
                 "filterdb.dataset.write", "filterdb.dataset.assemble"}
    assert not {m for m in imported if m.split(".")[0] in {"torch", "torchvision", "timm"}
                or m in forbidden or m.startswith(("filterdb.sources", "filterdb.extract"))}
