"""The ``tfjs`` source reads TF.js model.json files with binary shards written here."""

from __future__ import annotations

import base64
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from filterdb.extract.filters import extract_filters
from filterdb.sources import ModelLoadError, list_sources, load_model
from filterdb.sources.tfjs_reader import read_tfjs

RNG = np.random.default_rng(0)


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


class _Weights:
    """Encodes weights one after the other into the bytes of one manifest group."""

    def __init__(self) -> None:
        self.data = b""
        self.specs: list[dict[str, Any]] = []

    def float32(self, name: str, a: np.ndarray) -> _Weights:
        self.data += np.asarray(a, "<f4").tobytes()
        self.specs.append({"name": name, "shape": list(a.shape), "dtype": "float32"})
        return self

    def float16(self, name: str, a: np.ndarray) -> _Weights:
        self.data += np.asarray(a, "<f2").tobytes()
        q = {"dtype": "float16"}
        self.specs.append(
            {"name": name, "shape": list(a.shape), "dtype": "float32", "quantization": q}
        )
        return self

    def affine(self, name: str, q: np.ndarray, lo: float, scale: float, bits: int = 8) -> _Weights:
        self.data += np.asarray(q, "<u1" if bits == 8 else "<u2").tobytes()
        quant = {"dtype": f"uint{bits}", "min": lo, "scale": scale, "original_dtype": "float32"}
        self.specs.append(
            {"name": name, "shape": list(q.shape), "dtype": "float32", "quantization": quant}
        )
        return self

    def raw(self, name: str, shape: list[int], dtype: str, data: bytes) -> _Weights:
        self.data += data
        self.specs.append({"name": name, "shape": shape, "dtype": dtype})
        return self


def _write(
    folder: Path,
    topology: dict[str, Any],
    groups: list[_Weights],
    fmt: str = "graph-model",
    shard_bytes: int | None = None,
) -> Path:
    """Write ``model.json`` and the groups' shards (split every ``shard_bytes``)."""
    manifest = []
    for gi, g in enumerate(groups):
        step = shard_bytes or max(len(g.data), 1)
        chunks = [g.data[i : i + step] for i in range(0, len(g.data), step)] or [b""]
        paths = []
        for si, chunk in enumerate(chunks):
            p = f"group{gi + 1}-shard{si + 1}of{len(chunks)}.bin"
            (folder / p).write_bytes(chunk)
            paths.append(p)
        manifest.append({"paths": paths, "weights": g.specs})
    doc = {
        "format": fmt,
        "generatedBy": "test",
        "convertedBy": "TensorFlow.js Converter v4.0.0",
        "modelTopology": topology,
        "weightsManifest": manifest,
    }
    path = folder / "model.json"
    path.write_text(json.dumps(doc))
    return path


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _node(name: str, op: str, inputs: list[str] = (), **attr: Any) -> dict[str, Any]:
    return {"name": name, "op": op, "input": list(inputs), "attr": attr}


def _conv(
    name: str,
    x: str,
    filt: str,
    op: str = "Conv2D",
    strides: tuple[int, int] = (1, 1),
    dilations: tuple[int, int] = (1, 1),
    fmt: str = "NHWC",
    extra: list[str] = (),
    fused: list[str] = (),
) -> dict[str, Any]:
    def four(yx: tuple[int, int]) -> dict[str, Any]:
        v = [1, *yx, 1] if fmt == "NHWC" else [1, 1, *yx]
        return {"list": {"i": [str(i) for i in v]}}

    attr: dict[str, Any] = {
        "strides": four(strides),
        "dilations": four(dilations),
        "data_format": {"s": _b64(fmt)},
        "padding": {"s": _b64("SAME")},
    }
    if fused:
        attr["fused_ops"] = {"list": {"s": [_b64(f) for f in fused]}}
        attr["num_args"] = {"i": str(len(extra))}
    return _node(name, op, [x, filt, *extra], **attr)


def _graph(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"node": [_node("x", "Placeholder"), *nodes], "versions": {"producer": 1}}


def _consts(*names: str) -> list[dict[str, Any]]:
    return [_node(n, "Const") for n in names]


def _load(path: Path, model_id: str = "m"):
    return load_model(model_id, {"source": "tfjs", "path": str(path)})


def _oihw(hwio: np.ndarray) -> np.ndarray:
    """Reference HWIO -> OIHW by explicit indexing."""
    kh, kw, ci, co = hwio.shape
    out = np.empty((co, ci, kh, kw), np.float32)
    for o in range(co):
        for i in range(ci):
            out[o, i] = hwio[:, :, i, o]
    return out


def test_tfjs_is_a_registered_source() -> None:
    assert "tfjs" in list_sources()


def test_graph_model_filters_are_bit_exact_oihw(tmp_path: Path) -> None:
    k1, k2, bias = _w(3, 3, 4, 8), _w(3, 3, 8, 6), _w(6)
    k1[0, 0, 0, 0] = np.float32(1e-40)  # a subnormal survives bit for bit
    group = _Weights().float32("c1/w", k1).float32("c2/w", k2).float32("c2/b", bias)
    topo = _graph(
        *_consts("c1/w", "c2/w", "c2/b"),
        _conv("c1", "x", "c1/w", strides=(2, 1)),
        _node("c1/relu", "Relu", ["c1"]),
        _conv("c2", "c1/relu", "c2/w", op="_FusedConv2D", extra=["c2/b"], fused=["BiasAdd"]),
    )
    loaded = _load(_write(tmp_path, topo, [group]))
    assert loaded.depth_method == "tfjs-graph"
    assert loaded.extra_meta["weight_precision"] == "float32"
    assert loaded.extra_meta["bn_folded"] == "yes"
    assert loaded.extra_meta["package"] == "none"
    assert loaded.weights.startswith("file:") and loaded.weights.endswith("model.json")
    assert loaded.n_parameters == k1.size + k2.size + bias.size
    mf = extract_filters("m", loaded)
    assert [(la.name, la.conv_depth, la.stride) for la in mf.layers] == [
        ("c1", 0, (2, 1)),
        ("c2", 1, (1, 1)),
    ]
    for layer, k in zip(mf.layers, (k1, k2), strict=True):
        np.testing.assert_array_equal(_bits(layer.weight), _bits(_oihw(k).reshape(-1, 3, 3)))
        assert (layer.in_channels, layer.out_channels, layer.groups) == (k.shape[2], k.shape[3], 1)


def _f16_reference(h: int) -> float:
    """IEEE half -> float from its bits, independent of numpy's cast."""
    sign = -1.0 if h >> 15 else 1.0
    exp, frac = (h >> 10) & 0x1F, h & 0x3FF
    if exp == 0:
        return sign * math.ldexp(frac, -24)
    if exp == 31:
        return sign * math.inf if frac == 0 else math.nan
    return sign * math.ldexp(1024 + frac, exp - 25)


def test_float16_and_uint8_dequantization_match_tfjs(tmp_path: Path) -> None:
    halves = np.arange(0, 0x7C00, 43, dtype=np.uint16)[: 3 * 3 * 2 * 40]  # normal + subnormal
    halves[1::2] |= 0x8000
    k16 = halves.view(np.float16).reshape(3, 3, 2, 40)
    q8 = RNG.integers(0, 256, (3, 3, 5, 7), dtype=np.uint8)
    q16 = RNG.integers(0, 65536, (3, 3, 1, 3), dtype=np.uint16)
    lo, scale = -0.3712894551, 0.0029174131
    group = (
        _Weights()
        .float16("a/w", k16)
        .affine("b/w", q8, lo, scale)
        .affine("c/w", q16, 0.1, 1.3e-5, bits=16)
    )
    topo = _graph(
        *_consts("a/w", "b/w", "c/w"),
        _conv("a", "x", "a/w"),
        _conv("b", "x", "b/w"),
        _conv("c", "x", "c/w"),
    )
    loaded = _load(_write(tmp_path, topo, [group]))
    assert loaded.extra_meta["weight_precision"] == "mixed"
    assert loaded.extra_meta["bn_folded"] == "unknown"
    w = {c.name: c.weight for c in loaded.convs}
    ref16 = np.array([_f16_reference(int(h)) for h in halves], np.float32).reshape(k16.shape)
    np.testing.assert_array_equal(_bits(w["a"]), _bits(_oihw(ref16)))
    # tfjs: `values[i] = v * scale + min` in doubles, then stored into a Float32Array
    ref8 = np.array([float(v) * scale + lo for v in q8.ravel()]).astype(np.float32)
    np.testing.assert_array_equal(_bits(w["b"]), _bits(_oihw(ref8.reshape(q8.shape))))
    ref16a = np.array([float(v) * 1.3e-5 + 0.1 for v in q16.ravel()]).astype(np.float32)
    np.testing.assert_array_equal(_bits(w["c"]), _bits(_oihw(ref16a.reshape(q16.shape))))
    # rounding in float32 arithmetic instead would differ somewhere
    f32 = (q8.astype(np.float32) * np.float32(scale) + np.float32(lo)).ravel()
    assert not np.array_equal(f32, ref8)


@pytest.mark.parametrize(
    ("op", "precision", "build"),
    [
        ("DepthwiseConv2dNative", "float16", "float16"),
        ("FusedDepthwiseConv2dNative", "uint8-affine", "affine"),
    ],
)
def test_depthwise_multiplier_2_layout(tmp_path: Path, op: str, precision: str, build: str) -> None:
    c, m = 3, 2
    if build == "float16":
        k = _w(3, 3, c, m).astype(np.float16)
        group = _Weights().float16("dw/w", k)
        expect = k.astype(np.float32)
    else:
        q = RNG.integers(0, 256, (3, 3, c, m), dtype=np.uint8)
        group = _Weights().affine("dw/w", q, -1.0, 0.0078125).float32("dw/b", _w(c * m))
        expect = (q.astype(np.float64) * 0.0078125 - 1.0).astype(np.float32)
    fused = {"fused": ["BiasAdd", "Relu6"], "extra": ["dw/b"]} if op.startswith("Fused") else {}
    topo = _graph(
        *_consts("dw/w", "dw/b"), _conv("dw", "x", "dw/w", op=op, dilations=(2, 2), **fused)
    )
    loaded = _load(_write(tmp_path, topo, [group]))
    assert loaded.extra_meta["weight_precision"] == precision
    (layer,) = extract_filters("m", loaded).layers
    assert (layer.groups, layer.in_channels, layer.out_channels) == (c, c, c * m)
    assert layer.dilation == (2, 2)
    for ch in range(c):
        for mult in range(m):  # TF's output channel order: c * multiplier + m
            np.testing.assert_array_equal(layer.weight[ch * m + mult], expect[:, :, ch, mult])


def test_shards_and_groups_are_concatenated_in_order(tmp_path: Path) -> None:
    k1, k2, k3 = _w(3, 3, 2, 5), _w(3, 3, 5, 4).astype(np.float16), _w(1, 1, 4, 4)
    # a string, bools and int32s before the kernels: their bytes are skipped correctly
    strings = b"".join(struct.pack("<I", len(s)) + s for s in (b"ab", b"", b"xyz\xc3\xa9"))
    g1 = (
        _Weights()
        .raw("names", [3], "string", strings)
        .raw("flags", [3], "bool", b"\x01\x00\x01")
        .float32("k1", k1)
        .raw("shape", [2], "int32", np.array([4, -1], "<i4").tobytes())
        .float16("k2", k2)
    )
    g2 = _Weights().float32("k3", k3)
    topo = _graph(
        *_consts("names", "flags", "shape", "k1", "k2", "k3"),
        _conv("c1", "x", "k1"),
        _node("k2/read", "Identity", ["k2"]),
        _conv("c2", "c1:0", "k2/read:0"),
        _conv("c3", "c2", "k3"),
    )
    path = _write(tmp_path, topo, [g1, g2], shard_bytes=37)  # kernels straddle shard ends
    assert len(json.loads(path.read_text())["weightsManifest"][0]["paths"]) > 3
    loaded = _load(path)
    w = {c.name: c.weight for c in loaded.convs}
    np.testing.assert_array_equal(_bits(w["c1"]), _bits(_oihw(k1)))
    np.testing.assert_array_equal(_bits(w["c2"]), _bits(_oihw(k2.astype(np.float32))))
    np.testing.assert_array_equal(_bits(w["c3"]), _bits(_oihw(k3)))
    assert loaded.extra_meta["weight_precision"] == "mixed"
    assert loaded.n_parameters == 3 + 3 + k1.size + 2 + k2.size + k3.size


def test_depth_on_a_branching_graph(tmp_path: Path) -> None:
    names = ["a", "b", "c", "d", "e", "t"]
    group = _Weights()
    for n in names:
        group.float32(f"{n}/w", _w(3, 3, 4, 4))
    topo = _graph(
        *_consts(*(f"{n}/w" for n in names), "shape"),
        _conv("e", "sum", "e/w"),  # nodes out of topological order
        _conv("a", "x", "a/w"),
        _conv("b", "a", "b/w"),  # parallel branches share a depth
        _conv("c", "a", "c/w"),
        _node("c/relu", "Relu", ["c"]),
        _conv("d", "c/relu", "d/w"),
        _node("sum", "AddV2", ["b", "d", "^a"]),
        # a transposed conv passes the depth through without counting
        _node("t", "Conv2DBackpropInput", ["shape", "t/w", "e"]),
    )
    loaded = _load(_write(tmp_path, topo, [group]))
    assert {c.name: c.depth for c in loaded.convs} == {"e": 4, "a": 1, "b": 2, "c": 2, "d": 3}
    mf = extract_filters("m", loaded)
    assert [(la.name, la.conv_depth) for la in mf.layers] == [
        ("a", 0),
        ("b", 1),
        ("c", 1),
        ("d", 2),
        ("e", 3),
    ]


def test_bn_after_a_conv_means_not_folded(tmp_path: Path) -> None:
    group = _Weights().float32("k", _w(3, 3, 2, 2)).float32("k2", _w(3, 3, 2, 2))
    topo = _graph(
        *_consts("k", "k2", "bias", "s", "o", "mu", "var"),
        _conv("c", "x", "k"),
        _node("c/bias", "BiasAdd", ["c", "bias"]),
        _node("bn", "FusedBatchNormV3", ["c/bias", "s", "o", "mu", "var"]),
        _conv("c2", "bn", "k2", op="_FusedConv2D", extra=["bias"], fused=["BiasAdd"]),
    )
    assert _load(_write(tmp_path, topo, [group])).extra_meta["bn_folded"] == "no"


def _conv_layer(cls: str, name: str, inbound: list[str], **cfg: Any) -> dict[str, Any]:
    return {
        "class_name": cls,
        "name": name,
        "config": {"name": name, "strides": [1, 1], "dilation_rate": [1, 1], **cfg},
        "inbound_nodes": [[[i, 0, 0, {}] for i in inbound]] if inbound else [],
    }


def test_layers_model_functional(tmp_path: Path) -> None:
    k_stem, k_dw, k_sep_dw, k_sep_pw, k_tail = (
        _w(3, 3, 3, 4),
        _w(3, 3, 4, 2),
        _w(3, 3, 4, 1),
        _w(1, 1, 4, 8),
        _w(3, 3, 8, 2),
    )
    group = (
        _Weights()
        .float32("stem/kernel", k_stem)
        .float32("stem/bias", _w(4))
        .float32("bn/gamma", _w(4))
        .float32("dw/depthwise_kernel", k_dw)
        .float32("sep/depthwise_kernel", k_sep_dw)
        .float32("sep/pointwise_kernel", k_sep_pw)
        .float32("tail/kernel", k_tail)
    )
    layers = [
        {"class_name": "InputLayer", "name": "in", "config": {"name": "in"}, "inbound_nodes": []},
        _conv_layer("Conv2D", "stem", ["in"], strides=[2, 2]),
        _conv_layer("BatchNormalization", "bn", ["stem"]),
        _conv_layer("DepthwiseConv2D", "dw", ["bn"], depth_multiplier=2),
        _conv_layer("SeparableConv2D", "sep", ["bn"], dilation_rate=2),
        _conv_layer("Concatenate", "cat", ["dw", "sep"]),
        _conv_layer("Conv2D", "tail", ["cat"]),
        _conv_layer("Conv2DTranspose", "up", ["tail"]),
    ]
    topo = {
        "keras_version": "2.11.0",
        "backend": "tensorflow",
        "model_config": {
            "class_name": "Functional",
            "config": {
                "name": "model",
                "layers": layers,
                "input_layers": [["in", 0, 0]],
                "output_layers": [["up", 0, 0]],
            },
        },
    }
    loaded = _load(_write(tmp_path, topo, [group], fmt="layers-model"))
    assert loaded.depth_method == "keras-graph"
    assert loaded.extra_meta["bn_folded"] == "no"
    assert loaded.extra_meta["weight_precision"] == "float32"
    convs = {c.name: c for c in loaded.convs}
    assert {n: c.depth for n, c in convs.items()} == {
        "stem": 1,
        "dw": 2,
        "sep/depthwise": 2,
        "sep/pointwise": 3,
        "tail": 4,
    }
    assert convs["stem"].stride == (2, 2) and convs["sep/depthwise"].dilation == (2, 2)
    np.testing.assert_array_equal(_bits(convs["stem"].weight), _bits(_oihw(k_stem)))
    assert convs["dw"].groups == 4 and convs["dw"].weight.shape == (8, 1, 3, 3)
    np.testing.assert_array_equal(convs["dw"].weight[2 * 1 + 1, 0], k_dw[:, :, 1, 1])
    mf = extract_filters("m", loaded)
    assert [la.name for la in mf.layers] == ["stem", "dw", "sep/depthwise", "tail"]
    assert mf.kernel_counts == {"1x1": 32, "3x3": 12 + 8 + 4 + 16}


def test_layers_model_sequential_without_bn(tmp_path: Path) -> None:
    k1, k2 = _w(3, 3, 1, 2), _w(3, 3, 2, 2).astype(np.float16)
    group = _Weights().float32("conv2d_Conv2D1/kernel", k1).float16("conv2d_Conv2D2/kernel", k2)
    layers = [
        {"class_name": "Conv2D", "config": {"name": "conv2d_Conv2D1", "strides": [1, 1]}},
        {"class_name": "MaxPooling2D", "config": {"name": "pool"}},
        {"class_name": "Conv2D", "config": {"name": "conv2d_Conv2D2", "strides": 2}},
    ]
    topo = {"class_name": "Sequential", "config": {"name": "seq", "layers": layers}}
    loaded = _load(_write(tmp_path, topo, [group], fmt="layers-model"))
    assert [(c.name, c.depth, c.stride) for c in loaded.convs] == [
        ("conv2d_Conv2D1", 1, (1, 1)),
        ("conv2d_Conv2D2", 2, (2, 2)),
    ]
    assert loaded.extra_meta["bn_folded"] == "no-bn"
    assert loaded.extra_meta["weight_precision"] == "mixed"


def _simple(tmp_path: Path, shard_bytes: int | None = None) -> Path:
    group = _Weights().float32("k1", _w(3, 3, 2, 2)).float32("k2", _w(3, 3, 2, 2))
    topo = _graph(*_consts("k1", "k2"), _conv("c1", "x", "k1"), _conv("c2", "c1", "k2"))
    return _write(tmp_path, topo, [group], shard_bytes=shard_bytes)


def test_truncated_shard_is_an_error_with_byte_counts(tmp_path: Path) -> None:
    path = _simple(tmp_path)
    shard = tmp_path / "group1-shard1of1.bin"
    shard.write_bytes(shard.read_bytes()[:-5])
    with pytest.raises(ModelLoadError, match=r"'m'.*model\.json.*hold 283 bytes.*expects 288"):
        _load(path)


def test_missing_shard_is_an_error(tmp_path: Path) -> None:
    path = _simple(tmp_path, shard_bytes=100)
    (tmp_path / "group1-shard2of3.bin").unlink()
    with pytest.raises(ModelLoadError, match=r"'m'.*model\.json.*group1-shard2of3\.bin.*missing"):
        _load(path)


def test_unknown_op_feeding_a_conv_is_an_error(tmp_path: Path) -> None:
    group = _Weights().float32("k", _w(3, 3, 2, 2))
    topo = _graph(
        *_consts("k", "two"),
        _node("k/scaled", "Mul", ["k", "two"]),
        _conv("c", "x", "k/scaled"),
    )
    with pytest.raises(ModelLoadError, match=r"'m'.*conv 'c'.*Mul node 'k/scaled'.*not a weight"):
        _load(_write(tmp_path, topo, [group]))


def test_unknown_conv_op_and_layout_are_errors(tmp_path: Path) -> None:
    group = _Weights().float32("k", _w(3, 3, 2, 2))
    topo = _graph(*_consts("k"), _node("q", "QuantizedConv2D", ["x", "k"]))
    with pytest.raises(ModelLoadError, match=r"unknown conv op 'QuantizedConv2D'"):
        _load(_write(tmp_path, topo, [group]))
    topo = _graph(*_consts("k"), _conv("c", "x", "k", fmt="NCDHW"))
    with pytest.raises(ModelLoadError, match=r"conv 'c': unknown data_format 'NCDHW'"):
        _load(_write(tmp_path, topo, [group]))


def test_nchw_strides_and_invalid_json(tmp_path: Path) -> None:
    group = _Weights().float32("k", _w(3, 3, 2, 2))
    topo = _graph(*_consts("k"), _conv("c", "x", "k", fmt="NCHW", strides=(1, 2)))
    path = _write(tmp_path, topo, [group])
    (conv,) = read_tfjs(path).convs
    assert conv.stride == (1, 2)
    path.write_text(path.read_text()[:-3])
    with pytest.raises(ModelLoadError, match=r"^model 'm': .*model\.json: invalid JSON: [^\n]*$"):
        _load(path)


def test_truncated_string_weight_is_an_error(tmp_path: Path) -> None:
    group = _Weights().raw("names", [2], "string", struct.pack("<I", 3) + b"abc" + b"\x05")
    path = _write(tmp_path, _graph(*_consts("names")), [group])
    with pytest.raises(ModelLoadError, match=r"hold 8 bytes, the manifest expects more than 8"):
        _load(path)
