"""Model sources: a tiny registry from source name to loader.

A zoo entry (one item of ``params.yaml: zoo``) names its ``source``; the loader registered under
that name turns the entry into a :class:`LoadedModel` (a torch module or a state dict). New
sources plug in with :func:`register_source` without touching the extraction code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from filterdb.errors import FilterDBError
from filterdb.registry import Registry

if TYPE_CHECKING:  # torch is imported by the sources that need it, not by the registry
    import torch

__all__ = [
    "SOURCES",
    "GraphConv",
    "LoadedModel",
    "ModelLoadError",
    "SourceLoader",
    "SourceSpec",
    "get_source",
    "list_sources",
    "load_model",
    "register_source",
]


class ModelLoadError(FilterDBError, RuntimeError):
    """A zoo entry could not be turned into weights (missing file, unknown name, ...)."""


@dataclass
class GraphConv:
    """One 2-D convolution read from a serialized graph (ONNX, TF.js, Keras files).

    Format readers translate their layouts to this one, so extraction never needs to know the
    format: ``weight`` is OIHW ``(c_out, c_in / groups, kh, kw)`` float32, already dequantized
    when the file stores it quantized (the stored precision goes into ``extra_meta``).

    Attributes
    ----------
    name : str
        The node or layer name in the file.
    weight : numpy.ndarray
        ``(c_out, c_in / groups, kh, kw)`` float32, C-contiguous.
    depth : int
        1-based longest path from the input counted in 2-D convs (parallel branches share a
        depth), or the position in file order where the file holds no graph.
    groups : int
        Conv groups (``c_in`` for depthwise).
    stride, dilation : tuple of int
        ``(y, x)``.
    """

    name: str
    weight: np.ndarray
    depth: int
    groups: int = 1
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)


@dataclass
class LoadedModel:
    """What a source hands to the extraction step.

    Exactly one of ``module``, ``state_dict`` or ``convs`` is set.

    Attributes
    ----------
    module : torch.nn.Module or None
        A model whose graph can be traced for conv depth.
    state_dict : mapping of str to torch.Tensor or None
        Raw tensors; 4-D conv weights are taken in key order.
    weights : str
        Provenance of the weights (``random-init:seed=0``, a package file, a path).
    input_size : tuple of int or None
        ``(C, H, W)`` of one input, for the execution-order fallback of depth.
    leaf_modules : tuple of type
        Module classes the fx tracer must not trace through.
    autowrap_functions : tuple of callable
        Functions the fx tracer records as leaves.
    extra_meta : dict
        Meta-parameters the source knows (e.g. accuracy of a trained model, the stored
        ``weight_precision`` and ``bn_folded`` of a file format).
    convs : list of GraphConv or None
        Every 2-D conv of a model read from a serialized graph, with its depth.
    depth_method : str or None
        How a format reader determined the ``depth`` of its ``convs`` (a value of
        :data:`filterdb.dataset.contract.DEPTH_METHODS`).
    n_parameters : int or None
        Parameter count, where the source knows it better than the extraction can.
    """

    module: torch.nn.Module | None = None
    state_dict: Mapping[str, torch.Tensor] | None = None
    weights: str = ""
    input_size: tuple[int, ...] | None = None
    leaf_modules: tuple[type, ...] = ()
    autowrap_functions: tuple[Any, ...] = ()
    extra_meta: dict[str, Any] = field(default_factory=dict)
    convs: list[GraphConv] | None = None
    depth_method: str | None = None
    n_parameters: int | None = None


class SourceLoader(Protocol):
    """Callable that loads one zoo entry.

    Parameters
    ----------
    model_id : str
        The entry's id (for error messages).
    entry : mapping
        The entry's source-specific keys (everything but ``meta``).
    """

    def __call__(self, model_id: str, entry: Mapping[str, Any]) -> LoadedModel: ...


@dataclass(frozen=True)
class SourceSpec:
    """A registered source: its loader and the entry keys it accepts."""

    loader: SourceLoader
    keys: frozenset[str]


# Built-in sources are imported on first use, so that reading a package's weights never pays
# for importing timm; each module registers itself with @register_source.
SOURCES: Registry[SourceSpec] = Registry(
    "model source",
    error=ModelLoadError,
    builtin={
        "checkpoint": "filterdb.sources.checkpoint",
        "keras": "filterdb.sources.keras_reader",
        "onnx": "filterdb.sources.onnx_reader",
        "package": "filterdb.sources.package",
        "tfjs": "filterdb.sources.tfjs_reader",
        "timm": "filterdb.sources.timm_source",
        "trained": "filterdb.sources.trained",
    },
)


def register_source(
    name: str, keys: tuple[str, ...] = ()
) -> Callable[[SourceLoader], SourceLoader]:
    """Register a loader under ``name`` (decorator).

    Parameters
    ----------
    name : str
        The value of ``source`` in zoo entries.
    keys : tuple of str
        The entry keys this source accepts besides ``source`` and ``meta``; others are errors.
    """

    def decorate(fn: SourceLoader) -> SourceLoader:
        SOURCES.register(name, SourceSpec(fn, frozenset(keys)))
        return fn

    return decorate


def list_sources(pattern: str = "*") -> list[str]:
    """Names of the known sources (built-in and registered) matching a glob ``pattern``.

    Examples
    --------
    >>> list_sources("t*")
    ['tfjs', 'timm', 'trained']
    """
    return SOURCES.names(pattern)


def get_source(name: str) -> SourceLoader:
    """The loader registered as ``name``; a clear error lists the known ones."""
    return SOURCES.get(name).loader


def source_keys(name: str) -> frozenset[str]:
    """The entry keys accepted by source ``name``."""
    return SOURCES.get(name).keys


def load_model(model_id: str, entry: Mapping[str, Any]) -> LoadedModel:
    """Load the zoo entry ``model_id`` through its source.

    Parameters
    ----------
    model_id : str
        The entry's id.
    entry : mapping
        The zoo entry, with ``source`` and optional ``meta``.

    Returns
    -------
    LoadedModel
    """
    if "source" not in entry:
        raise ModelLoadError(f"zoo entry {model_id!r} has no 'source' key")
    name = entry["source"]
    spec = SOURCES.get(name)
    # `provenance` (licence, paper ids, hub id) is documentation, not loading instructions
    rest = {k: v for k, v in entry.items() if k not in ("source", "meta", "provenance")}
    unknown = sorted(set(rest) - spec.keys)
    if unknown:
        raise ModelLoadError(
            f"zoo entry {model_id!r}: unknown key(s) {unknown} for source {name!r}; "
            f"allowed: {sorted(spec.keys)}"
        )
    return spec.loader(model_id, rest)
