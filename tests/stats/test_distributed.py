"""The dask driver: results identical to the single-process statistics; extraction fan-out."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from filterdb.stats.compute import compute_stats
from filterdb.stats.distributed import (
    DaskParams,
    compute_stats_dask,
    partitions,
    write_stats_dask,
)
from filterdb.stats.fanout import extract_many
from filterdb.stats.schedulers import scheduler_context
from filterdb.stats.write import write_stats
from tests.conftest import TINY_ZOO
from tests.conftest_stats import LayerSpec, ModelSpec, make_dataset, simple_zoo, write_dataset

CHUNK = 100


def _zoo() -> list[ModelSpec]:
    models = simple_zoo(n_models=5, layers_per_model=4, width=12)
    # edge cases: an all-zero layer, a single-filter layer, a grouped conv, non-finite weights
    models.append(
        ModelSpec(
            "edge",
            [LayerSpec(8, 8, 1, "zero"), LayerSpec(1, 1, 1, "normal"), LayerSpec(8, 8, 4)],
            {"task": "segmentation", "training": "random-init"},
        )
    )
    return models


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    ds = make_dataset(_zoo(), seed=7)
    w = ds["weight"].values.copy()
    w[3, 1, 1] = np.nan  # a non-finite filter (left out of PCA, layer stats NaN)
    ds["weight"] = (("filter", "ky", "kx"), w)
    return write_dataset(ds, tmp_path_factory.mktemp("dist") / "f.nc", chunk=CHUNK)


@pytest.fixture(scope="module")
def reference(data_file) -> tuple[xr.Dataset, xr.Dataset]:
    with xr.open_dataset(data_file) as ds:
        deg, sh = compute_stats(ds)
        return deg.load(), sh.load()


def _assert_same(got: tuple[xr.Dataset, xr.Dataset], ref: tuple[xr.Dataset, xr.Dataset]) -> None:
    # bit-identical, attributes included (NaN == NaN)
    xr.testing.assert_identical(got[0], ref[0])
    xr.testing.assert_identical(got[1], ref[1])


@pytest.mark.parametrize("scheduler", ["synchronous", "threads", None])
@pytest.mark.parametrize("partition_filters", [1, 250, 10**9])
def test_local_schedulers_give_identical_results(
    data_file, reference, scheduler, partition_filters
):
    got = compute_stats_dask(
        data_file, scheduler=scheduler, partition_filters=partition_filters
    )
    _assert_same(got, reference)


def test_local_cluster_gives_identical_results(data_file, reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # by address, as ``--scheduler tcp://host:port`` does
        got = compute_stats_dask(data_file, scheduler=cluster.scheduler_address,
                                 partition_filters=300)
        _assert_same(got, reference)
        # a Client object, and the writer mirroring shifts.write_stats
        summary = write_stats_dask(
            data_file, tmp_path / "deg.nc", tmp_path / "deg.json", tmp_path / "sh.nc",
            scheduler=client, partition_filters=300,
        )
    ref_summary = write_stats(
        data_file, tmp_path / "deg0.nc", tmp_path / "deg0.json", tmp_path / "sh0.nc"
    )
    assert summary == ref_summary
    assert json.loads((tmp_path / "deg.json").read_text()) == ref_summary
    for a, b in (("deg.nc", "deg0.nc"), ("sh.nc", "sh0.nc")):
        with xr.open_dataset(tmp_path / a) as x, xr.open_dataset(tmp_path / b) as y:
            xr.testing.assert_identical(x.load(), y.load())


def test_processes_scheduler_gives_identical_results(data_file, reference):
    _assert_same(compute_stats_dask(data_file, scheduler="processes", partition_filters=400),
                 reference)


def test_default_reference_uses_the_trained_population(reference):
    sh = reference[1]
    assert sh.attrs["population"] == "trained" and sh.attrs["n_filters_projected"] > 0
    assert "random-init" not in list(sh["training"].values)


@pytest.mark.parametrize(
    "shifts_params",
    [{"sign_rule": "u-based"}, {"population": "all"},
     {"population": "all", "sign_rule": "u-based"}],
)
def test_population_and_sign_rule_give_identical_results(data_file, shifts_params):
    with xr.open_dataset(data_file) as ds:
        ref = compute_stats(ds, shifts_params=shifts_params)
    for partition_filters in (1, 250):
        got = compute_stats_dask(data_file, shifts_params=shifts_params, scheduler="synchronous",
                                 partition_filters=partition_filters)
        _assert_same(got, ref)


def test_chunk_size_parameter_is_honoured(data_file):
    with xr.open_dataset(data_file) as ds:
        ref = compute_stats(ds, shifts_params={"chunk_size": 37})
    got = compute_stats_dask(data_file, shifts_params={"chunk_size": 37}, partition_filters=100,
                             scheduler="synchronous")
    _assert_same(got, ref)


def test_partitions_hold_whole_layers_and_cut_near_chunk_multiples():
    rng = np.random.default_rng(0)
    count = rng.integers(0, 300, size=200)
    count[[5, 6, 50]] = 0  # empty layers
    count[100] = 5000  # a layer larger than a partition
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    n = int(count.sum())
    chunk, size = 64, 1000
    parts = partitions(first, count, n, chunk, size)
    assert parts[0].start == 0 and parts[-1].stop == n
    assert parts[0].layer_start == 0 and parts[-1].layer_stop == len(first)
    owned = []
    for a, b in itertools.pairwise(parts):
        assert a.stop == b.start and a.layer_stop == b.layer_start  # contiguous
        assert b.start == first[b.layer_start]  # cut at a layer start: whole layers
    for p in parts:
        ends = first[p.layer_start : p.layer_stop] + count[p.layer_start : p.layer_stop]
        assert np.all(ends <= p.stop)
        owned += list(range(p.chunk_start, p.read_stop, chunk))
    # every on-disk chunk is owned by exactly one partition, in order
    assert owned == list(range(0, n, chunk))
    # cuts are the layer starts nearest to multiples of the (chunk-rounded) size
    rounded = -(-size // chunk) * chunk
    for p in parts[1:]:
        target = round(p.start / rounded) * rounded
        assert np.abs(first - target).min() == abs(p.start - target)


def test_partitions_edge_cases():
    assert [(p.start, p.stop) for p in partitions(np.array([]), np.array([]), 0, 4, 8)] == [
        (0, 0)
    ]
    # cuts exactly at chunk multiples when layers start there
    first, count = np.arange(0, 64, 8), np.full(8, 8)
    parts = partitions(first, count, 64, 8, 16)
    assert [p.start for p in parts] == [0, 16, 32, 48]
    assert all(p.chunk_start == p.start and p.read_stop == p.stop for p in parts)


def test_scheduler_names_and_params():
    with scheduler_context("threads") as kw:
        assert kw == {"scheduler": "threads"}
    with scheduler_context(None) as kw:
        assert kw == {}
    with pytest.raises(ValueError, match="scheduler must be"), scheduler_context("nonsense"):
        pass
    params = DaskParams.from_dict({"scheduler": None, "partition_filters": 10})
    assert params.partition_filters == 10
    with pytest.raises(ValueError, match="unknown key"):
        DaskParams.from_dict({"workers": 2})


def test_extraction_fan_out_is_deterministic(tmp_path):
    """Models extracted in parallel, submitted in a shuffled order, assemble byte-identically."""
    from filterdb.dataset.assemble import assemble
    from filterdb.dataset.write import StoreParams

    store = {"chunk_filters": 4096}
    seq = extract_many(TINY_ZOO, tmp_path / "seq", scheduler="synchronous", store=store)
    order = list(TINY_ZOO)
    random.Random(3).shuffle(order)
    assert order != list(TINY_ZOO)
    par = extract_many(TINY_ZOO, tmp_path / "par", scheduler="processes", store=store,
                       order=order)
    assert [p.stem for p in par] == list(TINY_ZOO)  # zoo order, whatever the completion order
    out_seq = assemble(seq, tmp_path / "seq.nc", StoreParams(chunk_filters=4096))
    out_par = assemble(par, tmp_path / "par.nc", StoreParams(chunk_filters=4096))
    for a, b in zip(seq, par, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert out_seq.read_bytes() == out_par.read_bytes()
