"""Extraction: a torch module or state dict -> per-layer 3x3 filters, graph depth, kernel counts.

Every ``Conv2d`` with a 3x3 kernel contributes ``c_out * c_in / groups`` filters (grouped and
depthwise included, dilation ignored). Depth is the longest path from the input counted in 2-D
convs of any kernel size, taken from a torch.fx graph; where tracing fails, from the order of a
forward pass; for a bare state dict, from key order. The method used is recorded per layer.

The same torch.fx trace also tells which convs a BatchNorm directly follows: those layers get the
BatchNorm's per-output-channel fold scale (:mod:`filterdb.extract.fold`); all others get scale 1 and
``bn_follows = False``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from filterdb.errors import FilterDBError
from filterdb.sources import LoadedModel

# torch is imported where a torch module or tensor is handled, so that models read by the
# format readers (ONNX, TF.js, Keras: plain numpy) extract without loading torch
if TYPE_CHECKING:
    import torch
    import torch.fx
    from torch import nn

__all__ = ["ExtractionError", "LayerFilters", "ModelFilters", "conv_depths", "extract_filters"]

_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


class ExtractionError(FilterDBError, ValueError):
    """Filters cannot be taken from a model (NaN/Inf weights, untraceable input, ...)."""


@dataclass
class LayerFilters:
    """The 3x3 filters of one conv layer and where the layer sits.

    ``fold_scale`` is the per-output-channel BatchNorm fold scale
    ``gamma / sqrt(running_var + eps)`` (float32, ``(out_channels,)``) when a BatchNorm directly
    follows the conv (``bn_follows``), else ones; ``None`` means ones. The folded filter ``k`` is
    ``weight[k] * fold_scale[k // (in_channels / groups)]``.
    """

    name: str
    weight: np.ndarray  # (n, 3, 3) float32, row-major over (c_out, c_in/groups)
    in_channels: int
    out_channels: int
    groups: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    conv_depth: int
    conv_depth_norm: float
    depth_method: str
    fold_scale: np.ndarray | None = None
    bn_follows: bool = False


@dataclass
class ModelFilters:
    """Everything extraction learns about one model."""

    model_id: str
    layers: list[LayerFilters]
    kernel_counts: dict[str, int] = field(default_factory=dict)
    n_parameters: int = 0
    depth_method: str = "fx"

    @property
    def n_filters_3x3(self) -> int:
        """Number of 3x3 filters over all layers."""
        return int(sum(layer.weight.shape[0] for layer in self.layers))

    @property
    def total_filters(self) -> int:
        """All 2-D filters except 1x1 (the original study's ``total_filters``)."""
        return int(sum(n for shape, n in self.kernel_counts.items() if shape != "1x1"))

    @property
    def share_3x3(self) -> float:
        """Share of 3x3 filters among :attr:`total_filters` (NaN when there are none)."""
        total = self.total_filters
        return self.n_filters_3x3 / total if total else float("nan")


@dataclass
class _Conv:
    name: str
    weight: Any  # torch.Tensor, or a numpy array from a format reader
    in_channels: int
    groups: int
    stride: tuple[int, int]
    dilation: tuple[int, int]


def _as_float32(w: Any) -> np.ndarray:
    """A conv weight as a C-contiguous float32 array (torch tensors converted exactly)."""
    if isinstance(w, np.ndarray):
        return np.ascontiguousarray(w, dtype=np.float32)
    import torch

    w = w.detach().cpu()
    if w.dtype != torch.float32:
        w = w.to(torch.float32)
    return np.ascontiguousarray(w.numpy())


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _module_convs(module: nn.Module) -> dict[str, _Conv]:
    """All 2-D convs of a module (transposed convs excluded), in registration order."""
    from torch import nn

    convs = {}
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            convs[name] = _Conv(
                name, m.weight, m.in_channels, m.groups, _pair(m.stride), _pair(m.dilation)
            )
    return convs


def _graph_convs(loaded: LoadedModel) -> dict[str, _Conv]:
    """The convs a format reader (ONNX, TF.js, Keras) read, as float32 numpy arrays."""
    convs = {}
    for c in loaded.convs or []:
        if c.name in convs:
            raise ExtractionError(f"conv name {c.name!r} occurs twice in the file")
        w = np.ascontiguousarray(c.weight, dtype=np.float32)
        if w.ndim != 4:
            raise ExtractionError(f"conv {c.name!r}: weight of shape {tuple(w.shape)} is not 4-D")
        convs[c.name] = _Conv(
            c.name, w, int(w.shape[1]) * int(c.groups), int(c.groups), c.stride, c.dilation
        )
    return convs


def _state_dict_convs(state: Mapping[str, torch.Tensor]) -> dict[str, _Conv]:
    """4-D weight tensors of a state dict, in key order (groups assumed 1, stride unknown = 1)."""
    convs = {}
    for key, t in state.items():
        if t.ndim == 4 and t.is_floating_point() and not key.endswith(_BUFFER_SUFFIXES):
            name = key[: -len(".weight")] if key.endswith(".weight") else key
            convs[name] = _Conv(name, t, int(t.shape[1]), 1, (1, 1), (1, 1))
    return convs


def _tracer(leaf_types: tuple[type, ...], autowrap_functions: tuple = ()) -> torch.fx.Tracer:
    """An fx tracer that keeps convs and the source's leaf module types as leaves."""
    import torch.fx
    from torch import nn

    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            if isinstance(m, nn.Conv2d) or (leaf_types and isinstance(m, leaf_types)):
                return True
            return super().is_leaf_module(m, qualname)

    return _Tracer(autowrap_functions=autowrap_functions)


def _fx_depths(
    loaded: LoadedModel, convs: Mapping[str, _Conv]
) -> tuple[dict[str, int], torch.fx.Graph]:
    """Longest path from the input, counted in convs, for every conv called in the fx graph;
    also the graph (for the BatchNorm fold)."""
    module = loaded.module
    assert module is not None
    tracer = _tracer(tuple(loaded.leaf_modules), tuple(loaded.autowrap_functions))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = tracer.trace(module)
    depth: dict[torch.fx.Node, int] = {}
    conv_depth: dict[str, int] = {}
    for node in graph.nodes:  # nodes are in topological order
        d = max((depth[p] for p in node.all_input_nodes), default=0)
        if node.op == "call_module":
            target = str(node.target)
            # the conv itself, or a leaf module holding convs: those run as a chain
            inner = [n for n in convs if n == target or n.startswith(target + ".")]
            for name in inner:
                d += 1
                conv_depth[name] = min(conv_depth.get(name, d), d)
        depth[node] = d
    return conv_depth, graph


def _execution_depths(loaded: LoadedModel, convs: Mapping[str, _Conv]) -> dict[str, int]:
    """Order of first call in one forward pass on a zero input."""
    import torch

    module = loaded.module
    assert module is not None
    if loaded.input_size is None:
        raise ExtractionError("no input_size to run a forward pass")
    order: dict[str, int] = {}
    handles = []
    for name, m in module.named_modules():
        if name in convs:

            def hook(_m: nn.Module, _i: object, _o: object, name: str = name) -> None:
                order.setdefault(name, len(order) + 1)

            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(torch.zeros((1, *loaded.input_size)))
    finally:
        for h in handles:
            h.remove()
    return order


def _depths_and_graph(
    loaded: LoadedModel, convs: Mapping[str, _Conv]
) -> tuple[dict[str, int], str, torch.fx.Graph | None]:
    """Conv depths, their method and the fx graph when tracing succeeded (else ``None``).

    One trace serves both the depths and the BatchNorm fold; the graph is returned even when
    its depths do not cover every conv (a conv never called in ``forward``), since which convs
    a BatchNorm follows is still read correctly from it.
    """
    if loaded.convs is not None:
        depths = {c.name: int(c.depth) for c in loaded.convs}
        return depths, loaded.depth_method or "file-order", None
    if loaded.module is None:
        return {name: i + 1 for i, name in enumerate(convs)}, "key-order", None
    graph = None
    try:
        depths, graph = _fx_depths(loaded, convs)
        if set(depths) == set(convs):
            return depths, "fx", graph
    except Exception:
        pass
    try:
        depths = _execution_depths(loaded, convs)
        if set(depths) == set(convs):
            return depths, "execution-order", graph
    except Exception:
        pass
    return {name: i + 1 for i, name in enumerate(convs)}, "key-order", graph


def conv_depths(loaded: LoadedModel) -> tuple[dict[str, int], str]:
    """Raw depth of every 2-D conv and the method that gave it.

    Parameters
    ----------
    loaded : LoadedModel
        A module (traced with torch.fx, else run once) or a state dict (key order).

    Returns
    -------
    depths : dict of str to int
        Conv name -> depth (1-based: number of convs on the longest path up to and including it).
    method : str
        ``fx``, ``execution-order`` or ``key-order``.
    """
    # a format reader's convs carry their own depths: no need to convert their weights
    convs = {} if loaded.convs is not None else _convs_of(loaded)
    depths, method, _ = _depths_and_graph(loaded, convs)
    return depths, method


def _convs_of(loaded: LoadedModel) -> dict[str, _Conv]:
    if loaded.convs is not None:
        return _graph_convs(loaded)
    if loaded.module is not None:
        return _module_convs(loaded.module)
    return _state_dict_convs(loaded.state_dict or {})


def _kernel_counts(convs: Mapping[str, _Conv]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in convs.values():
        kh, kw = int(c.weight.shape[2]), int(c.weight.shape[3])
        key = f"{kh}x{kw}"
        counts[key] = counts.get(key, 0) + int(c.weight.shape[0]) * int(c.weight.shape[1])
    return dict(sorted(counts.items()))


def _n_parameters(loaded: LoadedModel) -> int:
    if loaded.n_parameters is not None:
        return int(loaded.n_parameters)
    if loaded.convs is not None:
        return int(sum(c.weight.size for c in loaded.convs))
    if loaded.module is not None:
        return int(sum(p.numel() for p in loaded.module.parameters()))
    state = loaded.state_dict or {}
    return int(sum(t.numel() for k, t in state.items() if not k.endswith(_BUFFER_SUFFIXES)))


def extract_filters(model_id: str, loaded: LoadedModel) -> ModelFilters:
    """Take every 3x3 filter of a loaded model, with its layer's place in the graph.

    Parameters
    ----------
    model_id : str
        The model's id, named in errors.
    loaded : LoadedModel
        What a source returned.

    Returns
    -------
    ModelFilters
        Layers sorted by (conv_depth, registration order); weights are the module's own float32
        values, bit for bit (other float dtypes are converted to float32). Each layer carries
        the fold scale of the BatchNorm that directly follows it in the fx graph (ones and
        ``bn_follows = False`` where none does or no graph exists).

    Raises
    ------
    ExtractionError
        A 3x3 layer holds NaN or Inf, or the BatchNorm after it gives a non-finite fold scale.

    Examples
    --------
    >>> import torch
    >>> from filterdb.sources import LoadedModel
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    >>> mf = extract_filters("tiny", LoadedModel(module=net))
    >>> [(layer.name, layer.weight.shape, layer.conv_depth) for layer in mf.layers]
    [('0', (24, 3, 3), 0), ('2', (32, 3, 3), 1)]
    """
    convs = _convs_of(loaded)
    depths, method, graph = _depths_and_graph(loaded, convs)
    scales: dict[str, np.ndarray] = {}
    if graph is not None and loaded.module is not None:
        three = [name for name, c in convs.items() if tuple(c.weight.shape[2:]) == (3, 3)]
        from filterdb.extract.fold import FoldError, graph_fold_scales

        try:
            scales = graph_fold_scales(graph, loaded.module, three)
        except FoldError as exc:
            raise ExtractionError(f"model {model_id!r}: {exc}") from None
    levels = sorted(set(depths.values()))
    rank = {d: i for i, d in enumerate(levels)}
    span = max(len(levels) - 1, 1)
    position = {name: i for i, name in enumerate(convs)}
    layers: list[LayerFilters] = []
    for name, c in convs.items():
        if tuple(c.weight.shape[2:]) != (3, 3):
            continue
        arr = _as_float32(c.weight).reshape(-1, 3, 3)
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ExtractionError(
                f"model {model_id!r}, layer {name!r}: {bad} weight(s) are NaN or Inf"
            )
        out_channels = int(c.weight.shape[0])
        in_per_group = int(c.weight.shape[1])
        groups = c.groups if loaded.module is not None or loaded.convs is not None else 1
        conv_depth = rank[depths[name]]
        scale = scales.get(name)
        layers.append(
            LayerFilters(
                name=name,
                weight=arr,
                in_channels=in_per_group * groups,
                out_channels=out_channels,
                groups=groups,
                stride=c.stride,
                dilation=c.dilation,
                conv_depth=conv_depth,
                conv_depth_norm=conv_depth / span if len(levels) > 1 else 0.0,
                depth_method=method,
                fold_scale=scale if scale is not None else np.ones(out_channels, np.float32),
                bn_follows=scale is not None,
            )
        )
    layers.sort(key=lambda layer: (layer.conv_depth, position[layer.name]))
    return ModelFilters(
        model_id=model_id,
        layers=layers,
        kernel_counts=_kernel_counts(convs),
        n_parameters=_n_parameters(loaded),
        depth_method=method,
    )
