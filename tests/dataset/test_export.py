"""Zarr export: the same dataset as the netCDF, weights bit for bit, tables equal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.conftest_stats import make_dataset, simple_zoo, write_dataset

pytest.importorskip("zarr")

from filterdb.dataset.export import export_zarr, open_zarr
from filterdb.dataset.tables import read_tables


@pytest.fixture(scope="module")
def nc_file(tmp_path_factory) -> Path:
    ds = make_dataset(simple_zoo(4, 3, 8), seed=5)
    return write_dataset(ds, tmp_path_factory.mktemp("zarr") / "f.nc", chunk=50)


def _attrs(attrs: dict) -> str:
    """Attributes as JSON, arrays as lists (Zarr stores attribute arrays as JSON lists)."""
    return json.dumps({k: np.asarray(v).tolist() for k, v in attrs.items()}, sort_keys=True)


def test_round_trip_equals_the_netcdf(nc_file, tmp_path):
    out = export_zarr(nc_file, tmp_path / "f.zarr")
    assert out == tmp_path / "f.zarr"
    assert (out / ".zmetadata").exists()  # consolidated
    assert not (tmp_path / "f.zarr.tmp").exists()
    with xr.open_dataset(nc_file) as nc:
        z = open_zarr(out)
        a, b = nc["weight"].values, z["weight"].values
        assert a.dtype == b.dtype == np.float32
        assert a.tobytes() == b.tobytes()  # bit-equal
        assert z["weight"].chunks[0][0] == 50  # aligned with the netCDF chunks
        assert set(z.variables) == set(nc.variables)
        assert z.attrs == nc.attrs
        for name in nc.variables:
            np.testing.assert_array_equal(z[name].values, nc[name].values)
            assert _attrs(z[name].attrs) == _attrs(nc[name].attrs)
        for got, ref in zip(read_tables(z), read_tables(nc), strict=True):
            pd.testing.assert_frame_equal(got, ref)


def test_chunking_override_and_replace(nc_file, tmp_path):
    export_zarr(nc_file, tmp_path / "f.zarr")
    out = export_zarr(nc_file, tmp_path / "f.zarr", chunk_filters=128)
    z = open_zarr(out)
    assert z["weight"].chunks[0][0] == 128
    assert z["filter_layer"].chunks[0][0] == 128
