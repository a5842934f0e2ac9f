"""The statistics on several threads: same bits as one thread, whatever the scheduling."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import xarray as xr

from filterdb.dataset.reading import default_workers, ordered_map
from filterdb.errors import InputError
from filterdb.stats.accumulators import col_min_max
from filterdb.stats.binning import bin_indices, histogram_edges
from filterdb.stats.compute import compute_stats
from filterdb.stats.degeneracy import compute_degeneracy
from filterdb.stats.shifts import compute_shifts
from tests.conftest_stats import LayerSpec, ModelSpec, make_dataset, simple_zoo, write_dataset


def _zoo() -> list[ModelSpec]:
    """Layers smaller and larger than a chunk, an all-zero and a c_out = 1 layer."""
    models = simple_zoo(5, 4, 8)
    models.append(
        ModelSpec(
            "odd",
            [
                LayerSpec(40, 30, 1, "structured"),
                LayerSpec(8, 8, 1, "zero"),
                LayerSpec(1, 16, 1, "normal"),
                LayerSpec(12, 12, 4, "sparse", scale=list(np.linspace(-2, 2, 12))),
            ],
            {"task": "segmentation", "training": "normal"},
        )
    )
    return models


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("threads")
    return write_dataset(make_dataset(_zoo(), seed=3), folder / "f.nc", chunk=97)


@pytest.mark.parametrize(
    "deg_params, shift_params",
    [
        ({}, {}),
        ({"filters": "folded"}, {"filters": "folded", "sign_rule": "u-based"}),
        ({"chunk_size": 50}, {"population": "all", "chunk_size": 50}),
    ],
)
def test_results_are_bit_identical_for_any_number_of_threads(path, deg_params, shift_params):
    with xr.open_dataset(path) as ds:
        deg1, sh1 = compute_stats(ds, deg_params, shift_params, workers=1)
        for workers in (2, 3, 5):
            deg, sh = compute_stats(ds, deg_params, shift_params, workers=workers)
            xr.testing.assert_identical(deg, deg1)
            xr.testing.assert_identical(sh, sh1)
            for name in ("pca_mean", "pca_components", "explained_variance", "bin_edges"):
                assert sh[name].values.tobytes() == sh1[name].values.tobytes(), name
        xr.testing.assert_identical(compute_degeneracy(ds, deg_params, workers=3), deg1)
        xr.testing.assert_identical(compute_shifts(ds, shift_params, workers=3), sh1)


def test_ordered_map_returns_in_job_order_when_jobs_finish_out_of_order():
    def slow_first(i: int) -> tuple[int, str]:
        time.sleep(0.05 if i == 0 else 0.0)
        return i, threading.current_thread().name

    out = list(ordered_map(slow_first, [(i,) for i in range(7)], workers=3))
    assert [i for i, _ in out] == list(range(7))
    assert all(name.startswith("filterdb-stats") for _, name in out)


def test_ordered_map_raises_a_jobs_error_when_its_result_is_due():
    def fail_on_two(i: int) -> int:
        if i == 2:
            raise ValueError("job 2")
        return i

    got = []
    with pytest.raises(ValueError, match="job 2"):
        for value in ordered_map(fail_on_two, [(i,) for i in range(6)], workers=2):
            got.append(value)
    assert got == [0, 1]


def test_thread_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("FILTERDB_THREADS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("FILTERDB_THREADS", "zero")
    with pytest.raises(InputError, match="FILTERDB_THREADS"):
        default_workers()
    monkeypatch.delenv("FILTERDB_THREADS")
    assert default_workers() >= 1


@pytest.mark.parametrize("n", [1, 127, 128, 1000, 4099])
def test_col_min_max_equals_numpys_reductions(n):
    x = np.random.default_rng(n).normal(size=(n, 9)).astype(np.float32)
    x[n // 2, 3] = np.nan
    lo, hi = col_min_max(x)
    np.testing.assert_array_equal(lo, x.min(axis=0))
    np.testing.assert_array_equal(hi, x.max(axis=0))
    assert lo.dtype == x.dtype


def test_bin_indices_match_numpy_histogram_on_adversarial_edges():
    rng = np.random.default_rng(7)
    for trial in range(300):
        lo, hi = sorted(rng.normal(size=2) * 10.0 ** rng.integers(-9, 5, size=2))
        bins = int(rng.integers(1, 130))
        if trial % 5 == 0:
            hi = lo  # zero width: widened by 0.5 on each side
        edges = histogram_edges(lo, hi, bins)
        near = [np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)]
        x = np.concatenate([edges, *near, rng.uniform(edges[0], edges[-1], 500)])
        x = x[(x >= edges[0]) & (x <= edges[-1])]
        counts = np.bincount(bin_indices(x, edges), minlength=bins)
        np.testing.assert_array_equal(counts, np.histogram(x, bins=bins, range=edges[[0, -1]])[0])
    # outside the range (random-init coefficients): clipped into the end bins
    edges = histogram_edges(-1.0, 1.0, 1)
    assert bin_indices(np.array([-np.inf, -2.0, 2.0, np.inf]), edges).tolist() == [0, 0, 0, 0]
    edges = histogram_edges(-1.0, 1.0, 4)
    assert bin_indices(np.array([-9.0, -1.0, 1.0, 9.0]), edges).tolist() == [0, 0, 3, 3]
