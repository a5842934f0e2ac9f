"""The store writes one CF netCDF per build: readable everywhere, deterministic, atomic."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import netCDF4
import numpy as np
import pytest
import xarray as xr

from filterdb.atomic import atomic_path
from filterdb.dataset.assemble import assemble
from filterdb.dataset.content_hash import content_hash
from filterdb.dataset.tables import StoreError, read_tables
from filterdb.dataset.write import StoreParams, write_model
from filterdb.extract.filters import extract_filters
from filterdb.sources import LoadedModel, load_model
from tests.conftest import TINY_ZOO


@pytest.mark.parametrize("engine", ["netcdf4", "h5netcdf"])
def test_dataset_round_trips_bit_for_bit_through_xarray(tiny_dataset, engine: str) -> None:
    with xr.open_dataset(tiny_dataset, engine=engine) as ds:
        assert ds.sizes["ky"] == ds.sizes["kx"] == 3
        assert ds["weight"].dtype == np.float32
        assert list(ds["model"].values) == list(TINY_ZOO)
        _, layers, _ = read_tables(ds)
        for model_id, entry in TINY_ZOO.items():
            mf = extract_filters(model_id, load_model(model_id, entry))
            rows = layers[layers["model"] == model_id]
            assert list(rows["layer_name"]) == [la.name for la in mf.layers]
            for (_, row), la in zip(rows.iterrows(), mf.layers, strict=True):
                s = row["layer_first_filter"]
                got = ds["weight"][s : s + row["layer_filter_count"]].values
                assert got.tobytes() == la.weight.tobytes()
        assert int(ds["layer_filter_count"].sum()) == ds.sizes["filter"]
        assert ds["layer_filter_count"].attrs["sample_dimension"] == "filter"
        fl = ds["filter_layer"].values
        assert np.array_equal(
            fl, np.repeat(np.arange(ds.sizes["layer"]), ds["layer_filter_count"].values)
        )


def test_cf_attributes_and_coded_categories(tiny_dataset) -> None:
    with xr.open_dataset(tiny_dataset) as ds:
        for key in ("Conventions", "title", "source", "references", "history", "comment"):
            assert ds.attrs[key]
        assert ":" not in ds.attrs["history"].split("filterdb")[0]  # no wall-clock time stamp
        task = ds["task"]
        assert task.dtype == np.int16
        meanings = task.attrs["flag_meanings"].split()
        assert meanings == sorted({e["meta"]["task"] for e in TINY_ZOO.values()})
        for name in ds.variables:
            if name not in ("weight",) and ds[name].dims and "filter" in ds[name].dims:
                assert ds[name].dtype.kind in "iuf", f"{name} is a per-filter string"
            assert "long_name" in ds[name].attrs, name


def test_ncdump_reads_the_header(tiny_dataset) -> None:
    ncdump = shutil.which("ncdump")
    if ncdump is None:
        pytest.skip("ncdump (netcdf-bin) is not installed")
    out = subprocess.run(
        [ncdump, "-h", str(tiny_dataset)], capture_output=True, text=True, check=True
    )
    assert "float weight(filter, ky, kx)" in out.stdout
    assert 'layer_filter_count:sample_dimension = "filter"' in out.stdout


def test_two_builds_give_identical_bytes_and_content_hash(tmp_path, tiny_dataset) -> None:
    shards = []
    for model_id in ("mnist-cnn", "mtcnn-pnet"):
        entry = TINY_ZOO[model_id]
        loaded = load_model(model_id, entry)
        shards.append(
            write_model(
                tmp_path / f"{model_id}.nc",
                extract_filters(model_id, loaded),
                entry["meta"],
                entry["source"],
                loaded.weights,
            )
        )
    a = assemble(shards, tmp_path / "a.nc")
    b = assemble(shards, tmp_path / "b.nc")
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b)]
    assert digest[0] == digest[1]
    assert content_hash(a) == content_hash(b)
    # the content hash ignores storage details (chunking) but not content
    c = assemble(shards, tmp_path / "c.nc", StoreParams(chunk_filters=100, compression="zlib"))
    assert hashlib.sha256(c.read_bytes()).hexdigest() != digest[0]
    assert content_hash(c) == content_hash(a)
    assert content_hash(tiny_dataset) != content_hash(a)


def test_chunks_follow_params(tmp_path, tiny_dataset) -> None:
    with netCDF4.Dataset(tiny_dataset) as nc:
        assert nc.variables["weight"].chunking() == [4096, 3, 3]


def test_failed_write_leaves_no_file_behind(tmp_path) -> None:
    out = tmp_path / "x.nc"
    out.write_text("the previous good version")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert out.read_text() == "the previous good version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nc"]


def test_assemble_rejects_duplicate_model_ids_and_writes_nothing(tmp_path, branchy) -> None:
    mf = extract_filters("same", LoadedModel(module=branchy))
    a = write_model(tmp_path / "a.nc", mf, {}, "timm", "w")
    b = write_model(tmp_path / "b.nc", mf, {}, "timm", "w")
    with pytest.raises(StoreError, match=r"duplicate model id 'same' in .*b\.nc and .*a\.nc"):
        assemble([a, b], tmp_path / "out.nc")
    assert not (tmp_path / "out.nc").exists()
    assert not list(tmp_path.glob(".out.nc*"))


def test_model_without_3x3_layers_is_kept_with_zero_layers(tmp_path, branchy) -> None:
    import torch

    none = extract_filters("none", LoadedModel(module=torch.nn.Conv2d(3, 4, 1)))
    some = extract_filters("some", LoadedModel(module=branchy))
    out = assemble(
        [
            write_model(tmp_path / "n.nc", none, {}, "timm", "w"),
            write_model(tmp_path / "s.nc", some, {}, "timm", "w"),
        ],
        tmp_path / "f.nc",
    )
    with xr.open_dataset(out) as ds:
        models, layers, kc = read_tables(ds)
    assert list(models.index) == ["none", "some"]
    assert models.loc["none", "model_layer_count"] == 0
    assert kc.loc["none", "1x1"] == 12
    assert (layers["model"] == "some").all()


def test_assembling_no_shards_is_an_error(tmp_path) -> None:
    with pytest.raises(StoreError, match="no shards to assemble"):
        assemble([], tmp_path / "out.nc")
    assert not list(tmp_path.iterdir())
