"""The ``onnx`` source: conv weights read from an ONNX file, never executed.

An entry names the file as ``path: model.onnx`` or ``package: KEY`` + ``file: member.onnx`` (see
:mod:`filterdb.sources.files`). The protobuf is parsed with the ``onnx`` library; every 2-D conv
(``Conv``, ``QLinearConv``, ``ConvInteger``, and onnxruntime's ``com.microsoft`` ``FusedConv``;
not ``ConvTranspose``) becomes a :class:`~filterdb.sources.GraphConv` in ONNX's own OIHW layout.

A conv weight is followed back from the conv to a constant: an initializer or a ``Constant``
node, through ``Identity``, ``Cast``, ``Reshape``, ``Transpose`` and ``DequantizeLinear``
(``(q - zero_point) * scale``, per tensor, per axis or per block). ``QLinearConv`` weights are
dequantized the same way; ``ConvInteger`` has no weight scale, so its weights are ``w - w_zp``.
Conv depth is the longest path from the graph inputs counted in 2-D convs (parallel branches
share a depth), as :func:`filterdb.extract.filters.conv_depths` does for a torch.fx graph.

``extra_meta`` holds ``weight_precision`` (the stored precision of the conv weights:
``float32``, ``float16``, ``float64``, ``bfloat16``, ``uint8-affine``/``int8-affine`` for
scaled quantized weights, ``uint8``/``int8`` for integer weights without a scale, or ``mixed``),
``bn_folded`` (``no`` when a ``BatchNormalization`` node reads a 2-D conv's output, otherwise
``unknown``: exporters fold batch norm into the conv, so a file cannot tell a folded batch norm
from none) and what :func:`~filterdb.sources.files.resolve_file` knows of the file's origin.

``n_parameters`` counts the elements of every constant tensor a node reads (initializers,
sparse initializers, ``Constant`` nodes) whose dtype is floating point or an integer of at most
32 bits; 64-bit integers and booleans (shapes, axes, indices, masks) and the scales and zero
points of the quantization ops (``DequantizeLinear``, ``QLinearConv``, ``ConvInteger``, ...)
are not weights and are left out.

Examples
--------
>>> import tempfile, pathlib
>>> import numpy as np, onnx
>>> from onnx import helper, numpy_helper
>>> w = np.arange(18, dtype=np.float32).reshape(2, 1, 3, 3)
>>> graph = helper.make_graph(
...     [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g",
...     [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 5, 5])],
...     [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
...     [numpy_helper.from_array(w, "w")])
>>> f = pathlib.Path(tempfile.mkdtemp()) / "m.onnx"
>>> onnx.save(helper.make_model(graph), f)
>>> loaded = load_onnx("m", {"path": str(f)})
>>> [(c.name, c.weight.shape, c.depth) for c in loaded.convs], loaded.n_parameters
([('conv', (2, 1, 3, 3), 1)], 18)
>>> loaded.extra_meta["weight_precision"], loaded.extra_meta["bn_folded"]
('float32', 'unknown')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from filterdb.sources import GraphConv, LoadedModel, ModelLoadError, register_source
from filterdb.sources.files import FILE_KEYS, resolve_file

__all__ = ["load_onnx", "read_onnx"]

_DEFAULT_DOMAINS = ("", "ai.onnx")

#: 2-D conv ops: (domain, op) -> index of the weight input.
_CONV_OPS: dict[tuple[str, str], int] = {
    ("", "Conv"): 1,
    ("", "ConvInteger"): 1,
    ("", "QLinearConv"): 3,
    ("com.microsoft", "FusedConv"): 1,
}

#: Inputs that hold quantization scales and zero points, not weights (for ``n_parameters``).
_QUANT_PARAM_INPUTS: dict[str, tuple[int, ...]] = {
    "DequantizeLinear": (1, 2),
    "QuantizeLinear": (1, 2),
    "ConvInteger": (2, 3),
    "MatMulInteger": (2, 3),
    "QLinearConv": (1, 2, 4, 5, 6, 7),
    "QLinearMatMul": (1, 2, 4, 5, 6, 7),
}

#: Ops a conv weight is followed back through.
_FOLLOWED = ("Identity", "Cast", "Reshape", "Transpose", "DequantizeLinear")

#: What folding a malformed graph raises (a missing input, a bad shape or permutation).
_BAD_GRAPH = (ValueError, KeyError, IndexError, TypeError)

_FLOAT_BITS = {"float16": 16, "bfloat16": 16, "float32": 32, "float64": 64}


@dataclass
class _Value:
    """A constant tensor and the precision it is stored in."""

    array: np.ndarray
    precision: str


class _Untraceable(Exception):
    """A conv weight does not come from a constant."""


def _domain(node: Any) -> str:
    return "" if node.domain in _DEFAULT_DOMAINS else str(node.domain)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _dtype_name(arr: np.ndarray) -> str:
    return str(arr.dtype.name) if arr.dtype.kind != "V" else str(arr.dtype)


def _sparse_to_array(sparse: Any) -> np.ndarray:
    """A dense copy of a ``SparseTensorProto`` (COO, linear or per-axis indices)."""
    from onnx import numpy_helper

    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    shape = tuple(int(d) for d in sparse.dims)
    dense = np.zeros(int(np.prod(shape)), dtype=values.dtype)
    if indices.ndim == 2:
        indices = np.ravel_multi_index(tuple(indices.T), shape)
    dense[indices.ravel()] = values.ravel()
    return dense.reshape(shape)


def _constant_node_array(node: Any) -> np.ndarray:
    """The tensor of a ``Constant`` node, whichever attribute holds it."""
    from onnx import numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "sparse_value":
            return _sparse_to_array(a.sparse_tensor)
        if a.name == "value_float":
            return np.asarray(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.asarray(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.asarray(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.asarray(list(a.ints), dtype=np.int64)
    raise _Untraceable(f"Constant node {node.name!r} holds no numeric tensor")


def _is_parameter_dtype(arr: np.ndarray) -> bool:
    if arr.dtype.kind == "f" or arr.dtype.name in _FLOAT_BITS:
        return True
    return arr.dtype.kind in "iu" and arr.dtype.itemsize <= 4


def _dequantize(
    q: _Value, scale: np.ndarray, zero: np.ndarray | None, axis: int, block_size: int = 0
) -> _Value:
    """``(q - zero) * scale`` with a per-tensor, per-axis or per-block scale."""
    qa = q.array
    if qa.dtype.kind not in "iu":
        raise _Untraceable(f"quantized weight has dtype {qa.dtype}, not an integer")
    axis = axis % max(qa.ndim, 1)

    def expand(p: np.ndarray) -> np.ndarray:
        if p.size == 1:
            return p.reshape(())
        if block_size:
            p = np.repeat(p, block_size, axis=axis)
            return p[tuple(slice(0, n) for n in qa.shape)]
        shape = [1] * qa.ndim
        shape[axis] = p.size
        return p.reshape(shape)

    diff = qa.astype(np.int32)
    if zero is not None:
        diff = diff - expand(zero).astype(np.int32)
    scale_f = expand(scale)
    return _Value(diff.astype(scale_f.dtype) * scale_f, f"{q.precision}-affine")


def _reshape(arr: np.ndarray, shape: np.ndarray, allowzero: int) -> np.ndarray:
    dims = [int(d) for d in shape.ravel()]
    if not allowzero:
        dims = [arr.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return arr.reshape(dims)


class _Graph:
    """Index of one ONNX graph: producers, constants, and constant folding of conv weights."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.producer: dict[str, Any] = {}
        for node in graph.node:
            for out in node.output:
                if out:
                    self.producer[out] = node
        self.initializers = {t.name: t for t in graph.initializer}
        self.sparse = {s.values.name: s for s in graph.sparse_initializer}
        self.inputs = {i.name for i in graph.input}
        self._to_array = numpy_helper.to_array
        self._memo: dict[str, _Value] = {}
        self._visiting: set[str] = set()

    def raw_constant(self, name: str) -> np.ndarray | None:
        """The array of an initializer or ``Constant`` output, or None."""
        if name in self.initializers:
            return self._to_array(self.initializers[name])
        if name in self.sparse:
            return _sparse_to_array(self.sparse[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and _domain(node) == "":
            return _constant_node_array(node)
        return None

    def value(self, name: str) -> _Value:
        """Fold tensor ``name`` to a constant through the followed ops, or raise _Untraceable."""
        if name in self._memo:
            return self._memo[name]
        if name in self._visiting:
            raise _Untraceable(f"tensor {name!r} depends on itself")
        self._visiting.add(name)
        try:
            result = self._fold(name)
        finally:
            self._visiting.discard(name)
        self._memo[name] = result
        return result

    def optional(self, node: Any, i: int) -> np.ndarray | None:
        if len(node.input) > i and node.input[i]:
            return self.value(node.input[i]).array
        return None

    def _fold(self, name: str) -> _Value:
        raw = self.raw_constant(name)
        if raw is not None:
            return _Value(raw, _dtype_name(raw))
        node = self.producer.get(name)
        if node is None:
            what = "a graph input" if name in self.inputs else "produced by no node"
            raise _Untraceable(f"tensor {name!r} is {what}, not a constant")
        if _domain(node) != "" or node.op_type not in _FOLLOWED:
            op = node.op_type if _domain(node) == "" else f"{node.domain}:{node.op_type}"
            raise _Untraceable(
                f"tensor {name!r} comes from node {node.name or '(unnamed)'!r} of op {op!r}, "
                f"an unknown op (followed: Constant, {', '.join(_FOLLOWED)})"
            )
        attrs = _attrs(node)
        src = self.value(node.input[0])
        if node.op_type == "Identity":
            return src
        if node.op_type == "Cast":
            from onnx import helper

            target = np.dtype(helper.tensor_dtype_to_np_dtype(int(attrs["to"])))
            arr = src.array.astype(target)
            precision = src.precision
            t_bits, s_bits = _FLOAT_BITS.get(target.name), _FLOAT_BITS.get(src.precision)
            if t_bits is not None and s_bits is not None and t_bits < s_bits:
                precision = target.name  # rounded on the way: that is what the conv sees
            return _Value(arr, precision)
        if node.op_type == "Reshape":
            shape = self.value(node.input[1]).array
            return _Value(_reshape(src.array, shape, int(attrs.get("allowzero", 0))), src.precision)
        if node.op_type == "Transpose":
            perm = attrs.get("perm")
            return _Value(np.transpose(src.array, perm), src.precision)
        # DequantizeLinear
        scale = self.value(node.input[1]).array
        return _dequantize(
            src,
            scale,
            self.optional(node, 2),
            int(attrs.get("axis", 1)),
            int(attrs.get("block_size", 0)),
        )


def _subgraphs(nodes: Any) -> Iterator[Any]:
    from onnx import AttributeProto

    for node in nodes:
        for a in node.attribute:
            if a.type == AttributeProto.GRAPH:
                yield a.g
            elif a.type == AttributeProto.GRAPHS:
                yield from a.graphs


def _all_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph and its subgraphs (initializers and node attributes)."""
    from onnx import AttributeProto

    yield from graph.initializer
    for s in graph.sparse_initializer:
        yield s.values
        yield s.indices
    for node in graph.node:
        for a in node.attribute:
            if a.type == AttributeProto.TENSOR:
                yield a.t
            elif a.type == AttributeProto.TENSORS:
                yield from a.tensors
            elif a.type == AttributeProto.SPARSE_TENSOR:
                yield a.sparse_tensor.values
                yield a.sparse_tensor.indices
    for sub in _subgraphs(graph.node):
        yield from _all_tensors(sub)


def _outer_names(graph: Any) -> set[str]:
    """Names a subgraph reads (its own and outer-scope ones) and does not define itself."""
    defined = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    read: set[str] = set()
    for node in graph.node:
        read.update(x for x in node.input if x)
        defined.update(node.output)
    for sub in _subgraphs(graph.node):
        read |= _outer_names(sub)
    return read - defined


def _node_inputs(node: Any) -> list[str]:
    """A node's inputs, with what its If/Loop/Scan bodies read from the enclosing graph."""
    inputs = [x for x in node.input if x]
    for sub in _subgraphs([node]):
        inputs.extend(sorted(_outer_names(sub)))
    return inputs


def _topological(graph: Any) -> list[int]:
    """Node indices in an order where producers come first (file order where it already is)."""
    producer = {out: i for i, n in enumerate(graph.node) for out in n.output if out}
    waiting: dict[int, int] = {}
    users: dict[int, list[int]] = {}
    for i, n in enumerate(graph.node):
        preds = {producer[x] for x in _node_inputs(n) if x in producer}
        waiting[i] = len(preds)
        for p in preds:
            users.setdefault(p, []).append(i)
    ready = [i for i, k in waiting.items() if k == 0]
    ready.reverse()
    order: list[int] = []
    while ready:
        i = ready.pop()
        order.append(i)
        for u in sorted(users.get(i, ()), reverse=True):
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    if len(order) != len(graph.node):
        raise _Untraceable("the node graph has a cycle")
    return order


def _n_parameters(g: _Graph) -> int:
    """Elements of every constant tensor read as a weight (see the module docstring)."""
    graph = g.graph
    read: dict[str, bool] = {}  # tensor -> read at least once as a weight (not a quant param)
    for gr in (graph, *_subgraphs(graph.node)):
        for node in gr.node:
            quant = _QUANT_PARAM_INPUTS.get(node.op_type, ()) if _domain(node) == "" else ()
            for i, x in enumerate(node.input):
                if x:
                    read[x] = read.get(x, False) or i not in quant
    for out in graph.output:
        read[out.name] = True
    total = 0
    for name in [*g.initializers, *g.sparse]:
        if read.get(name):
            arr = g.raw_constant(name)
            if arr is not None and _is_parameter_dtype(arr):
                total += int(arr.size)
    for node in graph.node:
        if node.op_type == "Constant" and _domain(node) == "" and read.get(node.output[0]):
            arr = _constant_node_array(node)
            if _is_parameter_dtype(arr):
                total += int(arr.size)
    return total


def _conv_weight(g: _Graph, node: Any) -> _Value:
    """The float32 OIHW weight of a conv node (dequantized) and its stored precision."""
    w_index = _CONV_OPS[(_domain(node), node.op_type)]
    w = g.value(node.input[w_index])
    if node.op_type == "QLinearConv":
        if w.precision not in ("int8", "uint8"):
            raise _Untraceable(f"QLinearConv weight is stored as {w.precision}, not 8-bit")
        scale = g.value(node.input[4]).array
        w = _dequantize(w, scale, g.optional(node, 5), axis=0)
    elif node.op_type == "ConvInteger":
        zero = g.optional(node, 3)
        if w.array.dtype.kind not in "iu":
            raise _Untraceable(f"ConvInteger weight has dtype {w.array.dtype}, not an integer")
        diff = w.array.astype(np.int32)
        if zero is not None:
            zero = zero.reshape(()) if zero.size == 1 else zero.reshape(-1, 1, 1, 1)
            diff = diff - zero.astype(np.int32)
        w = _Value(diff, w.precision)
    elif w.array.dtype.kind not in "f" and w.array.dtype.name not in _FLOAT_BITS:
        raise _Untraceable(f"{node.op_type} weight has dtype {w.array.dtype}, not a float")
    # a fresh, writable array: to_array gives read-only views of the protobuf's bytes
    return _Value(np.array(w.array, dtype=np.float32, order="C", copy=True), w.precision)


def _is_2d_conv(g: _Graph, node: Any) -> bool:
    key = (_domain(node), node.op_type)
    if key not in _CONV_OPS:
        return False
    kernel = _attrs(node).get("kernel_shape")
    if kernel is not None:
        return len(kernel) == 2
    weight = node.input[_CONV_OPS[key]]
    try:
        return g.value(weight).array.ndim == 4
    except (_Untraceable, *_BAD_GRAPH):
        return True  # unknown rank: _conv_weight raises the clear error


def _unique_names(graph: Any, conv_idx: list[int]) -> dict[int, str]:
    """A stable name per conv: the node name, else its weight tensor's, else ``Op_<index>``."""
    nodes = graph.node
    node_names = [nodes[i].name for i in conv_idx]
    weights = [nodes[i].input[_CONV_OPS[(_domain(nodes[i]), nodes[i].op_type)]] for i in conv_idx]
    names: dict[int, str] = {}
    taken: set[str] = set()
    for i, node_name, weight in zip(conv_idx, node_names, weights, strict=True):
        if node_name and node_names.count(node_name) == 1:
            name = node_name
        elif weight and weights.count(weight) == 1 and weight not in node_names:
            name = weight
        else:
            name = f"{nodes[i].op_type}_{i}"
        while name in taken:
            name = f"{name}_{i}"
        taken.add(name)
        names[i] = name
    return names


def _pair(values: Any, default: int = 1) -> tuple[int, int]:
    if not values:
        return (default, default)
    v = [int(x) for x in values]
    return (v[0], v[1]) if len(v) >= 2 else (v[0], v[0])


def read_onnx(model_id: str, path: Path) -> LoadedModel:
    """Read the 2-D convs of an ONNX file.

    Parameters
    ----------
    model_id : str
        Named in errors.
    path : Path
        The ``.onnx`` file; external data files are read from its folder.

    Returns
    -------
    LoadedModel
        ``convs`` (OIHW float32, dequantized), ``depth_method="onnx-graph"``, ``n_parameters``
        and ``extra_meta`` with ``weight_precision`` and ``bn_folded``.

    Raises
    ------
    ModelLoadError
        A file that does not parse, missing external data, a conv weight that is not a
        constant, or a graph without any 2-D conv.
    """
    where = f"model {model_id!r} ({path})"

    def fail(msg: str) -> ModelLoadError:
        return ModelLoadError(" ".join(f"{where}: {msg}".split()))

    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        raise fail("the onnx source needs the `onnx` package (pip install onnx)") from None

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise fail(f"not a readable ONNX file ({type(e).__name__}: {e})") from None
    graph = model.graph
    if not graph.node:
        raise fail("not an ONNX model or an empty one (the graph has no nodes)")
    external = sorted(
        {
            str(e.value)
            for t in _all_tensors(graph)
            if t.data_location == onnx.TensorProto.EXTERNAL
            for e in t.external_data
            if e.key == "location"
        }
    )
    if external:
        escaping = [x for x in external if Path(x).is_absolute() or ".." in Path(x).parts]
        if escaping:
            raise fail(f"external data location(s) {escaping} point outside the file's folder")
        missing = [x for x in external if not (path.parent / x).is_file()]
        if missing:
            raise fail(f"its weights are in external data file(s) {missing}, not found next to it")
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        except Exception as e:
            raise fail(f"external data cannot be read ({type(e).__name__}: {e})") from None
    for sub in _subgraphs(graph.node):
        if any((_domain(n), n.op_type) in _CONV_OPS for n in sub.node):
            raise fail("a conv sits inside a control-flow subgraph (If/Loop/Scan), not supported")

    g = _Graph(graph)
    conv_idx: list[int] = []
    for i, node in enumerate(graph.node):
        if node.op_type in ("Conv", "QLinearConv", "ConvInteger", "FusedConv") and (
            (_domain(node), node.op_type) not in _CONV_OPS
        ):
            raise fail(f"node {node.name!r} is a {node.domain}:{node.op_type}, not supported")
        try:
            if _is_2d_conv(g, node):
                conv_idx.append(i)
        except _Untraceable as e:
            raise fail(f"conv node {node.name or i!r}: {e}") from None
    if not conv_idx:
        raise fail("the graph has no 2-D Conv, QLinearConv or ConvInteger node")
    names = _unique_names(graph, conv_idx)

    try:
        order = _topological(graph)
    except _Untraceable as e:
        raise fail(str(e)) from None
    conv_set = set(conv_idx)
    tensor_depth: dict[str, int] = {}
    node_depth: dict[int, int] = {}
    for i in order:
        node = graph.node[i]
        d = max((tensor_depth.get(x, 0) for x in _node_inputs(node)), default=0)
        if i in conv_set:
            d += 1
            node_depth[i] = d
        for out in node.output:
            tensor_depth[out] = d

    convs: list[GraphConv] = []
    precisions: set[str] = set()
    conv_outputs: set[str] = set()
    for i in conv_idx:
        node = graph.node[i]
        try:
            w = _conv_weight(g, node)
        except (_Untraceable, *_BAD_GRAPH) as e:
            raise fail(f"weight of {node.op_type} node {names[i]!r}: {e}") from None
        if w.array.ndim != 4:
            raise fail(f"{node.op_type} node {names[i]!r}: weight shape {w.array.shape} is not 4-D")
        attrs = _attrs(node)
        groups = int(attrs.get("group", 1))
        if groups < 1 or w.array.shape[0] % groups:
            raise fail(
                f"{node.op_type} node {names[i]!r}: {w.array.shape[0]} output channels "
                f"do not split into {groups} groups"
            )
        convs.append(
            GraphConv(
                name=names[i],
                weight=w.array,
                depth=node_depth[i],
                groups=groups,
                stride=_pair(attrs.get("strides")),
                dilation=_pair(attrs.get("dilations")),
            )
        )
        precisions.add(w.precision)
        conv_outputs.add(node.output[0])

    # batch norm that reads a conv's output (directly or through Identity) was not folded
    identity = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input}
    bn_after_conv = False
    for n in graph.node:
        if n.op_type == "BatchNormalization" and n.input:
            x = n.input[0]
            while x in identity and x not in conv_outputs:
                x = identity[x]
            bn_after_conv = bn_after_conv or x in conv_outputs

    try:
        n_parameters = _n_parameters(g)
    except (_Untraceable, *_BAD_GRAPH) as e:
        raise fail(f"cannot count parameters: {e}") from None
    return LoadedModel(
        convs=convs,
        depth_method="onnx-graph",
        n_parameters=n_parameters,
        extra_meta={
            "weight_precision": precisions.pop() if len(precisions) == 1 else "mixed",
            "bn_folded": "no" if bn_after_conv else "unknown",
        },
    )


@register_source("onnx", keys=FILE_KEYS)
def load_onnx(model_id: str, entry: Mapping[str, Any]) -> LoadedModel:
    """Load the convs of an ONNX file named by a zoo entry.

    Parameters
    ----------
    model_id : str
        The entry's id.
    entry : mapping
        ``path``, or ``package`` and ``file`` (see :func:`filterdb.sources.files.resolve_file`).

    Returns
    -------
    LoadedModel
        As :func:`read_onnx`, with ``weights`` and the file's origin (``package``, ``license``)
        in ``extra_meta``.
    """
    path, meta = resolve_file(model_id, entry)
    loaded = read_onnx(model_id, path)
    loaded.weights = str(meta.pop("weights"))
    loaded.extra_meta.update(meta)
    return loaded
