"""The value pass of validation: finite weights, consistent filter_layer, no duplicated models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from filterdb.validate.failures import SchemaValidationError
from filterdb.validate.weights_check import check_weights, layer_hashes
from tests.conftest_stats import LayerSpec, ModelSpec, make_dataset, write_dataset


def _ds(dup: bool = False, seed: int = 0) -> xr.Dataset:
    models = [
        ModelSpec("a", [LayerSpec(4, 3), LayerSpec(8, 4)]),
        ModelSpec("b", [LayerSpec(4, 3), LayerSpec(8, 4)]),
        ModelSpec("c", [LayerSpec(2, 2)]),
    ]
    ds = make_dataset(models, seed=seed)
    if dup:  # model b's filters become a copy of model a's
        w = ds["weight"].values.copy()
        na = 4 * 3 + 8 * 4
        w[na : 2 * na] = w[:na]
        ds["weight"] = (("filter", "ky", "kx"), w)
    return ds


def test_clean_dataset_passes_and_fingerprints_differ() -> None:
    fps = check_weights(_ds())
    assert len(set(fps.values())) == 3


def test_layer_hashes_equal_an_independent_sha256_per_layer() -> None:
    import hashlib

    ds = _ds()
    hashes, failures = layer_hashes(ds, chunk=5)  # chunks cut through layers
    assert failures == []
    w = ds["weight"].values.astype(np.float32)
    firsts, counts = ds["layer_first_filter"].values, ds["layer_filter_count"].values
    expect = [hashlib.sha256(w[f : f + c].tobytes()).hexdigest() for f, c in
              zip(firsts, counts, strict=True)]
    assert hashes == expect


def test_duplicated_model_names_both() -> None:
    with pytest.raises(SchemaValidationError) as err:
        check_weights(_ds(dup=True), chunk=7)
    msg = str(err.value)
    assert "model 'b'" in msg and "same 3x3 weights as model 'a'" in msg


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weight_names_model_and_layer(bad: float) -> None:
    ds = _ds()
    w = ds["weight"].values.copy()
    w[13, 1, 1] = bad  # model a, second layer (starts at filter 12)
    ds["weight"] = (("filter", "ky", "kx"), w)
    with pytest.raises(SchemaValidationError) as err:
        check_weights(ds)
    assert "model 'a', layer 1" in str(err.value) and "NaN/Inf" in str(err.value)


def test_wrong_filter_layer_fails() -> None:
    ds = _ds()
    fl = ds["filter_layer"].values.copy()
    fl[3] = 1
    ds = ds.assign_coords(filter_layer=("filter", fl))
    with pytest.raises(SchemaValidationError, match="filter_layer"):
        check_weights(ds)


def test_check_weights_on_a_real_netcdf_file(tmp_path: Path) -> None:
    path = write_dataset(_ds(dup=True), tmp_path / "dup.nc", chunk=4)
    with xr.open_dataset(path) as ds, pytest.raises(SchemaValidationError, match="model 'b'"):
        check_weights(ds)
    clean = write_dataset(_ds(), tmp_path / "clean.nc", chunk=4)
    with xr.open_dataset(clean) as ds:
        assert set(check_weights(ds)) == {"a", "b", "c"}
