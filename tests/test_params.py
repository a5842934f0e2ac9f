"""Specification of ``filterdb.params``: the typed sections as built from the Python API."""

from __future__ import annotations

import numpy as np
import pytest

from filterdb.dataset.write import StoreParams
from filterdb.params import ParamsError
from filterdb.stats.params import DegeneracyParams, ShiftsParams


def test_numpy_values_build_the_params_their_python_values_build():
    given = {
        "depth_edges": np.arange(11) / 10,  # the defaults, as floats
        "axes": np.array(["task", "depth"]),
        "bins": np.int64(10),
        "n_components": np.int32(3),
        "chunk_size": np.uint16(4096),
        "eps": np.float32(0.5),
    }
    plain = {
        "depth_edges": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        "axes": ["task", "depth"],
        "bins": 10,
        "n_components": 3,
        "chunk_size": 4096,
        "eps": 0.5,
    }
    p, q = ShiftsParams.from_dict(given), ShiftsParams.from_dict(plain)
    assert p == q and hash(p) == hash(q) and repr(p) == repr(q)  # repr: no np.int64 left
    assert p.depth_edges == ShiftsParams().depth_edges and p.axes == ("task", "depth")
    assert type(p.bins) is int and type(p.eps) is float
    assert all(type(e) is float for e in p.depth_edges)
    # the example of the docs, an integer array and a tuple of numpy scalars: floats as a list's
    linspace = ShiftsParams.from_dict({"depth_edges": np.linspace(0, 1, 5)})
    assert linspace == ShiftsParams.from_dict({"depth_edges": [0, 0.25, 0.5, 0.75, 1]})
    ints = ShiftsParams.from_dict({"depth_edges": np.arange(3)})
    assert ints.depth_edges == (0.0, 1.0, 2.0) and type(ints.depth_edges[0]) is float
    mixed = ShiftsParams.from_dict({"depth_edges": (np.float64(0), np.int64(1))})
    assert mixed.depth_edges == (0.0, 1.0)
    # an integer where a float is expected, in the other sections too
    deg = DegeneracyParams.from_dict({"th_a": np.int64(1), "gram_block": np.int64(64)})
    assert deg == DegeneracyParams.from_dict({"th_a": 1, "gram_block": 64})
    assert repr(deg) == repr(DegeneracyParams.from_dict({"th_a": 1, "gram_block": 64}))
    store = StoreParams.from_dict({"chunk_filters": np.int64(1024), "complevel": np.uint8(4)})
    assert store == StoreParams(chunk_filters=1024, complevel=4)
    assert type(store.chunk_filters) is int


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("bins", np.True_, "shifts.bins is True, not an integer"),
        ("bins", np.float64(10.0), "shifts.bins is 10.0, not an integer"),
        ("chunk_size", np.float32(2.5), "shifts.chunk_size is 2.5, not an integer or null"),
        ("eps", np.True_, "shifts.eps is True, not a number"),
        ("depth_edges", np.array([False, True]), r"shifts\.depth_edges is \[False, True\], not a"),
        ("depth_edges", np.array(["0", "1"]), r"shifts\.depth_edges is \['0', '1'\], not a list"),
        ("depth_edges", (np.float64(0), np.True_), r"shifts\.depth_edges is \(0\.0, True\), not"),
        ("depth_edges", np.zeros((2, 2)), r"shifts\.depth_edges is array\(\[\[0\., 0\.\],"),
    ],
)
def test_numpy_values_of_the_wrong_type_are_refused_like_python_ones(key, value, message):
    with pytest.raises(ParamsError, match=message):
        ShiftsParams.from_dict({key: value})
