"""`filterdb import-upstream`: CNN Filter DB v1.0.0 layout -> filterdb's dataset.

The tests write small files in the upstream layout themselves: a pandas ``meta`` table
(``DataFrame.to_hdf``, PyTables, MultiIndex model_id/conv_depth/conv_depth_norm/layer_id,
``filter_ids`` "start:end" with an inclusive end) and an h5py ``filters`` dataset (N, 3, 3)
float64 in the same file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from filterdb.dataset.tables import read_tables
from filterdb.validate.layout import validate_dataset
from filterdb.zoo.labels import label_aliases, map_label
from filterdb.zoo.upstream import import_upstream
from filterdb.zoo.upstream_read import UpstreamFormatError
from filterdb.zoo.upstream_tables import ImportReport

pytest.importorskip("tables")

# model-level columns as upstream has them (repeated on every layer row of a model)
MODELS: dict[int, dict[str, Any]] = {
    7: {
        "model": "resnet18_imagenet_11", "Name": "ResNet-18", "Task": "Classification",
        "Datatype": "natural", "Training-Dataset": "ImageNet", "Pretraining-Dataset": np.nan,
        "Network": "ResNet-18", "Backbone": np.nan,
        "(1, 1) filters": 10.0, "(3, 3) filters": 52.0, "(7, 7) filters": 3.0,
    },
    3: {
        "model": "compnet_unet_NITRC_9", "Name": "CompNet", "Task": "Semantic Segmentation",
        "Datatype": "Medical CT", "Training-Dataset": "NITRC", "Pretraining-Dataset": "",
        "Network": "U-Net", "Backbone": "U-Net",
        "(1, 1) filters": 0.0, "(3, 3) filters": 40.0, "(7, 7) filters": 0.0,
    },
    5: {
        "model": "weird model!", "Name": "Odd", "Task": "Weather Forecasting",
        "Datatype": "Faces", "Training-Dataset": "CelebA", "Pretraining-Dataset": "ImageNet",
        "Network": "Custom Net", "Backbone": np.nan,
        "(1, 1) filters": 2.0, "(3, 3) filters": 99.0, "(7, 7) filters": 0.0,
    },
}

# (model_id, conv_depth, layer_id, out_channels, in_channels, n_filters)
LAYERS: list[tuple[int, int, int, Any, Any, int]] = [
    (7, 0, 0, 4, 3, 12),
    (7, 1, 1, 4, 4, 16),
    (7, 1, 2, 4, 4, 4),        # depthwise: groups inferred as 4
    (7, 2, 3, 5, 4, 20),
    (3, 0, 0, 2, 1, 2),
    (3, 1, 1, 3, 2, 6),
    (3, 2, 2, 4, 8, 32),
    (5, 0, 0, np.nan, np.nan, 5),  # no channels: fallback out=1, in=5
    (5, 0, 1, 3, 7, 6),        # inconsistent: out*in=21 is not a multiple of 6 -> in = 6/3
    (5, 1, 2, 2, 2, 4),
]


def _meta_frame(
    layers: list[tuple[int, int, int, Any, Any, int]],
    models: dict[int, dict[str, Any]],
    ranges: list[tuple[int, int]],
) -> pd.DataFrame:
    depths: dict[int, int] = {}
    for mid, depth, *_ in layers:
        depths[mid] = max(depths.get(mid, 0), depth)
    rows = []
    for (mid, depth, lid, out, inn, _), (s, e) in zip(layers, ranges, strict=True):
        norm = depth / depths[mid] if depths[mid] else np.nan
        rows.append(
            {"model_id": mid, "conv_depth": depth, "conv_depth_norm": norm, "layer_id": lid,
             "filter_ids": f"{s}:{e}", "out_channels": out, "in_channels": inn, **models[mid]}
        )
    return pd.DataFrame(rows).set_index(list(("model_id", "conv_depth", "conv_depth_norm",
                                              "layer_id")))


def write_upstream(
    path: Path,
    layers: list[tuple[int, int, int, Any, Any, int]] = LAYERS,
    models: dict[int, dict[str, Any]] = MODELS,
    seed: int = 0,
    fmt: str = "fixed",
    gap: int = 3,
) -> tuple[np.ndarray, dict[tuple[int, int], tuple[int, int]]]:
    """Write an upstream-layout file; return the filters and (model_id, layer_id) -> range.

    Filter ranges are assigned in a shuffled layer order (with ``gap`` unreferenced filters in
    front), and the meta rows are shuffled too, so neither is in filter order.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(layers))
    ranges: list[tuple[int, int]] = [(0, 0)] * len(layers)
    pos = gap
    for i in order:
        n = layers[i][5]
        ranges[i] = (pos, pos + n - 1)  # inclusive end
        pos += n
    filters = rng.standard_normal((pos, 3, 3)) * 0.1 + 1e-9  # not float32-representable
    meta = _meta_frame(layers, models, ranges)
    meta = meta.iloc[rng.permutation(len(meta))]
    meta.to_hdf(path, key="meta", mode="w", format=fmt)
    with h5py.File(path, "a") as f:
        f.create_dataset("filters", data=filters)
    where = {(layers[i][0], layers[i][2]): ranges[i] for i in range(len(layers))}
    return filters, where


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, np.ndarray, dict[tuple[int, int], tuple[int, int]]]:
    path = tmp_path / "dataset.h5"
    filters, where = write_upstream(path)
    return path, filters, where


@pytest.fixture
def converted(
    upstream: tuple[Path, np.ndarray, dict[tuple[int, int], tuple[int, int]]], tmp_path: Path
) -> tuple[Path, ImportReport, np.ndarray, dict[tuple[int, int], tuple[int, int]]]:
    src, filters, where = upstream
    out = tmp_path / "out" / "filters.nc"
    report = import_upstream(src, out, chunk_filters=7)
    return out, report, filters, where


def _tables(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_mask(False)
        return read_tables(nc)


# ----------------------------------------------------------------------------- conversion


def test_converts_and_validates(converted: Any) -> None:
    out, report, _, _ = converted
    with xr.open_dataset(out) as ds:
        validate_dataset(ds, out.name)
        assert ds.sizes["filter"] == sum(n for *_, n in LAYERS)
        assert ds["weight"].dtype == np.float32
        assert ds.attrs["history"].startswith("filterdb ")
        assert "BatchNorm is folded" in ds.attrs["comment"]
        assert "CNN Filter DB v1.0.0" in ds.attrs["source"]
    assert report.n_models == 3
    assert report.n_layers == len(LAYERS)
    assert report.n_filters == sum(n for *_, n in LAYERS)
    assert report.n_filters_unreferenced == 3


def test_model_ids_order_and_provenance(converted: Any) -> None:
    out, report, _, _ = converted
    models, layers, _ = _tables(out)
    # model order: first appearance in the (shuffled) meta rows
    meta = pd.read_hdf(out.parent.parent / "dataset.h5", "meta").reset_index()
    first_seen = list(dict.fromkeys(meta["model_id"]))
    expected_ids = {7: "resnet18_imagenet_11", 3: "compnet_unet_NITRC_9", 5: "weird-model"}
    assert list(models.index) == [expected_ids[m] for m in first_seen]
    assert report.model_ids == {str(k): v for k, v in expected_ids.items()}
    assert models.loc["weird-model", "weights"] == "upstream:cnn-filter-db-v1.0.0:5"
    assert set(models["source"]) == {"upstream"}
    assert set(models["training"]) == {"unknown"}
    assert set(layers["depth_method"]) == {"upstream"}
    # layers by (model order, conv_depth, layer_id)
    keys = [(first_seen.index(int(m)), d, int(n)) for m, d, n in zip(
        [next(k for k, v in expected_ids.items() if v == mid) for mid in layers["model"]],
        layers["conv_depth"], layers["layer_name"], strict=True)]
    assert keys == sorted(keys)
    assert (layers[["stride_y", "stride_x", "dilation_y", "dilation_x"]] == 1).all().all()


def test_weights_equal_float64_source_cast_per_layer(converted: Any) -> None:
    out, report, filters, where = converted
    ids = {v: int(k) for k, v in report.model_ids.items()}
    _, layers, _ = _tables(out)
    with netCDF4.Dataset(out) as nc:
        w = nc.variables["weight"]
        for _, layer in layers.iterrows():
            s, e = where[(ids[layer["model"]], int(layer["layer_name"]))]
            first, n = int(layer["layer_first_filter"]), int(layer["layer_filter_count"])
            assert n == e - s + 1  # the end is inclusive
            got = w[first : first + n]
            np.testing.assert_array_equal(got, filters[s : e + 1].astype(np.float32))


def test_channels_groups_and_fallbacks(converted: Any) -> None:
    out, report, _, _ = converted
    _, layers, _ = _tables(out)
    by = layers.set_index(["model", "layer_name"])
    depthwise = by.loc[("resnet18_imagenet_11", "2")]
    assert (depthwise["in_channels"], depthwise["out_channels"], depthwise["groups"]) == (4, 4, 4)
    none = by.loc[("weird-model", "0")]
    assert (none["in_channels"], none["out_channels"], none["groups"]) == (5, 1, 1)
    bad = by.loc[("weird-model", "1")]
    assert (bad["in_channels"], bad["out_channels"], bad["groups"]) == (2, 3, 1)
    fallbacks = {(f["model"], f["layer_id"]): f for f in report.channel_fallbacks}
    assert set(fallbacks) == {("weird-model", "0"), ("weird-model", "1")}
    assert fallbacks[("weird-model", "1")]["upstream_in_channels"] == 7


def test_labels_mapped_with_corrections(converted: Any) -> None:
    out, report, _, _ = converted
    models, _, kernel_counts = _tables(out)
    resnet, compnet, odd = (models.loc[m] for m in
                            ("resnet18_imagenet_11", "compnet_unet_NITRC_9", "weird-model"))
    assert (resnet["task"], resnet["visual_category"]) == ("classification", "natural")
    assert (resnet["training_dataset"], resnet["pretraining_dataset"]) == ("imagenet-1k", "none")
    assert (resnet["family"], resnet["architecture"]) == ("resnet", "resnet-18")
    # the known upstream label errors
    assert compnet["task"] == "segmentation"
    assert compnet["visual_category"] == "medical-mri"
    assert compnet["family"] == "unet"
    assert {(c.model, c.column, c.value) for c in report.corrections} == {
        ("compnet_unet_NITRC_9", "task", "segmentation"),
        ("compnet_unet_NITRC_9", "visual_category", "medical-mri"),
    }
    # unmappable values fall back and are reported with the models affected
    assert (odd["task"], odd["visual_category"], odd["family"]) == ("unknown", "faces", "other")
    assert odd["pretraining_dataset"] == "imagenet-1k"
    unmapped = {(u.column, u.value): (u.mapped_to, u.models) for u in report.unmapped}
    assert unmapped[("task", "Weather Forecasting")] == ("unknown", ["weird-model"])
    assert unmapped[("training_dataset", "CelebA")] == ("unknown", ["weird-model"])
    assert unmapped[("training_dataset", "NITRC")] == ("unknown", ["compnet_unet_NITRC_9"])
    assert unmapped[("family", "Custom Net")] == ("other", ["weird-model"])
    # kernel counts: 3x3 as imported, other shapes from upstream's "(X, Y) filters"
    assert list(kernel_counts.columns) == ["1x1", "3x3", "7x7"]
    assert kernel_counts.loc["resnet18_imagenet_11"].tolist() == [10, 52, 3]
    assert models.loc["resnet18_imagenet_11", "total_filters"] == 55
    assert {m["model"] for m in report.kernel_count_mismatches} == {"weird-model"}


def test_report_written_as_json(converted: Any) -> None:
    out, report, _, _ = converted
    path = out.with_name(out.name + ".import-report.json")
    data = json.loads(path.read_text())
    assert data == json.loads(report.to_json())
    assert data["n_models"] == 3
    assert any(u["value"] == "Weather Forecasting" for u in data["unmapped"])


@pytest.mark.parametrize(
    ("raw", "column", "expected"),
    [
        ("Classification", "task", "classification"),
        ("Object Detection", "task", "object-detection"),
        ("GAN-Generator", "task", "gan-generator"),
        ("gan_discriminator", "task", "gan-discriminator"),
        ("Super Resolution", "task", "super-resolution"),
        ("Medical CT", "visual_category", "medical-ct"),
        ("X-Ray", "visual_category", "medical-xray"),
        ("  Faces ", "visual_category", "faces"),
        ("Handwritten", "visual_category", "handwriting"),
        ("Weather Forecasting", "task", None),
        (np.nan, "task", None),
    ],
)
def test_map_label(raw: Any, column: str, expected: str | None) -> None:
    from filterdb.validate.schema_files import load_vocabularies

    vocab = load_vocabularies()
    assert map_label(raw, label_aliases(column), vocab[column]) == expected


def test_table_format_and_duplicate_names(tmp_path: Path) -> None:
    models = {
        1: {"model": "net_a", "Task": "Classification", "Datatype": "natural"},
        2: {"model": "net_a", "Task": "Classification", "Datatype": "natural"},
        4: {"model": np.nan, "Task": "Classification", "Datatype": "natural"},
    }
    layers = [(1, 0, 0, 2, 2, 4), (2, 0, 0, 1, 3, 3), (4, 0, 0, 1, 1, 1)]
    src = tmp_path / "dataset.h5"
    write_upstream(src, layers, models, fmt="table", gap=0)
    out = tmp_path / "filters.nc"
    report = import_upstream(src, out)
    # a clash keeps the first model (in meta row order) as is and suffixes the upstream id
    first_seen = list(dict.fromkeys(pd.read_hdf(src, "meta").reset_index()["model_id"]))
    later = [m for m in first_seen if m in (1, 2)][1]
    assert report.model_ids[str(3 - later)] == "net_a"
    assert report.model_ids[str(later)] == f"net_a-{later}"
    assert report.model_ids["4"] == "upstream-4"
    with xr.open_dataset(out) as ds:
        validate_dataset(ds, out.name)
        # single conv depth: upstream's NaN conv_depth_norm becomes 0
        assert (ds["conv_depth_norm"].values == 0).all()
    _, _, kernel_counts = _tables(out)
    assert list(kernel_counts.columns) == ["3x3"]


def test_csv_meta_variant(tmp_path: Path) -> None:
    """Upstream's notebook reads `meta` as a byte array of CSV text; accepted too."""
    src = tmp_path / "dataset.h5"
    filters, _ = write_upstream(src, gap=0)
    meta = pd.read_hdf(src, "meta").reset_index()
    with h5py.File(src, "w") as f:
        f.create_dataset("filters", data=filters.reshape(-1, 9))
        f.create_dataset("meta", data=np.frombuffer(meta.to_csv(index=False).encode(), np.uint8))
    report = import_upstream(src, tmp_path / "filters.nc")
    assert report.n_layers == len(LAYERS)


# ----------------------------------------------------------------------------- bounded memory


def test_reads_never_exceed_chunk_filters(
    upstream: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, _, _ = upstream
    reads: list[int] = []
    original = h5py.Dataset.__getitem__

    def spy(self: h5py.Dataset, key: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, key, *args, **kwargs)
        if self.name == "/filters":
            reads.append(int(np.asarray(result).shape[0]))
        return result

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    chunk = 3
    report = import_upstream(src, tmp_path / "filters.nc", chunk_filters=chunk)
    assert reads, "the filters were not read through h5py"
    assert max(reads) <= chunk
    assert sum(reads) == report.n_filters  # every filter read once, unreferenced ones never


# ----------------------------------------------------------------------------- malformed files


def _no_outputs(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "dataset.h5")


def _break_no_meta(path: Path) -> None:
    filters, _ = write_upstream(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("filters", data=filters)


def _break_no_filters(path: Path) -> None:
    write_upstream(path)
    with h5py.File(path, "a") as f:
        del f["filters"]


def _break_shape(path: Path) -> None:
    filters, _ = write_upstream(path)
    with h5py.File(path, "a") as f:
        del f["filters"]
        f.create_dataset("filters", data=filters.reshape(-1, 3, 3, 1)[:, :, :2, 0])


def _rewrite_meta(path: Path, edit: Any) -> None:
    filters, _ = write_upstream(path)
    meta = edit(pd.read_hdf(path, "meta"))
    meta.to_hdf(path, key="meta", mode="w")
    with h5py.File(path, "a") as f:
        f.create_dataset("filters", data=filters)


def _set_filter_ids(row: int, value: str) -> Any:
    def edit(meta: pd.DataFrame) -> pd.DataFrame:
        meta = meta.copy()
        meta.iloc[row, meta.columns.get_loc("filter_ids")] = value
        return meta

    return edit


def _overlap(meta: pd.DataFrame) -> pd.DataFrame:
    meta = meta.copy()
    col = meta.columns.get_loc("filter_ids")
    start = int(str(meta.iloc[0, col]).split(":")[0])
    meta.iloc[1, col] = f"{start}:{start}"  # inside row 0's range
    return meta


MALFORMED = {
    "no meta": (_break_no_meta, "no 'meta' table"),
    "no filters": (_break_no_filters, "no 'filters' dataset"),
    "wrong shape": (_break_shape, "has shape"),
    "beyond the filters": (
        lambda p: _rewrite_meta(p, _set_filter_ids(0, "100:200")), "beyond the"),
    "end before start": (lambda p: _rewrite_meta(p, _set_filter_ids(0, "9:4")), "end < start"),
    "not start:end": (lambda p: _rewrite_meta(p, _set_filter_ids(0, "[1, 2]")), "'start:end'"),
    "overlapping": (lambda p: _rewrite_meta(p, _overlap), "overlapping"),
    "missing index level": (
        lambda p: _rewrite_meta(p, lambda m: m.reset_index("layer_id", drop=True)), "layer_id"),
    "not hdf5": (lambda p: p.write_text("not hdf5"), "cannot open"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_fail_clearly_without_output(case: str, tmp_path: Path) -> None:
    src = tmp_path / "dataset.h5"
    make, expected = MALFORMED[case]
    make(src)
    out = tmp_path / "filters.nc"
    with pytest.raises(UpstreamFormatError, match=r"not a CNN Filter DB v1\.0\.0 file") as info:
        import_upstream(src, out)
    assert str(src) in str(info.value)
    assert expected in str(info.value)
    assert _no_outputs(tmp_path) == []


def test_failure_while_streaming_leaves_no_output(
    upstream: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, _, _ = upstream

    def boom(self: h5py.Dataset, key: Any) -> Any:
        raise OSError("disk error")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", boom)
    with pytest.raises(OSError, match="disk error"):
        import_upstream(src, tmp_path / "filters.nc")
    assert _no_outputs(tmp_path) == []
