"""`filterdb import-upstream` refuses NaN/Inf weights: one line naming file, model and layer.

The upstream file is written here in the CNN Filter DB v1.0.0 layout (a pandas ``meta`` table
with the MultiIndex ``model_id, conv_depth, conv_depth_norm, layer_id`` and inclusive
``filter_ids`` ranges, plus an h5py float64 ``filters`` array), small enough to read at a glance.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from filterdb.cli import main

pytest.importorskip("tables")

# (model_id, model name, conv_depth, layer_id, n_filters)
LAYERS = [
    (1, "net_a", 0, 0, 3),
    (1, "net_a", 1, 1, 12),
    (2, "net_b", 0, 0, 4),
]


def write_upstream(path: Path, filters: np.ndarray) -> None:
    """Write ``filters`` (float64, (N, 3, 3)) and a ``meta`` table for :data:`LAYERS`."""
    rows, pos = [], 0
    for mid, name, depth, lid, n in LAYERS:
        deepest = max(d for m, _, d, _, _ in LAYERS if m == mid)
        rows.append(
            {
                "model_id": mid,
                "conv_depth": depth,
                "conv_depth_norm": depth / deepest if deepest else np.nan,
                "layer_id": lid,
                "filter_ids": f"{pos}:{pos + n - 1}",  # inclusive end, as upstream
                "model": name,
                "Task": "Classification",
                "Datatype": "natural",
                "Training-Dataset": "ImageNet",
                "Network": "ResNet-18",
                "out_channels": n,
                "in_channels": 1,
            }
        )
        pos += n
    assert filters.shape == (pos, 3, 3)
    meta = pd.DataFrame(rows).set_index(["model_id", "conv_depth", "conv_depth_norm", "layer_id"])
    meta.to_hdf(path, key="meta", mode="w", format="fixed")
    with h5py.File(path, "a") as f:
        f.create_dataset("filters", data=filters)


def _filters() -> np.ndarray:
    n = sum(layer[4] for layer in LAYERS)
    return np.random.default_rng(0).standard_normal((n, 3, 3)) * 0.1


def test_a_finite_file_imports(tmp_path: Path) -> None:
    """The control: the same file without bad values converts (exit 0)."""
    src, out = tmp_path / "dataset.h5", tmp_path / "out" / "upstream.nc"
    write_upstream(src, _filters())
    assert main(["import-upstream", str(src), "--out", str(out), "--chunk-filters", "4"]) == 0
    assert out.is_file()


def test_nonfinite_weights_are_refused_naming_file_model_layer_and_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN, Inf and a float64 value beyond float32's range (Inf once cast) in layer 1 of net_a.

    The bad values lie in three different read blocks (``--chunk-filters 4``): the count covers
    the whole layer, not the first block. The old code wrote them with a RuntimeWarning only.
    """
    filters = _filters()
    first = 3  # net_a's layer 1 starts after layer 0's 3 filters
    filters[first + 1, 0, 0] = np.nan  # block 1
    filters[first + 6] = np.inf  # block 2: 9 values
    filters[first + 11, 2, 2] = 1e300  # block 3: finite in float64, inf as float32
    src, out = tmp_path / "dataset.h5", tmp_path / "out" / "upstream.nc"
    write_upstream(src, filters)
    (tmp_path / "out").mkdir()

    code = main(["import-upstream", str(src), "--out", str(out), "--chunk-filters", "4"])

    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("filterdb: error:")]
    assert len(lines) == 1, err
    message = lines[0]
    assert str(src) in message
    assert "'net_a'" in message and "layer '1'" in message
    assert "11 of 108 weight values are NaN or Inf" in message
    assert "Traceback" not in err
    # no dataset, no report, no temp file
    assert list((tmp_path / "out").iterdir()) == []
