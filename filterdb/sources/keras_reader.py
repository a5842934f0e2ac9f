"""The ``keras`` source: conv kernels read from Keras HDF5 weight files with h5py.

Neither Keras nor TensorFlow is imported; the file is read as plain HDF5. Two layouts are
understood:

Keras 3 ``.weights.h5`` (``model.save_weights``, also the ``model.weights.h5`` inside a
``.keras`` archive)
    Every object that owns variables has a group ``<path>/vars`` holding datasets ``0``, ``1``,
    ... in the order of the layer's variables (Conv2D: kernel, bias; DepthwiseConv2D: depthwise
    kernel, bias; SeparableConv2D: depthwise kernel, pointwise kernel, bias; BatchNormalization:
    gamma, beta, moving mean, moving variance). ``<path>`` is how Keras reached the object:
    an *attribute name* of a subclassed model or layer (``block1``, ``dsn1``), or, for the
    layers of a Sequential/Functional model, ``layers/<snake_case class name>[_k]`` where ``k``
    counts the layers of that class in ``model.layers`` order (``layers/conv2d``,
    ``layers/conv2d_1``, ``layers/max_pooling2d``). Newer Keras 3 versions put the layer's own
    ``name`` as an attribute on the ``vars`` group. The file holds no architecture.
Keras 2 / tf.keras legacy ``.h5`` (``save_weights`` or ``model.save`` in HDF5 format)
    Layer groups ``<layer>`` (under ``model_weights`` for a full model) with a ``weight_names``
    attribute (``conv1/kernel:0``, ``bn1/moving_variance:0``) naming datasets inside the group,
    and a ``layer_names`` attribute on their parent listing the layers in ``model.layers`` order
    (both possibly split into ``layer_names0``, ``layer_names1``, ... when long). A full model
    also stores its architecture as JSON in the root attribute ``model_config``;
    ``optimizer_weights`` is never read.

Conv kernels and what they become
    Keras stores every 2-D conv kernel HWIO, ``[kh, kw, c_in / groups, c_out]``, which becomes
    OIHW ``(c_out, c_in / groups, kh, kw)``; a depthwise kernel ``[kh, kw, C, multiplier]``
    becomes ``(C * multiplier, 1, kh, kw)`` with ``groups = C`` (output channel ``c * m + j``,
    as TensorFlow orders them). With a ``model_config`` the layer class decides: ``Conv2D``,
    ``DepthwiseConv2D``, ``SeparableConv2D`` (a depthwise then a pointwise conv) count, a
    ``Conv2DTranspose`` does not (its kernel is ``[kh, kw, c_out, c_in]`` and torch's extraction
    skips transposed convs too), and strides, dilation and groups come from the layer config.
    Without one, **a weights-only file cannot tell a transposed conv from a conv**: every 4-D
    floating dataset is taken as a Conv2D kernel unless its layer's name (the layer name, the
    Keras 3 container name or ``name`` attribute) contains ``transpose`` or ``deconv``; it is
    depthwise when the weight or layer name contains ``depthwise`` (the first kernel of a
    ``separable`` layer too, its second is the pointwise one); grouped convs read as
    ``groups=1`` (the per-group filters are still exact) and strides and dilation as 1.

Depth
    With a ``model_config``, the longest path from the model inputs counted in 2-D convs over
    the layers' ``inbound_nodes`` (both the Keras 2 ``[layer, node, tensor, kwargs]`` lists and
    the Keras 3 ``{"args", "kwargs"}`` nodes with ``keras_history``; nested models are followed;
    parallel branches share a depth; a shared layer takes its shallowest call), recorded as
    ``depth_method="keras-graph"``. Where that fails or misses a conv, and for weights-only
    files, the order of the conv kernels in the file (``"file-order"``). h5py iterates the
    members of a group alphabetically (neither Keras asks HDF5 to track creation order), so
    ``conv2d_10`` would come before ``conv2d_2`` and a Keras 2 ``dense`` before ``input``. For
    Keras 2 files the order is therefore taken from the ``layer_names`` attribute (the model's
    layer order) and ``weight_names`` within a layer, and only falls back to group order where
    those attributes are missing. Keras 3 files store no order: Keras writes the ``layers``
    container first, in ``model.layers`` order, then the other attributes in sorted order
    (private ``_`` ones last). The container names only keep the order *within one class*
    (``conv2d``, ``conv2d_1``, ...), the ``name`` attributes are user names or per-class
    counters, and the offsets of the objects in the file follow the write order only until
    HDF5 reuses freed space. The reader follows Keras's walk with numeric-aware sorting
    (``conv2d_2`` before ``conv2d_10``): exact for a Sequential/Functional made of one conv class,
    and for a subclassed model it is the alphabetical order of its attribute names, which is its
    true order only where the names say so (``block1`` ... ``block5``).

Names
    A conv is named after its layer: the Keras 2 layer name (``outer/inner`` inside a nested
    model), the Keras 3 ``name`` attribute where every layer with weights has a distinct one,
    else the Keras 3 group path (``block1/layers/conv2d``); a layer holding several kernels
    (SeparableConv2D) adds the weight's name or variable index (``sep/depthwise_kernel``).

Meta
    ``weight_precision`` is the stored dtype of the conv kernels (``float16``, ``float32``,
    ``float64``, ``bfloat16`` for Keras 3's tagged bfloat16 datasets, or ``mixed``);
    ``bn_folded`` is ``no`` when the file holds a BatchNormalization layer (a
    ``moving_variance`` weight, a ``BatchNormalization`` class in the config or container name,
    or, in a Keras 3 file, a layer of four equal-length vectors whose last is non-negative, its
    moving variance) and ``unknown`` otherwise (``gamma`` alone is not taken as evidence:
    LayerNormalization and GroupNormalization have one too). ``n_parameters`` counts the
    elements of every weight dataset of the model (BatchNormalization statistics included,
    optimizer state, metric trackers and random-seed state excluded).

Keras 1 files (``keras_version`` 1.x: kernels may be channels-first) and Keras 2 files written
by the Theano backend (kernels stored flipped) are refused rather than misread.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from filterdb.sources import GraphConv, LoadedModel, ModelLoadError, register_source
from filterdb.sources.files import FILE_KEYS, resolve_file

__all__ = ["load_keras", "read_keras_h5"]

_CONV = frozenset({"Conv2D", "Convolution2D"})
_DEPTHWISE = frozenset({"DepthwiseConv2D"})
_SEPARABLE = frozenset({"SeparableConv2D", "SeparableConvolution2D"})
_TRANSPOSED = frozenset({"Conv2DTranspose", "Convolution2DTranspose", "Deconvolution2D"})
_BATCH_NORM = frozenset({"BatchNormalization", "SyncBatchNormalization"})
_MODELS = frozenset({"Functional", "Model", "Sequential"})
_WRAPPERS = frozenset({"TimeDistributed"})

#: Keras 3 top-level attributes that hold training state, not model weights.
_V3_SKIP = frozenset(
    {
        "optimizer",
        "_optimizer",
        "metrics",
        "_metrics",
        "compile_metrics",
        "_compile_metrics",
        "compile_loss",
        "_compile_loss",
        "loss_tracker",
        "_loss_tracker",
        "_tracker",
    }
)
_V3_CONTAINERS = ("layers", "_layer_checkpoint_dependencies")
_PRECISIONS = {"float16": "float16", "float32": "float32", "float64": "float64"}


class _GraphError(ValueError):
    """The model_config graph cannot give every conv a depth."""


@dataclass
class _Weight:
    """One weight dataset of a layer, in the order the file stores the layer's weights."""

    label: str  # weight name within its layer: legacy name without ':0', Keras 3 var index
    dataset: h5py.Dataset
    owner: str  # the name of the layer owning it, for the name rules


@dataclass
class _Layer:
    """A group of weights (a layer, or a nested model in a legacy file)."""

    key: str  # legacy: layer name; Keras 3: path of the group holding ``vars``
    name: str  # the layer name used for conv names (Keras 3: ``name`` attribute if usable)
    hints: tuple[str, ...]  # lower-case names the name rules look at
    weights: list[_Weight] = field(default_factory=list)


@dataclass
class _Kernel:
    """A conv kernel that counts, before reading."""

    qid: str  # the layer it belongs to (config layer id, else the file's layer)
    label: str
    dataset: h5py.Dataset
    depthwise: bool
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    name: str = ""


def _natural_key(text: str) -> tuple[Any, ...]:
    """Sort key ordering embedded numbers by value: ``conv2d_2`` before ``conv2d_10``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes | np.bytes_) else str(value)


def _attr_list(group: h5py.Group, name: str) -> list[str] | None:
    """A string-list attribute, joined from Keras's ``name0``, ``name1``, ... chunks if split."""
    if name in group.attrs:
        return [_text(v) for v in np.atleast_1d(group.attrs[name])]
    chunks: list[str] = []
    i = 0
    while f"{name}{i}" in group.attrs:
        chunks.extend(_text(v) for v in np.atleast_1d(group.attrs[f"{name}{i}"]))
        i += 1
    return chunks if i else None


def _pair(value: Any, default: int = 1) -> tuple[int, int]:
    if value is None:
        return (default, default)
    if isinstance(value, int | float):
        return (int(value), int(value))
    items = list(value)
    return (int(items[0]), int(items[-1])) if items else (default, default)


def _layer_name(layer: Mapping[str, Any]) -> str:
    cfg = layer.get("config")
    if "name" in layer:
        return str(layer["name"])
    if isinstance(cfg, Mapping) and "name" in cfg:
        return str(cfg["name"])
    raise _GraphError("a layer without a name")


def _sub_layers(layer: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The layers of a (nested) model config, or None for an ordinary layer."""
    cfg = layer.get("config")
    if isinstance(cfg, list):  # Keras 2.0-2.2 Sequential: the config is the layer list
        return cfg
    if isinstance(cfg, Mapping) and isinstance(cfg.get("layers"), list):
        if layer.get("class_name") in _MODELS or "input_layers" in cfg:
            return list(cfg["layers"])
    return None


def _unwrap(layer: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """Class name and config of a layer, looking through ``TimeDistributed``."""
    cls, cfg = str(layer.get("class_name", "")), layer.get("config") or {}
    if cls in _WRAPPERS and isinstance(cfg, Mapping) and isinstance(cfg.get("layer"), Mapping):
        inner = cfg["layer"]
        return str(inner.get("class_name", "")), inner.get("config") or {}
    return cls, cfg if isinstance(cfg, Mapping) else {}


def _index_config(layer: Mapping[str, Any], prefix: str, out: dict[str, Mapping[str, Any]]) -> None:
    """Every layer of a model config by id (``outer/inner`` inside nested models)."""
    for sub in _sub_layers(layer) or []:
        qid = prefix + _layer_name(sub)
        out[qid] = sub
        if _sub_layers(sub) is not None:
            _index_config(sub, qid + "/", out)


# --- depth from the functional graph --------------------------------------------------------


def _is_ref(obj: Any, names: Mapping[str, Any]) -> bool:
    return (
        isinstance(obj, list)
        and len(obj) in (3, 4)
        and isinstance(obj[0], str)
        and obj[0] in names
        and isinstance(obj[1], int)
        and isinstance(obj[2], int)
    )


def _node_refs(obj: Any, names: Mapping[str, Any]) -> Iterator[tuple[str, int, int]]:
    """The ``(layer, node index, tensor index)`` references of one inbound node.

    Keras 2 nodes are lists of ``[layer, node, tensor, kwargs]`` (``kwargs`` may hold more
    references, e.g. the ``y`` of a TFOpLambda add); Keras 3 nodes hold ``__keras_tensor__``
    objects whose ``keras_history`` is the reference.
    """
    if isinstance(obj, Mapping):
        cfg = obj.get("config")
        if isinstance(cfg, Mapping) and "keras_history" in cfg:
            name, node, tensor = cfg["keras_history"][:3]
            yield str(name), int(node), int(tensor)
            return
        for value in obj.values():
            yield from _node_refs(value, names)
    elif _is_ref(obj, names):
        yield obj[0], obj[1], obj[2]
        if len(obj) == 4:
            yield from _node_refs(obj[3], names)
    elif isinstance(obj, list):
        for value in obj:
            yield from _node_refs(value, names)


def _io_refs(value: Any) -> list[tuple[str, int, int]]:
    """``input_layers``/``output_layers``: a list of ``[name, node, tensor]`` or a single one."""
    if not value:
        return []
    if isinstance(value, list) and value and isinstance(value[0], str):
        value = [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    return [(str(v[0]), int(v[1]), int(v[2])) for v in value]


class _GraphDepths:
    """Longest path in convs over a Keras model config; ``first[qid]`` is the depth reaching the
    layer (its first conv sits one deeper), the shallowest over the layer's calls."""

    def __init__(self, n_convs: Mapping[str, int]) -> None:
        self.n_convs = n_convs
        self.first: dict[str, int] = {}

    def call(self, layer: Mapping[str, Any], qid: str, inputs: list[int]) -> list[int]:
        if _sub_layers(layer) is not None:
            return self.model(layer, qid + "/", inputs)
        d = max(inputs, default=0)
        k = self.n_convs.get(qid, 0)
        if k:
            self.first[qid] = min(self.first.get(qid, d), d)
        return [d + k]

    def model(self, layer: Mapping[str, Any], prefix: str, inputs: list[int]) -> list[int]:
        layers = _sub_layers(layer) or []
        cfg = layer.get("config")
        if not isinstance(cfg, Mapping) or "input_layers" not in cfg:  # a Sequential: a chain
            d = max(inputs, default=0)
            for sub in layers:
                d = max(self.call(sub, prefix + _layer_name(sub), [d]), default=d)
            return [d]
        by_name = {_layer_name(sub): sub for sub in layers}
        done: dict[tuple[str, int], list[int]] = {}
        for i, (name, node, _t) in enumerate(_io_refs(cfg.get("input_layers"))):
            done[(name, node)] = [inputs[i] if i < len(inputs) else max(inputs, default=0)]
        pending = [
            (name, k, node)
            for name, sub in by_name.items()
            for k, node in enumerate(sub.get("inbound_nodes") or [])
        ]
        while pending:  # config order is topological, so this is normally one pass
            left = []
            for name, k, node in pending:
                if (name, k) in done:  # an input layer of this model
                    continue
                refs = list(_node_refs(node, by_name))
                if not all((r, n) in done for r, n, _t in refs):
                    left.append((name, k, node))
                    continue
                ins = [_pick(done[(r, n)], t) for r, n, t in refs]
                done[(name, k)] = self.call(by_name[name], prefix + name, ins)
            if len(left) == len(pending):
                raise _GraphError(f"unresolvable inbound nodes of {[p[0] for p in left][:5]}")
            pending = left
        outs = _io_refs(cfg.get("output_layers"))
        return [_pick(done[(n, k)], t) for n, k, t in outs if (n, k) in done] or [0]


def _pick(depths: list[int], tensor: int) -> int:
    return depths[tensor] if 0 <= tensor < len(depths) else max(depths)


# --- reading the two layouts ----------------------------------------------------------------


def _walk_datasets(group: h5py.Group, prefix: str = "") -> Iterator[tuple[str, h5py.Dataset]]:
    for key in sorted(group.keys(), key=_natural_key):
        obj = group.get(key)
        if isinstance(obj, h5py.Dataset):
            yield prefix + key, obj
        elif isinstance(obj, h5py.Group):
            yield from _walk_datasets(obj, prefix + key + "/")


def _legacy_layers(root: h5py.Group) -> list[_Layer]:
    """Layers of a Keras 2 file in ``layer_names`` order, weights in ``weight_names`` order."""
    names = _attr_list(root, "layer_names")
    if names is None:
        groups = (k for k in root.keys() if isinstance(root.get(k), h5py.Group))
        names = sorted(groups, key=_natural_key)
    if "top_level_model_weights" in root and "top_level_model_weights" not in names:
        names = [*names, "top_level_model_weights"]
    layers = []
    for name in names:
        group = root.get(name)
        if not isinstance(group, h5py.Group):
            continue
        weight_names = _attr_list(group, "weight_names")
        pairs: Iterable[tuple[str, Any]]
        if weight_names is None:
            pairs = list(_walk_datasets(group))
        else:
            pairs = [(w, group.get(w)) for w in weight_names]
        layer = _Layer(key=name, name=name, hints=(name.lower(),))
        for wname, ds in pairs:
            if not isinstance(ds, h5py.Dataset):
                raise KeyError(f"{group.name}/{wname}")
            if "seed_generator" in wname:
                continue
            label = wname[:-2] if wname.endswith(":0") else wname
            if label.startswith(name + "/"):
                label = label[len(name) + 1 :]
            parts = label.split("/")
            owner = parts[-2] if len(parts) > 1 else name
            layer.weights.append(_Weight(label=label, dataset=ds, owner=owner))
        layers.append(layer)
    return layers


def _v3_layers(root: h5py.Group) -> list[_Layer]:
    """Layers of a Keras 3 file in Keras's own save order, numeric-aware (see module doc)."""
    found: list[tuple[str, h5py.Group]] = []

    def walk(group: h5py.Group, path: str) -> None:
        own = group.get("vars")
        if isinstance(own, h5py.Group):
            found.append((path, own))
        keys = [k for k in group.keys() if k != "vars"]
        first = [k for k in _V3_CONTAINERS if k in keys]
        rest = sorted(
            (k for k in keys if k not in first), key=lambda k: (k.startswith("_"), _natural_key(k))
        )
        for key in first + rest:
            child = group.get(key)
            if not isinstance(child, h5py.Group) or "seed_generator" in key:
                continue
            if not path and key in _V3_SKIP:
                continue
            walk(child, f"{path}/{key}" if path else key)

    walk(root, "")
    layers = []
    for path, vars_group in found:
        leaf = path.rsplit("/", 1)[-1] if path else ""
        own_name = _text(vars_group.attrs["name"]) if "name" in vars_group.attrs else ""
        hints = tuple(h.lower() for h in (leaf, own_name) if h)
        layer = _Layer(key=path, name=path or "vars", hints=hints)
        for label, ds in _walk_datasets(vars_group):
            layer.weights.append(_Weight(label=label, dataset=ds, owner=leaf or own_name))
        layers.append(layer)
    # prefer the layers' own names where the file has one, unique, for every layer with weights
    named = [(layer, g) for layer, (_p, g) in zip(layers, found, strict=True) if layer.weights]
    names = [_text(g.attrs["name"]) if "name" in g.attrs else "" for _l, g in named]
    if all(names) and len(set(names)) == len(names):
        for (layer, _g), name in zip(named, names, strict=True):
            layer.name = name
    return layers


def _is_floating(ds: h5py.Dataset) -> bool:
    return ds.dtype.kind == "f" or _is_bfloat16(ds)


def _is_bfloat16(ds: h5py.Dataset) -> bool:
    return "dtype" in ds.attrs and _text(ds.attrs["dtype"]) == "bfloat16"


def _precision(ds: h5py.Dataset) -> str:
    if _is_bfloat16(ds):
        return "bfloat16"
    return _PRECISIONS.get(ds.dtype.name, ds.dtype.name)


def _name_kind(hints: Iterable[str], label: str, index: int) -> str:
    """``conv``, ``depthwise`` or ``transposed`` from names alone (no config)."""
    hints = [h.lower() for h in hints]
    label = label.lower().rsplit("/", 1)[-1]
    if any("transpose" in h or "deconv" in h for h in hints):
        return "transposed"
    if "pointwise" in label:
        return "conv"
    if "depthwise" in label:
        return "depthwise"
    if any("separable" in h for h in hints):
        return "depthwise" if index == 0 else "conv"
    if any("depthwise" in h for h in hints):
        return "depthwise"
    return "conv"


def _class_kind(cls: str, label: str, index: int) -> str | None:
    """The kind a known Keras class gives its ``index``-th 4-D kernel, None if not known."""
    if cls in _TRANSPOSED:
        return "transposed"
    if cls in _DEPTHWISE:
        return "depthwise"
    if cls in _SEPARABLE:
        low = label.lower()
        if "pointwise" in low:
            return "conv"
        return "depthwise" if "depthwise" in low or index == 0 else "conv"
    if cls in _CONV:
        return "conv"
    return None


def _resolve_qid(layer: _Layer, weight: _Weight, index: Mapping[str, Mapping[str, Any]]) -> str:
    """The config layer a legacy weight belongs to (``outer/inner`` inside a nested model)."""
    if _sub_layers(index.get(layer.key, {})) is None:
        return layer.key
    inner = [q for q in index if q.startswith(layer.key + "/")]
    parts = weight.label.split("/")[:-1]
    for part in reversed(parts):
        cands = [q for q in inner if q.rsplit("/", 1)[-1] == part]
        if cands:
            return max(cands, key=lambda q: sum(s in parts for s in q.split("/")))
    return layer.key


def _to_oihw(arr: np.ndarray, depthwise: bool) -> np.ndarray:
    kh, kw, cin, cout = arr.shape
    if depthwise:  # [kh, kw, C, m] -> (C * m, 1, kh, kw), output channel c * m + j
        out = arr.transpose(2, 3, 0, 1).reshape(cin * cout, 1, kh, kw)
    else:  # HWIO -> OIHW
        out = arr.transpose(3, 2, 0, 1)
    return np.ascontiguousarray(out, dtype=np.float32)


def _read(ds: h5py.Dataset, model_id: str, path: Path) -> np.ndarray:
    try:
        if _is_bfloat16(ds):
            raw = np.ascontiguousarray(ds[()])
            bits = np.frombuffer(raw.tobytes(), dtype="<u2").reshape(ds.shape)
            return (bits.astype(np.uint32) << 16).view(np.float32)
        return np.asarray(ds[()])
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"model {model_id!r}: cannot read dataset {ds.name} of {path}: {exc}"
        ) from None


def _is_v3_batch_norm(layer: _Layer) -> bool:
    """Four equal-length vectors, the last non-negative: gamma, beta, moving mean and variance."""
    ws = [w.dataset for w in layer.weights]
    if len(ws) != 4 or any(d.ndim != 1 or not _is_floating(d) for d in ws):
        return False
    if len({d.shape for d in ws}) != 1 or _is_bfloat16(ws[3]):
        return False
    try:
        return bool(np.all(ws[3][()] >= 0))
    except (OSError, ValueError):
        return False


def _check_version(attrs: h5py.AttributeManager, model_id: str, path: Path) -> None:
    version = _text(attrs["keras_version"]) if "keras_version" in attrs else ""
    backend = _text(attrs["backend"]) if "backend" in attrs else ""
    if version.startswith("1."):
        raise ModelLoadError(
            f"model {model_id!r}: {path} was written by Keras {version}, whose conv kernels may "
            "be channels-first or channels-last; Keras 1 files are not supported"
        )
    if backend == "theano":
        raise ModelLoadError(
            f"model {model_id!r}: {path} was written by the Theano backend, which stores conv "
            "kernels flipped; not supported"
        )


def _open(path: Path, model_id: str) -> h5py.File:
    if not h5py.is_hdf5(path):
        what = (
            "a zip archive (a .keras file? give its model.weights.h5)"
            if zipfile.is_zipfile(path)
            else "not an HDF5 file"
        )
        raise ModelLoadError(f"model {model_id!r}: {path} is {what}; a Keras .h5 is expected")
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"model {model_id!r}: cannot open {path} as HDF5 (truncated or damaged?): {exc}"
        ) from None


def read_keras_h5(path: str | Path, model_id: str = "?") -> LoadedModel:
    """Read the conv kernels of a Keras HDF5 weight file (see the module docstring).

    Parameters
    ----------
    path : str or Path
        A Keras 3 ``.weights.h5`` or a Keras 2 / tf.keras ``.h5`` (weights only or full model).
    model_id : str
        Named in errors.

    Returns
    -------
    LoadedModel
        ``convs`` (OIHW float32, with depth, groups, stride and dilation), ``depth_method``
        (``keras-graph`` or ``file-order``), ``n_parameters`` and ``extra_meta`` with
        ``weight_precision`` and ``bn_folded``; ``weights`` is left empty.

    Raises
    ------
    ModelLoadError
        Not an HDF5 file, truncated, neither Keras layout, no conv kernel, an unreadable or
        integer conv kernel, a Keras 1 or Theano file.

    Examples
    --------
    >>> import tempfile, h5py, numpy as np
    >>> p = tempfile.mkdtemp() + "/m.weights.h5"
    >>> with h5py.File(p, "w") as f:
    ...     f["layers/conv2d/vars/0"] = np.ones((3, 3, 2, 4), np.float32)
    ...     f["layers/conv2d/vars/1"] = np.zeros(4, np.float32)
    >>> m = read_keras_h5(p)
    >>> m.convs[0].weight.shape, m.depth_method, m.n_parameters
    ((4, 2, 3, 3), 'file-order', 76)
    """
    path = Path(path)
    with _open(path, model_id) as f:
        try:
            return _read_file(f, path, model_id)
        except ModelLoadError:
            raise
        except (KeyError, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"model {model_id!r}: cannot read {path}: {exc}") from None


def _read_file(f: h5py.File, path: Path, model_id: str) -> LoadedModel:
    config: Mapping[str, Any] | None = None
    if isinstance(f.get("model_weights"), h5py.Group):
        root = f["model_weights"]
        _check_version(f.attrs, model_id, path)
        _check_version(root.attrs, model_id, path)
        if "model_config" in f.attrs:
            try:
                config = json.loads(_text(f.attrs["model_config"]))
            except (ValueError, TypeError):
                config = None
        layers, legacy = _legacy_layers(root), True
    elif _attr_list(f, "layer_names") is not None:
        _check_version(f.attrs, model_id, path)
        layers, legacy = _legacy_layers(f), True
    else:
        layers, legacy = _v3_layers(f), False
        if not layers:
            raise ModelLoadError(
                f"model {model_id!r}: {path} is HDF5 but neither a Keras 3 weights file "
                "(no 'vars' groups) nor a Keras 2 one (no 'layer_names')"
            )

    index: dict[str, Mapping[str, Any]] = {}
    if config is not None:
        try:
            _index_config(config, "", index)
        except (_GraphError, TypeError, AttributeError):
            config, index = None, {}

    kernels: list[_Kernel] = []
    bn = False
    n_parameters = 0
    for layer in layers:
        n_in_layer = 0
        for w in layer.weights:
            ds = w.dataset
            n_parameters += int(ds.size)
            base = w.label.rsplit("/", 1)[-1]
            if base == "moving_variance":
                bn = True
            if ds.ndim != 4:
                continue
            qid = _resolve_qid(layer, w, index) if index else layer.key
            cls, cfg = _unwrap(index[qid]) if qid in index else ("", {})
            kind = _class_kind(cls, w.label, n_in_layer)
            if kind is None:
                hints = (w.owner.lower(),) if legacy else layer.hints
                kind = _name_kind(hints, w.label, n_in_layer)
            n_in_layer += 1
            if kind == "transposed":
                continue
            if not _is_floating(ds):
                raise ModelLoadError(
                    f"model {model_id!r}: conv kernel {ds.name} of {path} is stored as "
                    f"{ds.dtype}; quantized kernels are not supported"
                )
            k = _Kernel(qid=qid, label=w.label, dataset=ds, depthwise=kind == "depthwise")
            if cfg:
                pointwise = cls in _SEPARABLE and kind == "conv"
                if not pointwise:
                    k.stride = _pair(cfg.get("strides"))
                    k.dilation = _pair(cfg.get("dilation_rate"))
                if cls in _CONV:
                    k.groups = int(cfg.get("groups", 1) or 1)
            kernels.append(k)
        if not legacy and (any("batch_norm" in h for h in layer.hints) or _is_v3_batch_norm(layer)):
            bn = True
    if any(_unwrap(v)[0] in _BATCH_NORM for v in index.values()):
        bn = True
    if not kernels:
        raise ModelLoadError(f"model {model_id!r}: {path} holds no 2-D conv kernel")

    # conv names: the layer's, plus the weight label where a layer holds several kernels
    per_qid: dict[str, list[_Kernel]] = {}
    for k in kernels:
        per_qid.setdefault(k.qid, []).append(k)
    display = {layer.key: layer.name for layer in layers}
    for qid, ks in per_qid.items():
        base = display.get(qid, qid)
        for k in ks:
            k.name = base if len(ks) == 1 else f"{base}/{k.label}"

    depths, method = list(range(1, len(kernels) + 1)), "file-order"
    if index and config is not None:
        position = {id(k): i for ks in per_qid.values() for i, k in enumerate(ks)}
        graph = _GraphDepths({q: len(ks) for q, ks in per_qid.items()})
        try:
            graph.model(config, "", [])
        except (_GraphError, KeyError, TypeError, ValueError, IndexError, AttributeError):
            graph.first = {}
        if set(per_qid) <= set(graph.first):
            depths = [graph.first[k.qid] + position[id(k)] + 1 for k in kernels]
            method = "keras-graph"

    convs = []
    precisions = set()
    for k, depth in zip(kernels, depths, strict=True):
        arr = _read(k.dataset, model_id, path)
        precisions.add(_precision(k.dataset))
        weight = _to_oihw(arr, k.depthwise)
        groups = int(arr.shape[2]) if k.depthwise else k.groups
        convs.append(
            GraphConv(
                name=k.name,
                weight=weight,
                depth=int(depth),
                groups=groups,
                stride=k.stride,
                dilation=k.dilation,
            )
        )
    return LoadedModel(
        convs=convs,
        depth_method=method,
        n_parameters=n_parameters,
        extra_meta={
            "weight_precision": precisions.pop() if len(precisions) == 1 else "mixed",
            "bn_folded": "no" if bn else "unknown",
        },
    )


@register_source("keras", keys=FILE_KEYS)
def load_keras(model_id: str, entry: Mapping[str, Any]) -> LoadedModel:
    """Load a zoo entry whose weights are a Keras HDF5 file (``path`` or ``package`` + ``file``).

    Parameters
    ----------
    model_id : str
        The entry's id.
    entry : mapping
        ``path``, or ``package`` and ``file`` (see :func:`filterdb.sources.files.resolve_file`).

    Returns
    -------
    LoadedModel
        As :func:`read_keras_h5`, with ``weights`` the file's provenance and the rest of
        :func:`~filterdb.sources.files.resolve_file`'s meta (``package``, ``license``) in
        ``extra_meta``.
    """
    path, meta = resolve_file(model_id, entry)
    loaded = read_keras_h5(path, model_id)
    meta = dict(meta)
    loaded.weights = str(meta.pop("weights"))
    loaded.extra_meta = {**meta, **loaded.extra_meta}
    return loaded
