"""The ``tfjs`` source: a TensorFlow.js model, ``model.json`` plus its binary weight shards.

Both TF.js formats are read without TensorFlow:

- **graph models** (``format: graph-model``): ``modelTopology.node`` is a list of TF nodes; the
  convs are ``Conv2D``, ``DepthwiseConv2dNative``, ``_FusedConv2D`` and
  ``FusedDepthwiseConv2dNative``, whose filter is the ``Const`` node (behind any ``Identity``,
  ``Switch`` or ``Enter``) named like a weight of the manifest. Depth is the longest path over
  the node inputs (``depth_method="tfjs-graph"``).
- **layers models** (``format: layers-model``): a Keras topology (``modelTopology.model_config``
  or ``modelTopology`` itself with ``class_name``/``config``); the convs are ``Conv2D``,
  ``DepthwiseConv2D`` and ``SeparableConv2D`` layers (a depthwise and a pointwise conv), their
  kernels the weights ``<layer>/kernel``, ``<layer>/depthwise_kernel`` and
  ``<layer>/pointwise_kernel``. Depth is the longest path over the layers' inbound nodes
  (``depth_method="keras-graph"``).

Weights are decoded as tfjs-core's ``io.decodeWeights`` does: the shards of a manifest group are
concatenated in order and the group's weights follow each other in it; ``uint8``/``uint16``
quantized values are ``q * scale + min`` computed in float64 and rounded to float32, ``float16``
ones are widened exactly. TF kernels (HWIO ``[kh, kw, c_in, c_out]``) become OIHW; a depthwise
kernel ``[kh, kw, C, M]`` becomes ``(C * M, 1, kh, kw)`` with ``groups=C`` and output channel
``c * M + m``, TF's order. Transposed convs (``Conv2DBackpropInput``, ``Conv2DTranspose``) are not
2-D convs here and only pass depth through.

``extra_meta`` gets ``weight_precision`` (how the file stores the conv kernels: ``float32``,
``float16``, ``uint8-affine``, ``uint16-affine`` or ``mixed``) and ``bn_folded``: ``no`` when a
BatchNorm follows a conv (a ``FusedBatchNorm*`` node, a ``_FusedConv2D`` fusing a
``FusedBatchNorm``, or a ``BatchNormalization`` layer), else ``yes`` when the converter fused
convs with their bias (``_FusedConv2D``/``FusedDepthwiseConv2dNative``: tfjs-converter folds
BatchNorm into such kernels), else ``unknown`` for a graph model and ``no-bn`` for a layers model
(a Keras topology keeps its BatchNorm layers).
"""

from __future__ import annotations

import base64
import json
import re
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from filterdb.sources import GraphConv, LoadedModel, ModelLoadError, register_source
from filterdb.sources.files import FILE_KEYS, resolve_file

__all__ = ["TfjsModel", "TfjsWeights", "load_tfjs", "read_tfjs", "read_weights"]

#: Bytes per value of the stored dtypes (tfjs-core ``DTYPE_VALUE_SIZE_MAP``).
_DTYPE_BYTES = {
    "float32": 4,
    "float16": 2,
    "int32": 4,
    "uint16": 2,
    "uint8": 1,
    "bool": 1,
    "complex64": 8,
}
#: Numpy dtypes of the quantized and plain float encodings (little-endian, as tfjs reads them).
_QUANT_NUMPY = {"uint8": "<u1", "uint16": "<u2", "float16": "<f2"}
_QUANT_NUMPY_BYTES = {"uint8": 1, "uint16": 2, "float16": 2}
_FLOAT_NUMPY = {"float32": "<f4", "float16": "<f2"}
_PRECISION = {"uint8": "uint8-affine", "uint16": "uint16-affine", "float16": "float16"}
_STRING_LENGTH_BYTES = 4

# graph models
_CONV_OPS = {"Conv2D", "_FusedConv2D"}
_DEPTHWISE_OPS = {"DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"}
_FUSED_OPS = {"_FusedConv2D", "FusedDepthwiseConv2dNative"}
#: Conv-like ops that are not 2-D convs of a forward pass (they only pass depth through).
_NOT_CONV_OPS = {
    "Conv2DBackpropInput",
    "Conv2DBackpropFilter",
    "DepthwiseConv2dNativeBackpropInput",
    "DepthwiseConv2dNativeBackpropFilter",
    "Conv3D",
    "Conv3DBackpropInputV2",
    "Conv3DBackpropFilterV2",
}
_CONV_LIKE = re.compile(r"conv\d?d", re.IGNORECASE)
_BN_OPS = {"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"}
_PASS_OPS = {"Identity", "BiasAdd"}
#: Ops that forward their first input unchanged (control flow of TF ``cond``/``while``).
_FORWARD_OPS = {"Identity", "Switch", "Enter"}

# layers models
_KERAS_CONV = {"Conv2D", "Convolution2D"}
_KERAS_DEPTHWISE = {"DepthwiseConv2D"}
_KERAS_SEPARABLE = {"SeparableConv2D", "SeparableConvolution2D"}
_KERAS_NOT_CONV = {
    "Conv1D",
    "Conv3D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "Convolution1D",
    "Convolution3D",
    "Deconvolution2D",
    "Deconvolution3D",
    "SeparableConv1D",
    "DepthwiseConv1D",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
}
_KERAS_MODELS = {"Model", "Functional", "Sequential"}
_KERAS_BN = {"BatchNormalization", "SyncBatchNormalization"}


@dataclass
class _Spec:
    """One manifest weight: where its bytes are and how they are encoded."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: dict[str, Any] | None
    raw: memoryview


class TfjsWeights:
    """The weights of a TF.js manifest, decoded on demand.

    Parameters
    ----------
    specs : mapping of str to _Spec
        Manifest entries by name, with their bytes.
    """

    def __init__(self, specs: Mapping[str, _Spec]) -> None:
        self._specs = dict(specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    @property
    def n_elements(self) -> int:
        """Number of values of all weights (every dtype)."""
        return int(sum(int(np.prod(s.shape, dtype=np.int64)) for s in self._specs.values()))

    def shape(self, name: str) -> tuple[int, ...]:
        """The stored shape of weight ``name``."""
        return self._specs[name].shape

    def precision(self, name: str) -> str:
        """How weight ``name`` is stored: ``float32``, ``float16``, ``uint8-affine``, ..."""
        spec = self._specs[name]
        if spec.quantization is not None:
            return _PRECISION[str(spec.quantization["dtype"])]
        return spec.dtype

    def array(self, name: str) -> np.ndarray:
        """Weight ``name`` decoded as tfjs-core does, as a float32 array of its shape.

        Raises
        ------
        ValueError
            A weight that is not float (int32, bool, string, complex64).
        """
        spec = self._specs[name]
        q = spec.quantization
        if q is not None:
            qdtype = str(q["dtype"])
            stored = np.frombuffer(spec.raw, dtype=_QUANT_NUMPY[qdtype])
            if qdtype == "float16":
                values = stored.astype(np.float32)
            else:
                # tfjs: `values[i] = v * scale + min` in JS doubles, stored into a Float32Array
                wide = stored.astype(np.float64) * float(q["scale"]) + float(q["min"])
                values = wide.astype(np.float32)
        elif spec.dtype in _FLOAT_NUMPY:
            values = np.frombuffer(spec.raw, dtype=_FLOAT_NUMPY[spec.dtype]).astype(np.float32)
        else:
            raise ValueError(f"weight {name!r} of dtype {spec.dtype} is not a float tensor")
        return values.reshape(spec.shape)


def _fail(model_id: str, path: Path, message: str) -> ModelLoadError:
    return ModelLoadError(f"model {model_id!r}: {path}: {message}")


def _byte_length(spec: Mapping[str, Any], size: int, buf: bytes, offset: int) -> int | None:
    """Bytes of one manifest entry starting at ``offset``; None when ``buf`` ends too early."""
    quant = spec.get("quantization")
    if quant is not None:
        return size * _QUANT_NUMPY_BYTES[str(quant["dtype"])]
    dtype = str(spec.get("dtype", "float32"))
    if dtype == "string":  # each value: uint32 little-endian byte count, then the bytes
        n = 0
        for _ in range(size):
            start = offset + n
            if start + _STRING_LENGTH_BYTES > len(buf):
                return None
            n += _STRING_LENGTH_BYTES + int.from_bytes(
                buf[start : start + _STRING_LENGTH_BYTES], "little"
            )
        return n
    return size * _DTYPE_BYTES[dtype]


def read_weights(model_id: str, path: Path, manifest: Sequence[Mapping[str, Any]]) -> TfjsWeights:
    """Read the weight shards of a TF.js ``weightsManifest``.

    Parameters
    ----------
    model_id : str
        For error messages.
    path : Path
        The ``model.json``; shard paths are relative to its folder.
    manifest : sequence of mapping
        The groups, each with ``paths`` and ``weights`` (``name``, ``shape``, ``dtype`` and
        optional ``quantization``).

    Returns
    -------
    TfjsWeights

    Raises
    ------
    ModelLoadError
        A missing shard, a group whose shards hold fewer bytes than its weights need, an unknown
        dtype or quantization.
    """
    specs: dict[str, _Spec] = {}
    for gi, group in enumerate(manifest):
        try:
            paths = [str(p) for p in group["paths"]]
            weights = list(group["weights"])
        except (KeyError, TypeError):
            raise _fail(model_id, path, f"weight group {gi} lacks 'paths' or 'weights'") from None
        chunks = []
        for p in paths:
            shard = path.parent / p
            if not shard.is_file():
                raise _fail(model_id, path, f"weight shard {p!r} (group {gi}) is missing")
            chunks.append(shard.read_bytes())
        buf = b"".join(chunks)
        view = memoryview(buf)
        offset = 0
        for w in weights:
            name = str(w["name"])
            dtype = str(w.get("dtype", "float32"))
            quant = w.get("quantization")
            shape = tuple(int(s) for s in w.get("shape", ()))
            if quant is not None:
                qdtype = str(quant.get("dtype"))
                if qdtype not in _QUANT_NUMPY:
                    raise _fail(
                        model_id, path, f"weight {name!r}: unknown quantization dtype {qdtype!r}"
                    )
                if qdtype != "float16" and not ("min" in quant and "scale" in quant):
                    raise _fail(
                        model_id, path, f"weight {name!r}: {qdtype} quantization lacks min/scale"
                    )
            elif dtype != "string" and dtype not in _DTYPE_BYTES:
                raise _fail(model_id, path, f"weight {name!r}: unknown dtype {dtype!r}")
            size = int(np.prod(shape, dtype=np.int64))
            n = _byte_length(w, size, buf, offset)
            if n is None or offset + n > len(buf):
                need = f"more than {len(buf)}" if n is None else str(offset + n)
                raise _fail(
                    model_id,
                    path,
                    f"weight shard(s) {', '.join(paths)} (group {gi}) hold {len(buf)} bytes, "
                    f"the manifest expects {need} bytes (short at weight {name!r})",
                )
            specs[name] = _Spec(name, shape, dtype, quant, view[offset : offset + n])
            offset += n
    return TfjsWeights(specs)


@dataclass
class TfjsModel:
    """What :func:`read_tfjs` learnt from one ``model.json``.

    Attributes
    ----------
    format : str
        ``graph-model`` or ``layers-model``.
    convs : list of GraphConv
        Every 2-D conv, OIHW float32, with its depth.
    depth_method : str
        ``tfjs-graph`` or ``keras-graph``.
    n_parameters : int
        Number of values of all manifest weights.
    weight_precision : str
        How the conv kernels are stored (``mixed`` when in several ways, ``unknown`` without
        convs).
    bn_folded : str
        ``yes``, ``no``, ``no-bn`` or ``unknown`` (see the module docstring).
    info : dict
        ``format``, ``generatedBy``, ``convertedBy`` and ``userDefinedMetadata`` (when present)
        of the file: hints of the upstream model.
    """

    format: str
    convs: list[GraphConv]
    depth_method: str
    n_parameters: int
    weight_precision: str
    bn_folded: str
    info: dict[str, Any]


def _attr_ints(attr: Mapping[str, Any], key: str) -> list[int] | None:
    value = attr.get(key)
    if value is None:
        return None
    return [int(i) for i in value.get("list", {}).get("i", [])]


def _attr_str(attr: Mapping[str, Any], key: str) -> str | None:
    value = attr.get(key)
    if value is None or "s" not in value:
        return None
    return base64.b64decode(value["s"]).decode("utf-8", "replace")


def _attr_strs(attr: Mapping[str, Any], key: str) -> list[str]:
    value = attr.get(key) or {}
    return [
        base64.b64decode(s).decode("utf-8", "replace") for s in value.get("list", {}).get("s", [])
    ]


def _input_node(ref: str) -> str | None:
    """The producing node of an input reference (``name``, ``name:1``); None for ``^control``."""
    if ref.startswith("^"):
        return None
    name, sep, index = ref.rpartition(":")
    return name if sep and index.isdigit() else ref


def _oihw(kernel: np.ndarray, depthwise: bool) -> tuple[np.ndarray, int]:
    """HWIO (or depthwise ``[kh, kw, C, M]``) -> OIHW float32 and the conv groups."""
    kh, kw, c_in, c_out = kernel.shape
    if depthwise:
        w = kernel.transpose(2, 3, 0, 1).reshape(c_in * c_out, 1, kh, kw)
        return np.ascontiguousarray(w, dtype=np.float32), c_in
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32), 1


def _precision(kinds: set[str]) -> str:
    if not kinds:
        return "unknown"
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _graph_model(
    model_id: str, path: Path, topology: Mapping[str, Any], weights: TfjsWeights
) -> tuple[list[GraphConv], str, set[str]]:
    """Convs, ``bn_folded`` and kernel precisions of a graph model."""
    nodes = topology.get("node")
    if not isinstance(nodes, list):
        raise _fail(model_id, path, "graph model without a 'modelTopology.node' list")
    for fn in (topology.get("library") or {}).get("function", []) or []:
        for n in fn.get("nodeDef", []) or []:
            if n.get("op") in _CONV_OPS | _DEPTHWISE_OPS:
                sig = (fn.get("signature") or {}).get("name", "?")
                raise _fail(model_id, path, f"conv {n.get('name')!r} inside function {sig!r}")
    by_name = {str(n["name"]): n for n in nodes}
    inputs = {
        str(n["name"]): [p for p in map(_input_node, n.get("input", [])) if p in by_name]
        for n in nodes
    }

    def source(ref: str) -> Mapping[str, Any] | None:
        name = _input_node(ref)
        seen = set()
        while name in by_name and name not in seen:
            seen.add(name)
            node = by_name[name]
            if node.get("op") not in _FORWARD_OPS or not node.get("input"):
                return node
            name = _input_node(node["input"][0])
        return None

    # depth: longest path counted in convs (Kahn order; NextIteration back edges of TF while
    # loops are dropped, nodes left in a cycle take what their known inputs give)
    is_conv = {name: n.get("op") in _CONV_OPS | _DEPTHWISE_OPS for name, n in by_name.items()}
    preds = {
        name: [p for p in ps if by_name[p].get("op") != "NextIteration"]
        for name, ps in inputs.items()
    }
    users: dict[str, list[str]] = {name: [] for name in by_name}
    indegree = {name: len(ps) for name, ps in preds.items()}
    for name, ps in preds.items():
        for p in ps:
            users[p].append(name)
    order: list[str] = []
    ready = deque(name for name in by_name if indegree[name] == 0)
    while ready:
        name = ready.popleft()
        order.append(name)
        for u in users[name]:
            indegree[u] -= 1
            if indegree[u] == 0:
                ready.append(u)
    placed = set(order)
    order += [name for name in by_name if name not in placed]
    depth: dict[str, int] = {}
    for name in order:
        d = max((depth.get(p, 0) for p in preds[name]), default=0)
        depth[name] = d + 1 if is_conv[name] else d

    convs: list[GraphConv] = []
    kinds: set[str] = set()
    fused = bn_after_conv = False
    for n in nodes:
        op, name = str(n.get("op")), str(n["name"])
        attr = n.get("attr") or {}
        if op in _BN_OPS and n.get("input"):
            prev = by_name.get(_input_node(n["input"][0]) or "")
            while prev is not None and prev.get("op") in _PASS_OPS and prev.get("input"):
                prev = by_name.get(_input_node(prev["input"][0]) or "")
            if prev is not None and prev.get("op") in _CONV_OPS | _DEPTHWISE_OPS:
                bn_after_conv = True
        if op not in _CONV_OPS | _DEPTHWISE_OPS:
            if op not in _NOT_CONV_OPS and _CONV_LIKE.search(op):
                raise _fail(model_id, path, f"unknown conv op {op!r} (node {name!r})")
            continue
        if op in _FUSED_OPS:
            fused_ops = _attr_strs(attr, "fused_ops")
            if any(f.startswith("FusedBatchNorm") for f in fused_ops):
                bn_after_conv = True
            elif "BiasAdd" in fused_ops or not fused_ops:
                fused = True
        layout = _attr_str(attr, "data_format") or "NHWC"
        if layout not in ("NHWC", "NCHW"):
            raise _fail(model_id, path, f"conv {name!r}: unknown data_format {layout!r}")
        yx = slice(1, 3) if layout == "NHWC" else slice(2, 4)
        strides = _attr_ints(attr, "strides") or [1, 1, 1, 1]
        dilations = _attr_ints(attr, "dilations") or [1, 1, 1, 1]
        if len(strides) != 4 or len(dilations) != 4:
            raise _fail(model_id, path, f"conv {name!r}: strides/dilations are not 4-D")
        filt = source(n["input"][1]) if len(n.get("input", [])) > 1 else None
        filt_name = str(filt["name"]) if filt is not None else None
        if filt is None or filt.get("op") != "Const" or filt_name not in weights:
            what = f"{filt.get('op')} node {filt_name!r}" if filt is not None else "nothing"
            raise _fail(
                model_id,
                path,
                f"conv {name!r} ({op}): filter input is {what}, not a weight of the manifest",
            )
        assert filt_name is not None
        shape = weights.shape(filt_name)
        if len(shape) != 4:
            raise _fail(model_id, path, f"conv {name!r}: filter {filt_name!r} has shape {shape}")
        weight, groups = _oihw(weights.array(filt_name), depthwise=op in _DEPTHWISE_OPS)
        kinds.add(weights.precision(filt_name))
        sy, sx = strides[yx]
        dy, dx = dilations[yx]
        convs.append(GraphConv(name, weight, depth[name], groups, (sy, sx), (dy, dx)))
    bn_folded = "no" if bn_after_conv else ("yes" if fused else "unknown")
    return convs, bn_folded, kinds


def _pair(value: Any, default: int = 1) -> tuple[int, int]:
    if value is None:
        return (default, default)
    if isinstance(value, int | float):
        return (int(value), int(value))
    return (int(value[0]), int(value[-1]))


def _keras_refs(node: Any) -> list[tuple[str, int]]:
    """``(layer, node_index)`` of the tensors one inbound node consumes (Keras 2 or 3 format)."""
    refs: list[tuple[str, int]] = []
    if isinstance(node, Mapping):  # Keras 3: {"args": [...], "kwargs": {...}} with keras_history
        stack: list[Any] = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, Mapping):
                history = item.get("keras_history")
                if isinstance(history, list) and history and isinstance(history[0], str):
                    refs.append((history[0], int(history[1]) if len(history) > 1 else 0))
                else:
                    stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        return refs[::-1]
    for entry in node or []:  # Keras 2: [[layer, node_index, tensor_index, kwargs], ...]
        if isinstance(entry, list) and entry and isinstance(entry[0], str):
            refs.append((entry[0], int(entry[1]) if len(entry) > 1 else 0))
            kwargs = entry[3] if len(entry) > 3 and isinstance(entry[3], Mapping) else {}
            for v in kwargs.values():  # tensors passed by keyword (TFOpLambda's `y`)
                if isinstance(v, list) and len(v) == 3 and isinstance(v[0], str):
                    refs.append((v[0], int(v[1])))
    return refs


class _KerasGraph:
    """Walks a Keras topology (nested models included), collecting its convs with depth."""

    def __init__(self, model_id: str, path: Path, weights: TfjsWeights) -> None:
        self.model_id, self.path, self.weights = model_id, path, weights
        self.convs: dict[str, GraphConv] = {}
        self.kinds: set[str] = set()
        self.has_bn = False

    def fail(self, message: str) -> ModelLoadError:
        return _fail(self.model_id, self.path, message)

    def kernel(self, scope: Sequence[str], layer: str, key: str) -> str:
        """The manifest name of weight ``key`` of ``layer`` (nested in ``scope``)."""
        candidates = [f"{'/'.join([*scope, layer])}/{key}", f"{layer}/{key}"]
        for c in candidates:
            if c in self.weights:
                return c
        tail = f"/{layer}/{key}"
        found = [n for n in self.weights if str(n).endswith(tail)]
        if len(found) == 1:
            return str(found[0])
        raise self.fail(f"conv layer {layer!r} has no weight {candidates[-1]!r} in the manifest")

    def add(self, name: str, weight_name: str, depthwise: bool, depth: int, cfg: Mapping) -> None:
        kernel = self.weights.array(weight_name)
        if kernel.ndim != 4:
            raise self.fail(f"conv layer {name!r}: kernel {weight_name!r} is {kernel.ndim}-D")
        weight, groups = _oihw(kernel, depthwise)
        if not depthwise and int(cfg.get("groups", 1) or 1) > 1:
            groups = int(cfg["groups"])
        self.kinds.add(self.weights.precision(weight_name))
        stride = _pair(cfg.get("strides"))
        dilation = _pair(cfg.get("dilation_rate"))
        old = self.convs.get(name)
        if old is not None:  # a shared layer: its first (shallowest) call counts
            old.depth = min(old.depth, depth)
            return
        self.convs[name] = GraphConv(name, weight, depth, groups, stride, dilation)

    def layer(self, scope: Sequence[str], layer: Mapping[str, Any], d_in: int) -> int:
        """Apply one layer to an input depth; returns its output depth."""
        cls = str(layer.get("class_name"))
        cfg = layer.get("config") or {}
        name = str(layer.get("name") or cfg.get("name"))
        qual = "/".join([*scope, name])
        if cls in _KERAS_CONV:
            self.add(qual, self.kernel(scope, name, "kernel"), False, d_in + 1, cfg)
            return d_in + 1
        if cls in _KERAS_DEPTHWISE:
            self.add(qual, self.kernel(scope, name, "depthwise_kernel"), True, d_in + 1, cfg)
            return d_in + 1
        if cls in _KERAS_SEPARABLE:
            dw, pw = (self.kernel(scope, name, k) for k in ("depthwise_kernel", "pointwise_kernel"))
            self.add(f"{qual}/depthwise", dw, True, d_in + 1, cfg)
            self.add(f"{qual}/pointwise", pw, False, d_in + 2, {})
            return d_in + 2
        if cls in _KERAS_MODELS and isinstance(cfg, Mapping | list):
            return self.model(cls, cfg, [*scope, name], d_in)
        if cls in _KERAS_BN:
            self.has_bn = True
        elif cls not in _KERAS_NOT_CONV and _CONV_LIKE.search(cls):
            raise self.fail(f"unknown conv layer class {cls!r} (layer {qual!r})")
        return d_in

    def model(self, cls: str, cfg: Any, scope: list[str], base: int) -> int:
        """Walk a (sub)model whose inputs have depth ``base``; returns its output depth."""
        layers = cfg if isinstance(cfg, list) else cfg.get("layers", [])
        functional = cls != "Sequential" and any(layer.get("inbound_nodes") for layer in layers)
        if not functional:
            d = base
            for layer in layers:
                d = self.layer(scope, layer, d)
            return d
        by_name = {str(layer.get("name") or layer["config"]["name"]): layer for layer in layers}
        n_nodes = {
            name: max(1, len(layer.get("inbound_nodes") or [])) for name, layer in by_name.items()
        }
        out: dict[tuple[str, int], int] = {}
        pending = [
            (name, k, _keras_refs(node))
            for name, layer in by_name.items()
            for k, node in enumerate(layer.get("inbound_nodes") or [None])
        ]

        def key(ref: tuple[str, int]) -> tuple[str, int] | None:
            name, k = ref
            if name not in by_name:
                return None
            return (name, min(k, n_nodes[name] - 1))

        while pending:
            left = []
            for item in pending:
                name, k, refs = item
                keys = [key(r) for r in refs]
                if any(kk is not None and kk not in out for kk in keys):
                    left.append(item)
                    continue
                d_in = max((out[kk] for kk in keys if kk is not None), default=base)
                out[(name, k)] = self.layer(scope, by_name[name], d_in)
            if len(left) == len(pending):  # a cycle: take what is known
                name, k, refs = left.pop(0)
                known = [out[kk] for kk in map(key, refs) if kk is not None and kk in out]
                out[(name, k)] = self.layer(scope, by_name[name], max(known, default=base))
            pending = left
        outputs = cfg.get("output_layers") if isinstance(cfg, Mapping) else None
        if outputs and isinstance(outputs[0], str):  # a single [name, node, tensor] triple
            outputs = [outputs]
        keys = [key((str(o[0]), int(o[1]))) for o in outputs or []]
        found = [out[kk] for kk in keys if kk is not None and kk in out]
        return max(found or out.values(), default=base)


def _layers_model(
    model_id: str, path: Path, topology: Mapping[str, Any], weights: TfjsWeights
) -> tuple[list[GraphConv], str, set[str]]:
    """Convs, ``bn_folded`` and kernel precisions of a layers (Keras) model."""
    config = topology.get("model_config", topology)
    if not isinstance(config, Mapping) or "config" not in config:
        raise _fail(model_id, path, "layers model without a Keras 'model_config'")
    walker = _KerasGraph(model_id, path, weights)
    walker.model(str(config.get("class_name", "Functional")), config["config"], [], 0)
    return list(walker.convs.values()), ("no" if walker.has_bn else "no-bn"), walker.kinds


def read_tfjs(path: str | Path, model_id: str = "?") -> TfjsModel:
    """Read a TF.js ``model.json`` and its weight shards.

    Parameters
    ----------
    path : str or Path
        The ``model.json``.
    model_id : str
        For error messages.

    Returns
    -------
    TfjsModel

    Raises
    ------
    ModelLoadError
        Invalid JSON, an unknown format, a missing or short shard, an unknown conv op or layout,
        a conv whose filter is not a manifest weight.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(model_id, path, f"invalid JSON: {exc}") from None
    if not isinstance(doc, Mapping):
        raise _fail(model_id, path, "invalid TF.js model: not a JSON object")
    topology = doc.get("modelTopology")
    manifest = doc.get("weightsManifest")
    if not isinstance(topology, Mapping) or not isinstance(manifest, list):
        raise _fail(model_id, path, "invalid TF.js model: no modelTopology or weightsManifest")
    fmt = doc.get("format")
    if fmt is None:  # files of older converters carry no format
        fmt = "graph-model" if "node" in topology else "layers-model"
    weights = read_weights(model_id, path, manifest)
    if fmt == "graph-model":
        convs, bn_folded, kinds = _graph_model(model_id, path, topology, weights)
        method = "tfjs-graph"
    elif fmt == "layers-model":
        convs, bn_folded, kinds = _layers_model(model_id, path, topology, weights)
        method = "keras-graph"
    else:
        raise _fail(model_id, path, f"unknown TF.js format {fmt!r}")
    info = {"format": fmt}
    for key in ("generatedBy", "convertedBy", "userDefinedMetadata"):
        if key in doc:
            info[key] = doc[key]
    return TfjsModel(
        format=str(fmt),
        convs=convs,
        depth_method=method,
        n_parameters=weights.n_elements,
        weight_precision=_precision(kinds),
        bn_folded=bn_folded,
        info=info,
    )


@register_source("tfjs", keys=FILE_KEYS)
def load_tfjs(model_id: str, entry: Mapping[str, Any]) -> LoadedModel:
    """Load a TF.js model named by a zoo entry.

    Parameters
    ----------
    model_id : str
        The entry's id.
    entry : mapping
        ``path`` to a ``model.json``, or ``package`` + ``file`` (see
        :func:`filterdb.sources.files.resolve_file`).

    Returns
    -------
    LoadedModel
        ``convs`` with their graph depth; ``extra_meta`` holds ``weight_precision``,
        ``bn_folded`` and the package's ``package``/``license``.
    """
    path, meta = resolve_file(model_id, entry)
    model = read_tfjs(path, model_id)
    extra = {k: v for k, v in meta.items() if k != "weights"}
    extra["weight_precision"] = model.weight_precision
    extra["bn_folded"] = model.bn_folded
    return LoadedModel(
        weights=str(meta["weights"]),
        convs=model.convs,
        depth_method=model.depth_method,
        n_parameters=model.n_parameters,
        extra_meta=extra,
    )
