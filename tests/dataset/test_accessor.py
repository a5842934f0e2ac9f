"""``ds.filterdb`` answers everyday questions in one line, equal to plain slicing."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import filterdb  # noqa: F401  (registers the accessor)
from tests.conftest import TINY_ZOO


@pytest.fixture
def ds(tiny_dataset):
    with xr.open_dataset(tiny_dataset) as ds:
        yield ds


def _by_hand(ds: xr.Dataset, keep: np.ndarray) -> np.ndarray:
    """Filters of the layers in ``keep``, via the per-filter coordinate only."""
    mask = np.isin(ds["filter_layer"].values, np.flatnonzero(keep))
    return ds["weight"].values[mask]


def test_models_table_has_decoded_meta_parameters(ds) -> None:
    models = ds.filterdb.models()
    assert list(models.index) == list(TINY_ZOO)
    for model_id, entry in TINY_ZOO.items():
        for key, value in entry["meta"].items():
            assert models.loc[model_id, key] == value
        assert models.loc[model_id, "source"] == entry["source"]


def test_handwriting_filters_in_the_first_depth_decile_in_one_line(ds) -> None:
    got = ds.filterdb.filters(visual_category="handwriting", decile=0)
    layers = ds.filterdb.layers()
    keep = (layers["visual_category"] == "handwriting") & (layers["conv_depth_norm"] <= 0.1)
    assert got.shape == (32, 3, 3)  # the MNIST CNN's first conv: 32 x 1 filters
    assert np.array_equal(got, _by_hand(ds, keep.to_numpy()))


@pytest.mark.parametrize(
    "criteria",
    [
        {"model": "mtcnn-pnet"},
        {"model": ["mnist-cnn", "resnet-random"]},
        {"layer": [0, 5, 6]},
        {"training": "random-init"},
        {"family": "resnet", "depth": (0.5, 1.0)},
        {"task": "face-detection", "decile": 2},
    ],
)
def test_selections_equal_selection_by_hand(ds, criteria) -> None:
    layers = ds.filterdb.layers()
    keep = np.ones(len(layers), dtype=bool)
    for key, value in criteria.items():
        values = value if isinstance(value, list) else [value]
        if key == "layer":
            keep &= np.isin(layers.index, values)
        elif key in ("depth", "decile"):
            lo, hi = value if key == "depth" else (value / 10, value / 10 + 0.1)
            d = layers["conv_depth_norm"]
            keep &= ((d > lo) | ((lo == 0) & (d == 0))) & (d <= hi)
        else:
            keep &= layers[key].isin(values).to_numpy()
    got = ds.filterdb.filters(**criteria)
    assert keep.any()
    assert np.array_equal(got, _by_hand(ds, np.asarray(keep)))


def test_unknown_model_or_meta_parameter_is_an_error(ds) -> None:
    with pytest.raises(KeyError, match="unknown model"):
        ds.filterdb.filters(model="nope")
    with pytest.raises(KeyError, match="unknown meta-parameter 'colour'"):
        ds.filterdb.filters(colour="red")


def test_channels_follow_torch_row_major_order(ds) -> None:
    layers = ds.filterdb.layers()
    i = int(np.flatnonzero(layers["groups"] > 1)[0]) if (layers["groups"] > 1).any() else 1
    row = layers.iloc[i]
    ch = ds.filterdb.channels(layer=i)
    g = row["in_channels"] // row["groups"]
    assert len(ch) == row["layer_filter_count"]
    assert ch.index[0] == row["layer_first_filter"]
    assert ch["out_channel"].max() == row["out_channels"] - 1
    assert ch["in_channel"].max() == g - 1
    k = 5 % len(ch)
    assert (ch["out_channel"].iloc[k], ch["in_channel"].iloc[k]) == (k // g, k % g)
    assert len(ds.filterdb.channels()) == ds.sizes["filter"]


def test_a_meta_value_the_dataset_lacks_is_an_error_listing_what_it_has(ds) -> None:
    with pytest.raises(
        KeyError, match=r"unknown visual_category\(s\): \['handwritting'\].*handwriting"
    ):
        ds.filterdb.filters(visual_category="handwritting")
