"""The ``keras`` source reads Keras 2 and Keras 3 HDF5 weight files without Keras installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from filterdb.extract.filters import extract_filters
from filterdb.sources import ModelLoadError, list_sources, load_model
from filterdb.sources.keras_reader import read_keras_h5

RNG = np.random.default_rng(0)


def _kernel(kh: int, kw: int, cin: int, cout: int, dtype: Any = np.float32) -> np.ndarray:
    return RNG.standard_normal((kh, kw, cin, cout)).astype(dtype)


def _oihw_rows(kernel: np.ndarray) -> np.ndarray:
    """HWIO kernel -> the (c_out * c_in, kh, kw) rows extraction yields."""
    return kernel.astype(np.float32).transpose(3, 2, 0, 1).reshape(-1, *kernel.shape[:2])


def _v3_file(path: Path, layers: dict[str, list[np.ndarray]]) -> Path:
    with h5py.File(path, "w") as f:
        f.create_group("vars")
        for name, values in layers.items():
            group = f.create_group(f"{name}/vars")
            for i, v in enumerate(values):
                group[str(i)] = v
    return path


def _legacy_group(root: h5py.Group, layers: dict[str, dict[str, np.ndarray]]) -> None:
    root.attrs["layer_names"] = [n.encode() for n in layers]
    root.attrs["backend"] = b"tensorflow"
    root.attrs["keras_version"] = b"2.15.0"
    for name in sorted(layers):  # Keras writes the groups sorted, like h5py lists them
        group = root.create_group(name)
        group.attrs["weight_names"] = [w.encode() for w in layers[name]]
        for wname, value in layers[name].items():
            group[wname] = value


def test_keras_is_a_registered_source() -> None:
    assert "keras" in list_sources()


def test_keras3_weights_file_conv_and_depthwise_bit_exact(tmp_path) -> None:
    conv, dw = _kernel(3, 3, 2, 4), _kernel(3, 3, 4, 2)
    bn = [np.ones(8, np.float32), np.zeros(8, np.float32), np.zeros(8, np.float32)]
    bn.append(np.full(8, 0.5, np.float32))
    path = _v3_file(
        tmp_path / "m.weights.h5",
        {
            "layers/conv2d": [conv, np.zeros(4, np.float32)],
            "layers/depthwise_conv2d": [dw, np.zeros(8, np.float32)],
            "layers/batch_normalization": bn,
            "layers/conv2d_transpose": [_kernel(3, 3, 5, 8), np.zeros(5, np.float32)],
            "optimizer": [np.zeros(()), _kernel(3, 3, 2, 4)],  # Adam slots: not model weights
        },
    )
    loaded = load_model("k3", {"source": "keras", "path": str(path)})
    assert loaded.depth_method == "file-order"
    assert loaded.extra_meta == {
        "package": "none",
        "weight_precision": "float32",
        "bn_folded": "no",
    }
    assert loaded.weights == f"file:{path.as_posix()}"
    assert loaded.n_parameters == conv.size + 4 + dw.size + 8 + 4 * 8 + 3 * 3 * 5 * 8 + 5
    mf = extract_filters("k3", loaded)
    assert [layer.name for layer in mf.layers] == ["layers/conv2d", "layers/depthwise_conv2d"]
    assert [layer.conv_depth for layer in mf.layers] == [0, 1]
    first, second = mf.layers
    assert np.array_equal(first.weight, _oihw_rows(conv))
    assert (first.in_channels, first.out_channels, first.groups) == (2, 4, 1)
    # depthwise [kh, kw, C, m]: output channel c * m + j is kernel[:, :, c, j]
    assert (second.in_channels, second.out_channels, second.groups) == (4, 8, 4)
    expected = np.stack([dw[:, :, c, j] for c in range(4) for j in range(2)])
    assert np.array_equal(second.weight, expected)


def test_keras3_order_is_numeric_within_a_class_and_names_are_used(tmp_path) -> None:
    kernels = {f"layers/conv2d{'' if i == 0 else f'_{i}'}": _kernel(3, 3, 1, 1) for i in range(12)}
    path = _v3_file(tmp_path / "m.weights.h5", {k: [v] for k, v in kernels.items()})
    with h5py.File(path, "a") as f:
        for i, key in enumerate(kernels):
            f[f"{key}/vars"].attrs["name"] = f"c{i}"
    loaded = read_keras_h5(path, "order")
    assert [c.name for c in loaded.convs] == [f"c{i}" for i in range(12)]
    assert [c.depth for c in loaded.convs] == list(range(1, 13))
    assert loaded.extra_meta["bn_folded"] == "unknown"


def test_legacy_weights_only_file_order_follows_layer_names(tmp_path) -> None:
    first, second, third = _kernel(3, 3, 3, 2), _kernel(3, 3, 2, 2), _kernel(1, 1, 4, 3)
    dw = _kernel(3, 3, 2, 2)
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        # layer order differs from the alphabetical group order h5py iterates in
        _legacy_group(
            f,
            {
                "zeta": {"zeta/kernel:0": first, "zeta/bias:0": np.zeros(2, np.float32)},
                "input_1": {},
                "alpha": {"alpha/kernel:0": second},
                "mid_dw": {"mid_dw/depthwise_kernel:0": dw},
                "bn": {
                    f"bn/{w}:0": np.ones(4, np.float32)
                    for w in ("gamma", "beta", "moving_mean", "moving_variance")
                },
                "sep": {
                    "sep/depthwise_kernel:0": _kernel(3, 3, 2, 2),
                    "sep/pointwise_kernel:0": third,
                },
                "up_transpose": {"up_transpose/kernel:0": _kernel(3, 3, 2, 2)},
            },
        )
    loaded = read_keras_h5(path, "legacy")
    assert loaded.depth_method == "file-order"
    assert [(c.name, c.depth, c.groups) for c in loaded.convs] == [
        ("zeta", 1, 1),
        ("alpha", 2, 1),
        ("mid_dw", 3, 2),
        ("sep/depthwise_kernel", 4, 2),
        ("sep/pointwise_kernel", 5, 1),
    ]
    assert loaded.extra_meta == {"weight_precision": "float32", "bn_folded": "no"}
    mf = extract_filters("legacy", loaded)
    assert [layer.name for layer in mf.layers] == [
        "zeta",
        "alpha",
        "mid_dw",
        "sep/depthwise_kernel",
    ]
    assert np.array_equal(mf.layers[0].weight, _oihw_rows(first))
    assert np.array_equal(mf.layers[1].weight, _oihw_rows(second))
    assert mf.kernel_counts == {"1x1": 12, "3x3": 6 + 4 + 4 + 4}


def test_float16_kernels_are_exact_and_recorded(tmp_path) -> None:
    k16 = _kernel(3, 3, 2, 3, np.float16)
    path = tmp_path / "half.weights.h5"
    _v3_file(path, {"layers/conv2d": [k16, np.zeros(3, np.float16)]})
    loaded = read_keras_h5(path)
    assert loaded.extra_meta["weight_precision"] == "float16"
    mf = extract_filters("half", loaded)
    assert mf.layers[0].weight.dtype == np.float32
    assert np.array_equal(mf.layers[0].weight, _oihw_rows(k16))
    _v3_file(path, {"layers/conv2d": [k16], "layers/conv2d_1": [_kernel(3, 3, 3, 3)]})
    assert read_keras_h5(path).extra_meta["weight_precision"] == "mixed"


def test_keras3_bfloat16_dataset_is_widened(tmp_path) -> None:
    value = _kernel(3, 3, 1, 2)
    bits = (value.view(np.uint32) >> 16).astype("<u2")
    path = tmp_path / "bf16.weights.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("layers/conv2d/vars/0", data=bits.view("V2"))
        ds.attrs["dtype"] = "bfloat16"
    loaded = read_keras_h5(path)
    assert loaded.extra_meta["weight_precision"] == "bfloat16"
    widened = (bits.astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(loaded.convs[0].weight, widened.transpose(3, 2, 0, 1))


def _functional(layers: list[dict[str, Any]], inputs: Any, outputs: Any) -> dict[str, Any]:
    return {
        "class_name": "Functional",
        "config": {
            "name": "model",
            "layers": layers,
            "input_layers": inputs,
            "output_layers": outputs,
        },
    }


def _k2(name: str, cls: str, parents: list[str], **cfg: Any) -> dict[str, Any]:
    nodes = [[[p, 0, 0, {}] for p in parents]] if parents else []
    return {
        "class_name": cls,
        "name": name,
        "config": {"name": name, **cfg},
        "inbound_nodes": nodes,
    }


def test_legacy_full_model_depth_from_the_graph(tmp_path) -> None:
    a, b, c = _kernel(3, 3, 3, 4), _kernel(3, 3, 4, 4), _kernel(1, 1, 4, 4)
    d = _kernel(3, 3, 2, 6)  # groups=2: c_in / groups = 2
    config = _functional(
        [
            _k2("input_1", "InputLayer", []),
            _k2("conv_a", "Conv2D", ["input_1"], strides=[2, 2], dilation_rate=[1, 1]),
            _k2("branch_b", "Conv2D", ["conv_a"], dilation_rate=2),
            _k2("branch_c", "Conv2D", ["conv_a"]),
            _k2("add", "Add", ["branch_b", "branch_c"]),
            _k2("conv_d", "Conv2D", ["add"], groups=2, strides=[1, 1]),
            _k2("up", "Conv2DTranspose", ["conv_d"]),
        ],
        [["input_1", 0, 0]],
        [["up", 0, 0]],
    )
    path = tmp_path / "full.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["keras_version"] = b"2.15.0"
        f.attrs["backend"] = b"tensorflow"
        _legacy_group(
            f.create_group("model_weights"),
            {
                "input_1": {},
                # stored in an order unrelated to the graph: the graph decides
                "conv_d": {"conv_d/kernel:0": d},
                "branch_c": {"branch_c/kernel:0": c},
                "branch_b": {"branch_b/kernel:0": b},
                "conv_a": {"conv_a/kernel:0": a, "conv_a/bias:0": np.zeros(4, np.float32)},
                "add": {},
                "up": {"up/kernel:0": _kernel(3, 3, 5, 6)},
            },
        )
        f["optimizer_weights/Adam/conv_a/kernel/m:0"] = np.zeros_like(a)
    loaded = read_keras_h5(path, "graph")
    assert loaded.depth_method == "keras-graph"
    by_name = {conv.name: conv for conv in loaded.convs}
    assert {n: conv.depth for n, conv in by_name.items()} == {
        "conv_a": 1,
        "branch_b": 2,
        "branch_c": 2,
        "conv_d": 3,
    }
    assert by_name["conv_a"].stride == (2, 2)
    assert by_name["branch_b"].dilation == (2, 2)
    assert by_name["conv_d"].groups == 2
    assert loaded.n_parameters == a.size + 4 + b.size + c.size + d.size + 3 * 3 * 5 * 6
    assert loaded.extra_meta["bn_folded"] == "unknown"
    mf = extract_filters("graph", loaded)
    assert [(layer.name, layer.conv_depth) for layer in mf.layers] == [
        ("conv_a", 0),
        ("branch_b", 1),
        ("conv_d", 2),
    ]
    layer_d = mf.layers[2]
    assert (layer_d.in_channels, layer_d.out_channels, layer_d.groups) == (4, 6, 2)
    assert np.array_equal(layer_d.weight, _oihw_rows(d))
    assert mf.kernel_counts == {"1x1": 16, "3x3": 12 + 16 + 12}


def _k3(name: str, cls: str, parents: list[str], **cfg: Any) -> dict[str, Any]:
    def tensor(p: str) -> dict[str, Any]:
        return {"class_name": "__keras_tensor__", "config": {"keras_history": [p, 0, 0]}}

    nodes = [{"args": [[tensor(p) for p in parents]], "kwargs": {}}] if parents else []
    return {
        "class_name": cls,
        "name": name,
        "config": {"name": name, **cfg},
        "inbound_nodes": nodes,
    }


def test_keras3_style_graph_with_a_nested_sequential_and_separable(tmp_path) -> None:
    inner = {
        "class_name": "Sequential",
        "name": "block",
        "config": {
            "name": "block",
            "layers": [
                {"class_name": "InputLayer", "config": {"name": "block_in"}},
                {"class_name": "Conv2D", "config": {"name": "inner_a"}},
                {"class_name": "BatchNormalization", "config": {"name": "inner_bn"}},
                {"class_name": "Conv2D", "config": {"name": "inner_b"}},
            ],
        },
        "inbound_nodes": [
            {
                "args": [
                    {"class_name": "__keras_tensor__", "config": {"keras_history": ["stem", 0, 0]}}
                ]
            }
        ],
    }
    config = _functional(
        [
            _k3("input_layer", "InputLayer", []),
            _k3("stem", "SeparableConv2D", ["input_layer"], strides=[2, 2]),
            inner,
            _k3("side", "DepthwiseConv2D", ["stem"]),
            _k3("concat", "Concatenate", ["block", "side"]),
            _k3("head", "Conv2D", ["concat"]),
        ],
        [["input_layer", 0, 0]],
        [["head", 0, 0]],
    )
    path = tmp_path / "k3legacy.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "3.6.0"
        _legacy_group(
            f.create_group("model_weights"),
            {
                "input_layer": {},
                "stem": {
                    "stem/depthwise_kernel": _kernel(3, 3, 3, 1),
                    "stem/pointwise_kernel": _kernel(1, 1, 3, 8),
                },
                "block": {
                    "block/inner_a/kernel": _kernel(3, 3, 8, 8),
                    "block/inner_bn/moving_variance": np.ones(8, np.float32),
                    "block/inner_b/kernel": _kernel(3, 3, 8, 8),
                },
                "side": {"side/depthwise_kernel": _kernel(3, 3, 8, 1)},
                "concat": {},
                "head": {"head/kernel": _kernel(3, 3, 16, 4)},
            },
        )
    loaded = read_keras_h5(path, "nested")
    assert loaded.depth_method == "keras-graph"
    got = {c.name: (c.depth, c.groups, c.stride) for c in loaded.convs}
    assert got == {
        "stem/depthwise_kernel": (1, 3, (2, 2)),
        "stem/pointwise_kernel": (2, 1, (1, 1)),
        "block/inner_a": (3, 1, (1, 1)),
        "block/inner_b": (4, 1, (1, 1)),
        "side": (3, 8, (1, 1)),
        "head": (5, 1, (1, 1)),
    }
    assert loaded.extra_meta["bn_folded"] == "no"


def test_truncated_file_is_a_clean_error(tmp_path) -> None:
    path = _v3_file(tmp_path / "t.weights.h5", {"layers/conv2d": [_kernel(3, 3, 16, 64)]})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"model 'cut'.*t\.weights\.h5.*truncated"):
        load_model("cut", {"source": "keras", "path": str(path)})


def test_non_hdf5_file_is_a_clean_error(tmp_path) -> None:
    path = tmp_path / "model.h5"
    path.write_text("<html>not found</html>")
    with pytest.raises(ModelLoadError, match=r"model 'html'.*model\.h5 is not an HDF5 file"):
        load_model("html", {"source": "keras", "path": str(path)})


def test_file_without_conv_kernels_is_an_error(tmp_path) -> None:
    path = _v3_file(tmp_path / "mlp.weights.h5", {"layers/dense": [np.ones((4, 2), np.float32)]})
    with pytest.raises(ModelLoadError, match=r"model 'mlp'.*mlp\.weights\.h5 holds no 2-D conv"):
        read_keras_h5(path, "mlp")


def test_unreadable_dataset_is_a_clean_error(tmp_path) -> None:
    path = tmp_path / "ext.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "layers/conv2d/vars/0",
            shape=(3, 3, 1, 1),
            dtype="f4",
            external=[(str(tmp_path / "gone.bin"), 0, 36)],
        )
    with pytest.raises(ModelLoadError, match=r"model 'ext'.*layers/conv2d/vars/0.*ext\.weights"):
        read_keras_h5(path, "ext")
