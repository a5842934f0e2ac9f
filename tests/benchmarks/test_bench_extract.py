"""Extraction + write of a large model, against ``numpy.save`` of the same float32 array.

Run with ``pytest tests/benchmarks --benchmark-enable``; the ratio and the throughput are in
``extra_info`` (and printed). Goal (issue 2): at most 2x the time of ``numpy.save``.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from filterdb.dataset.write import write_model
from filterdb.extract.filters import extract_filters
from filterdb.sources import load_model

ARCH = os.environ.get("FILTERDB_BENCH_ARCH", "vgg16")


def _min_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


@pytest.fixture(scope="module")
def loaded():
    return load_model(ARCH, {"source": "timm", "arch": ARCH, "seed": 0})


def test_extract_and_write_vs_numpy_save(benchmark, loaded, tmp_path) -> None:
    out = tmp_path / "shard.nc"

    def extract_and_write() -> int:
        mf = extract_filters(ARCH, loaded)
        write_model(out, mf, {}, "timm", loaded.weights)
        return mf.n_filters_3x3

    n = extract_and_write()
    same = np.concatenate([la.weight for la in extract_filters(ARCH, loaded).layers])
    baseline = _min_time(lambda: np.save(tmp_path / "plain.npy", same), repeat=3)

    benchmark.pedantic(extract_and_write, rounds=3, iterations=1)
    t = benchmark.stats.stats.min if benchmark.stats else _min_time(extract_and_write, 1)
    ratio = t / baseline
    benchmark.extra_info.update(
        arch=ARCH,
        filters=n,
        seconds=t,
        filters_per_second=n / t,
        numpy_save_seconds=baseline,
        ratio_to_numpy_save=ratio,
    )
    print(
        f"\n{ARCH}: {n:,} filters, {n / t:,.0f} filters/s, "
        f"{ratio:.2f}x numpy.save ({baseline:.3f} s)"
    )
    assert out.stat().st_size >= same.nbytes  # the shard holds every filter
