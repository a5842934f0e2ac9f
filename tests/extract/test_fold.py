"""BatchNorm folding kept beside the raw weights: extraction, store, reading and statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import filterdb  # noqa: F401  (registers the accessor)
from filterdb.dataset.assemble import assemble
from filterdb.dataset.content_hash import content_hash
from filterdb.dataset.reading import FoldScales
from filterdb.dataset.tables import StoreError, read_fold, read_tables
from filterdb.dataset.write import write_model
from filterdb.extract.filters import ExtractionError, extract_filters
from filterdb.extract.fold import graph_fold_scales
from filterdb.sources import LoadedModel, load_model
from filterdb.stats.compute import compute_stats
from filterdb.stats.degeneracy import compute_degeneracy
from filterdb.stats.params import DegeneracyParams, ShiftsParams
from filterdb.stats.shifts import compute_shifts
from filterdb.stats.write import write_degeneracy, write_stats
from filterdb.validate.layout import validate_dataset
from tests.conftest_stats import LayerSpec, ModelSpec, make_dataset, simple_zoo, write_dataset

# --------------------------------------------------------------------------------------------
# helpers


def randomise_bn(model: nn.Module, seed: int) -> nn.Module:
    """Random running statistics, gammas (about half negative) and betas, reproducibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                if m.running_var is not None:
                    m.running_mean.copy_(torch.randn(c, generator=g))
                    m.running_var.copy_(torch.rand(c, generator=g) * 3.0 + 0.01)
                if m.weight is not None:
                    m.weight.copy_(torch.randn(c, generator=g))
                    m.bias.copy_(torch.randn(c, generator=g))
    return model.eval()


def torch_fold(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> np.ndarray:
    """The independent fold: ``conv.weight * bn.weight / sqrt(bn.running_var + bn.eps)``."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w = conv.weight * scale.reshape(-1, 1, 1, 1)
    return w.numpy().reshape(-1, 3, 3)


#: Valid meta-parameters for the shards of these tests.
META = {
    "task": "classification",
    "visual_category": "none",
    "training_dataset": "none",
    "pretraining_dataset": "none",
    "architecture": "resnet18",
    "family": "resnet",
    "training": "random-init",
    "weight_precision": "float32",
    "bn_folded": "no",
    "license": "none",
}


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return randomise_bn(torchvision.models.resnet18(weights=None), seed=11)


def resnet18_expected(model: nn.Module, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Raw and independently folded filters of torchvision ResNet-18's 3x3 convs, in order."""
    raw, folded = [], []
    for name in names:
        conv = model.get_submodule(name)
        bn = model.get_submodule(name.replace("conv", "bn"))  # layerX.Y.convK -> layerX.Y.bnK
        raw.append(conv.weight.detach().numpy().reshape(-1, 3, 3))
        folded.append(torch_fold(conv, bn))
    return np.concatenate(raw), np.concatenate(folded)


# --------------------------------------------------------------------------------------------
# extraction


def test_resnet18_folded_filters_equal_torch_bit_for_bit(tmp_path, resnet18) -> None:
    mf = extract_filters("r18", LoadedModel(module=resnet18))
    names = [layer.name for layer in mf.layers]
    assert len(names) == 16 and all(layer.bn_follows for layer in mf.layers)
    raw, expected = resnet18_expected(resnet18, names)
    scales = np.concatenate([layer.fold_scale for layer in mf.layers])
    assert (scales < 0).any() and (scales > 0).any()  # some gammas are negative

    shard = write_model(tmp_path / "r18.nc", mf, META, "timm", "w")
    with xr.open_dataset(shard) as ds:
        got = ds.filterdb.filters(model="r18", folded=True)
        got_raw = ds.filterdb.filters(model="r18")
        assert ds["fold_scale"].dtype == np.float32
        assert ds.sizes["channel"] == sum(layer.out_channels for layer in mf.layers)
        assert ds["bn_follows"].values.tolist() == [1] * 16
        validate_dataset(ds, "r18.nc")
    assert got.dtype == np.float32
    assert np.array_equal(bits(got), bits(expected))
    assert np.array_equal(bits(got_raw), bits(raw))
    assert not np.array_equal(got, got_raw)


def test_folded_selection_of_one_layer_and_chunked_scales_agree(tmp_path, resnet18) -> None:
    mf = extract_filters("r18", LoadedModel(module=resnet18))
    shard = write_model(tmp_path / "r18.nc", mf, META, "timm", "w")
    _, expected = resnet18_expected(resnet18, [layer.name for layer in mf.layers])
    with xr.open_dataset(shard) as ds:
        layers = ds.filterdb.layers()
        li = 5
        s, n = int(layers["layer_first_filter"][li]), int(layers["layer_filter_count"][li])
        assert np.array_equal(
            bits(ds.filterdb.filters(layer=li, folded=True)), bits(expected[s : s + n])
        )
        # any slice, cut anywhere: weight * FoldScales.for_chunk == the independent fold
        fold = FoldScales(ds)
        raw = ds["weight"].values
        for start, stop in [(0, 7), (100, 5000), (s - 3, s + n + 3), (len(raw) - 10, len(raw))]:
            got = fold.apply(start, raw[start:stop])
            assert np.array_equal(bits(got), bits(expected[start:stop]))
        # channels() agrees with the ragged channel index
        ch = ds.filterdb.channels()
        idx = layers["layer_first_channel"].to_numpy()[ch["layer"]] + ch["out_channel"]
        assert np.array_equal(fold.for_chunk(0, len(raw)), ds["fold_scale"].values[idx])


def test_timm_resnet18_gets_scales() -> None:
    pytest.importorskip("timm")
    entry = {"source": "timm", "arch": "resnet18", "seed": 0}
    loaded = load_model("resnet18", entry)
    bn_types = {type(m) for m in loaded.module.modules() if "Norm" in type(m).__name__}
    assert bn_types == {nn.BatchNorm2d}  # timm's resnet18 uses torch's BatchNorm2d
    randomise_bn(loaded.module, seed=3)
    mf = extract_filters("timm-r18", loaded)
    assert len(mf.layers) == 16 and all(layer.bn_follows for layer in mf.layers)
    for layer in mf.layers:
        bn = loaded.module.get_submodule(layer.name.replace("conv", "bn"))
        expected = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
        assert np.array_equal(bits(layer.fold_scale), bits(expected))


class _TimmBlock(nn.Module):
    def __init__(self) -> None:
        from timm.layers import BatchNormAct2d

        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = BatchNormAct2d(8)  # BN + drop + act in one module
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.bn2 = nn.BatchNorm2d(6)  # after a ReLU: not folded into conv2
        self.conv3 = nn.Conv2d(6, 4, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(4, affine=False)  # gamma = 1
        self.conv4 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn4 = nn.BatchNorm2d(4, track_running_stats=False)  # batch statistics: no fold
        self.conv5 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn5 = nn.BatchNorm2d(4)  # conv5 also feeds the residual sum: not folded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        x = self.bn2(self.relu(self.conv2(x)))
        x = self.bn3(self.conv3(x))
        x = self.bn4(self.conv4(x))
        y = self.conv5(x)
        return self.bn5(y) + y


@pytest.mark.parametrize("leaf", [True, False], ids=["leaf", "traced-through"])
def test_timm_batchnormact_conv_relu_bn_and_other_cases(leaf: bool) -> None:
    timm_layers = pytest.importorskip("timm.layers")
    torch.manual_seed(0)
    net = randomise_bn(_TimmBlock(), seed=5)
    leaves = (timm_layers.BatchNormAct2d,) if leaf else ()
    mf = extract_filters("blk", LoadedModel(module=net, leaf_modules=leaves))
    by = {layer.name: layer for layer in mf.layers}
    assert mf.depth_method == "fx"
    assert {n for n, la in by.items() if la.bn_follows} == {"conv1", "conv3"}
    bn1 = net.bn1
    expected1 = (bn1.weight / torch.sqrt(bn1.running_var + bn1.eps)).detach().numpy()
    assert np.array_equal(bits(by["conv1"].fold_scale), bits(expected1))
    expected3 = (1.0 / torch.sqrt(net.bn3.running_var + net.bn3.eps)).numpy()
    assert np.array_equal(bits(by["conv3"].fold_scale), bits(expected3))
    for name in ("conv2", "conv4", "conv5"):
        assert not by[name].bn_follows
        assert np.array_equal(by[name].fold_scale, np.ones(by[name].out_channels, np.float32))


def test_timm_model_with_batchnormact_gets_scales() -> None:
    pytest.importorskip("timm")
    entry = {"source": "timm", "arch": "mobilenetv3_small_050", "seed": 0}
    loaded = load_model("mnv3", entry)
    assert any(type(m).__name__ == "BatchNormAct2d" for m in loaded.module.modules())
    randomise_bn(loaded.module, seed=9)
    mf = extract_filters("mnv3", loaded)
    assert mf.layers and all(layer.bn_follows for layer in mf.layers)
    stem = next(layer for layer in mf.layers if layer.name == "conv_stem")
    bn = loaded.module.bn1
    expected = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    assert np.array_equal(bits(stem.fold_scale), bits(expected))


def test_no_graph_means_no_fold(resnet18) -> None:
    # a state dict (key order) and a conv that runs twice have no single following BN
    mf = extract_filters("sd", LoadedModel(state_dict=resnet18.state_dict()))
    assert mf.depth_method == "key-order"
    assert not any(layer.bn_follows for layer in mf.layers)
    assert all(np.all(layer.fold_scale == 1) for layer in mf.layers)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(self.conv(x)))

    net = randomise_bn(Twice(), 1)
    assert not extract_filters("t", LoadedModel(module=net)).layers[0].bn_follows
    assert graph_fold_scales(torch.fx.Tracer().trace(net), net, ["conv"]) == {}


def test_non_finite_fold_scale_is_an_extraction_error() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, eps=0.0)).eval()
    with torch.no_grad():
        net[1].running_var.zero_()
    with pytest.raises(ExtractionError, match=r"model 'z'.*conv '0'.*non-finite fold scale"):
        extract_filters("z", LoadedModel(module=net))


# --------------------------------------------------------------------------------------------
# store


def test_assemble_keeps_channel_offsets(tmp_path, resnet18, branchy) -> None:
    other = randomise_bn(
        nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 7, 3)), 2
    )
    models = {
        "branchy": extract_filters("branchy", LoadedModel(module=branchy)),
        "r18": extract_filters("r18", LoadedModel(module=resnet18)),
        "small": extract_filters("small", LoadedModel(module=other)),
    }
    shards = [write_model(tmp_path / f"{k}.nc", mf, META, "timm", "w") for k, mf in models.items()]
    out = assemble(shards, tmp_path / "f.nc")
    _, expected = resnet18_expected(resnet18, [la.name for la in models["r18"].layers])
    with xr.open_dataset(out) as ds:
        validate_dataset(ds, "f.nc")
        _, layers, _ = read_tables(ds)
        out_ch = layers["out_channels"].to_numpy()
        assert np.array_equal(
            layers["layer_first_channel"], np.concatenate([[0], np.cumsum(out_ch)[:-1]])
        )
        assert ds.sizes["channel"] == out_ch.sum()
        assert np.array_equal(bits(ds.filterdb.filters(model="r18", folded=True)), bits(expected))
        for model_id, mf in models.items():
            with xr.open_dataset(tmp_path / f"{model_id}.nc") as shard:
                assert np.array_equal(
                    bits(ds.filterdb.filters(model=model_id, folded=True)),
                    bits(shard.filterdb.filters(model=model_id, folded=True)),
                )
            rows = layers[layers["model"] == model_id]
            assert rows["bn_follows"].tolist() == [la.bn_follows for la in mf.layers]
        small = ds.filterdb.filters(model="small", folded=True)
        w0 = other[0].weight.detach().numpy().reshape(-1, 3, 3)
        assert np.array_equal(bits(small[: len(w0)]), bits(torch_fold(other[0], other[1])))
        assert np.array_equal(
            bits(small[len(w0) :]), bits(other[3].weight.detach().numpy().reshape(-1, 3, 3))
        )
        assert ds["fold_scale"].attrs["long_name"]
        assert ds["out_channels"].attrs["sample_dimension"] == "channel"
        assert ds["bn_follows"].attrs["flag_meanings"] == "no yes"
        assert {"layer_first_channel", "bn_follows"} <= set(ds.coords)


def test_zero_layer_dataset_writes_and_validates(tmp_path, branchy) -> None:
    from filterdb.validate.failures import SchemaValidationError

    none = extract_filters("none", LoadedModel(module=nn.Conv2d(3, 4, 1)))
    shard = write_model(tmp_path / "n.nc", none, META, "timm", "w")
    out = assemble([shard], tmp_path / "f.nc")
    fold_names = {"channel", "fold_scale", "layer_first_channel", "bn_follows", "out_channels"}
    for path in (shard, out):
        with xr.open_dataset(path) as ds:
            assert ds.sizes.get("channel", 0) == 0
            assert ds.filterdb.filters(folded=True).shape == (0, 3, 3)
            first, follows, scale = read_fold(ds)
            assert first.size == follows.size == scale.size == 0
            try:  # the empty layer table's string dtypes fail independently of the fold
                validate_dataset(ds, path.name)
            except SchemaValidationError as exc:
                assert not {f.column for f in exc.failures} & fold_names, str(exc)
    # next to a model with layers, the zero-layer model's dataset validates completely
    some = extract_filters("some", LoadedModel(module=branchy))
    mixed = assemble(
        [shard, write_model(tmp_path / "s.nc", some, META, "timm", "w")], tmp_path / "m.nc"
    )
    with xr.open_dataset(mixed) as ds:
        validate_dataset(ds, "m.nc")
        assert ds.sizes["channel"] == sum(la.out_channels for la in some.layers)


def test_files_without_fold_read_as_scale_one(tmp_path, resnet18) -> None:
    mf = extract_filters("r18", LoadedModel(module=resnet18))
    shard = write_model(tmp_path / "r18.nc", mf, META, "timm", "w")
    old = tmp_path / "old.nc"
    with xr.open_dataset(shard) as ds:
        ds.drop_vars(["fold_scale", "layer_first_channel", "bn_follows"]).to_netcdf(old)
    with xr.open_dataset(old) as ds:
        assert "channel" not in ds.sizes
        _, layers, _ = read_tables(ds)
        assert not layers["bn_follows"].any()
        assert FoldScales(ds).trivial
        assert np.array_equal(ds.filterdb.filters(folded=True), ds.filterdb.filters())
    # an old shard assembles next to a new one: its channels are numbered, scale 1
    out = assemble(
        [old, write_model(tmp_path / "b.nc", mf_renamed(mf), META, "timm", "w")], tmp_path / "f.nc"
    )
    with xr.open_dataset(out) as ds:
        validate_dataset(ds, "f.nc")
        n_old = sum(la.out_channels for la in mf.layers)
        assert np.all(ds["fold_scale"].values[:n_old] == 1)
        assert np.array_equal(
            ds["fold_scale"].values[n_old:], np.concatenate([la.fold_scale for la in mf.layers])
        )


def mf_renamed(mf, model_id: str = "r18b"):
    from dataclasses import replace

    return replace(mf, model_id=model_id)


def test_content_hash_covers_the_fold(tmp_path, resnet18) -> None:
    mf = extract_filters("r18", LoadedModel(module=resnet18))
    a = content_hash(write_model(tmp_path / "a.nc", mf, META, "timm", "w"))
    mf.layers[3].fold_scale = mf.layers[3].fold_scale.copy()
    mf.layers[3].fold_scale[0] = np.nextafter(mf.layers[3].fold_scale[0], np.float32(np.inf))
    b = content_hash(write_model(tmp_path / "b.nc", mf, META, "timm", "w"))
    mf.layers[3].bn_follows = False
    c = content_hash(write_model(tmp_path / "c.nc", mf, META, "timm", "w"))
    assert len({a, b, c}) == 3


def test_wrong_fold_scale_is_a_store_error(tmp_path, resnet18) -> None:
    mf = extract_filters("r18", LoadedModel(module=resnet18))
    mf.layers[0].fold_scale = mf.layers[0].fold_scale[:-1]
    with pytest.raises(StoreError, match="fold_scale of dtype float32 shape"):
        write_model(tmp_path / "a.nc", mf, META, "timm", "w")
    mf.layers[0].fold_scale = np.append(mf.layers[0].fold_scale, np.float32(np.nan))
    with pytest.raises(StoreError, match="fold_scale holds 1 NaN/Inf"):
        write_model(tmp_path / "a.nc", mf, META, "timm", "w")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# statistics


def _scaled_zoo() -> list[ModelSpec]:
    """simple_zoo with BN scales on some layers (negative ones included) and a grouped conv."""
    rng = np.random.default_rng(42)
    models = simple_zoo(n_models=4, layers_per_model=3, width=8)
    for m in models[:3]:
        for i, layer in enumerate(m.layers):
            if i != 1:  # layer 1 of every model: no BN
                layer.scale = rng.normal(size=layer.c_out) * 2.0
    models.append(
        ModelSpec(
            "grouped",
            [LayerSpec(8, 8, 4, "structured", scale=-np.arange(1.0, 9.0))],
            {"training": "normal"},
        )
    )
    return models


def _prefolded(ds: xr.Dataset) -> xr.Dataset:
    """The same dataset with weight * scale stored as the weights and every scale 1."""
    fold = FoldScales(ds)
    w = ds["weight"].values
    out = ds.copy()
    out["weight"] = (("filter", "ky", "kx"), fold.apply(0, w))
    out["fold_scale"] = ("channel", np.ones(ds.sizes["channel"], np.float32))
    return out


@pytest.fixture(scope="module")
def scaled(tmp_path_factory) -> Path:
    return write_dataset(
        make_dataset(_scaled_zoo(), seed=4), tmp_path_factory.mktemp("fold") / "f.nc", chunk=50
    )


def test_filters_param_is_validated() -> None:
    for cls, section in ((DegeneracyParams, "degeneracy"), (ShiftsParams, "shifts")):
        assert cls.from_dict({"filters": "folded"}).filters == "folded"
        assert cls().filters == "raw"
        with pytest.raises(
            ValueError,
            match=rf"{section}\.filters must be one of raw, folded; "
            r"got 'fold'",
        ):
            cls.from_dict({"filters": "fold"})
        with pytest.raises(ValueError, match=rf"{section}\.filters is True, not a string"):
            cls.from_dict({"filters": True})


def test_degeneracy_folded_equals_raw_on_prefolded_weights(scaled) -> None:
    with xr.open_dataset(scaled) as ds:
        raw = compute_degeneracy(ds)
        folded = compute_degeneracy(ds, {"filters": "folded"})
        ref = compute_degeneracy(_prefolded(ds.load()))
        follows = ds["bn_follows"].values.astype(bool)
        scale_one = np.array(
            [
                np.all(FoldScales(ds).for_chunk(int(s), int(n)) == 1)
                for s, n in zip(
                    ds["layer_first_filter"].values, ds["layer_filter_count"].values, strict=True
                )
            ]
        )
    assert follows.any() and scale_one.any() and not scale_one.all()
    for name in ("sparsity", "entropy", "orthogonality", "degenerated"):
        np.testing.assert_array_equal(folded[name].values, ref[name].values)
        # identical where all scales are 1, different where the fold rescales channels
        np.testing.assert_array_equal(folded[name].values[scale_one], raw[name].values[scale_one])
    assert not np.allclose(folded["entropy"].values[~scale_one], raw["entropy"].values[~scale_one])
    assert folded.attrs["filters"] == "folded" and raw.attrs["filters"] == "raw"
    assert folded.attrs["param_filters"] == "folded"
    assert "BatchNorm-folded" in folded.attrs["comment"]
    np.testing.assert_array_equal(folded["bn_follows"].values, follows.astype(np.int8))


def test_degeneracy_folded_runs_end_to_end(scaled, tmp_path) -> None:
    summary = write_degeneracy(
        scaled, tmp_path / "d.nc", tmp_path / "d.json", {"filters": "folded"}
    )
    raw = write_degeneracy(scaled, tmp_path / "r.nc", None)
    assert summary["n_layers"] == raw["n_layers"]
    assert summary["entropy_mean_fw"] != raw["entropy_mean_fw"]
    with xr.open_dataset(tmp_path / "d.nc") as d:
        assert d.attrs["filters"] == "folded"


def test_shifts_folded_equals_raw_on_prefolded_weights(scaled) -> None:
    base = {"population": "all", "chunk_size": 50}  # the same reads for the prefolded copy
    with xr.open_dataset(scaled) as ds:
        folded = compute_shifts(ds, {**base, "filters": "folded"})
        raw = compute_shifts(ds, base)
        ref = compute_shifts(_prefolded(ds.load()), base)
    assert folded.attrs["filters"] == "folded" and folded.attrs["param_filters"] == "folded"
    assert raw.attrs["filters"] == "raw"
    for name in ("pca_components", "explained_variance_ratio", "shift_task", "count_family"):
        np.testing.assert_array_equal(folded[name].values, ref[name].values)
    # negative scales flip filters: the peak-scaled distribution changes
    assert not np.array_equal(folded["count_task"].values, raw["count_task"].values)


def test_stats_folded_run_end_to_end(scaled, tmp_path) -> None:
    summary = write_stats(
        scaled,
        tmp_path / "d.nc",
        tmp_path / "d.json",
        tmp_path / "s.nc",
        {"filters": "folded"},
        {"filters": "folded"},
    )
    assert summary["n_layers"] == 13
    with xr.open_dataset(tmp_path / "s.nc") as s, xr.open_dataset(tmp_path / "d.nc") as d:
        assert s.attrs["filters"] == d.attrs["filters"] == "folded"
        assert np.isfinite(s["shift_task"].values).all()


@pytest.mark.parametrize("partition_filters", [1, 120])
def test_dask_folded_equals_single_process(scaled, partition_filters) -> None:
    pytest.importorskip("dask")
    from filterdb.stats.distributed import compute_stats_dask

    dp, sp = {"filters": "folded"}, {"filters": "folded", "chunk_size": 37}
    with xr.open_dataset(scaled) as ds:
        ref = compute_stats(ds, dp, sp)
        raw = compute_stats(ds, None, {"chunk_size": 37})
    got = compute_stats_dask(
        scaled, dp, sp, scheduler="synchronous", partition_filters=partition_filters
    )
    xr.testing.assert_identical(got[0], ref[0])
    xr.testing.assert_identical(got[1], ref[1])
    assert not np.array_equal(got[0]["entropy"].values, raw[0]["entropy"].values)
