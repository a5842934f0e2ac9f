"""BatchNorm fold scales: which convs a BatchNorm directly follows, and its per-channel scale.

The CNN Filter DB study computed its statistics on BN-folded filters (its ONNX export folds an
eval-mode BatchNorm into the conv before it: ``w * gamma / sqrt(running_var + eps)`` per output
channel). filterdb stores the conv's own weights and, beside them, this per-output-channel
scale, so both views exist (METHODS.md section 1).

A BatchNorm *directly follows* a 2-D conv when, in the torch.fx graph, the conv's output feeds
only that BatchNorm: the conv's node has exactly one user that consumes its value, and that
user is either

- a ``call_module`` of an ``nn.modules.batchnorm._BatchNorm`` instance (``BatchNorm2d``,
  ``SyncBatchNorm``, timm's ``BatchNormAct2d`` when the tracer keeps it a leaf), or
- a ``call_function`` of :func:`torch.nn.functional.batch_norm` whose input is the conv (timm's
  ``BatchNormAct2d`` traced through: its buffers and parameters are ``get_attr`` nodes).

Users that only read metadata (``x.ndim``, ``x.shape``, ``x.size()``, ...; timm's
``_assert(x.ndim == 4)`` in front of ``F.batch_norm``) do not consume the value and are not
counted. The BatchNorm must have running statistics (``track_running_stats``) and as many
channels as the conv has outputs; a conv that the graph calls more than once, or that runs
inside a leaf module, gets no scale. Everything else (no graph, a ReLU between conv and BN, a
BN fed by two convs' sum) means "no BN follows": scale 1.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.fx
from torch import nn

__all__ = ["FoldError", "batch_norm_scale", "graph_fold_scales", "module_fold_scale"]

#: Attributes and methods of a tensor that read its metadata, not its values.
_META_ATTRS = frozenset({"ndim", "shape", "dtype", "device", "is_cuda", "layout", "requires_grad"})
_META_METHODS = frozenset({"size", "dim", "numel", "type", "get_device"})

_BN_SIGNATURE = inspect.signature(nn.functional.batch_norm)


class FoldError(ValueError):
    """A BatchNorm's fold scale is not finite (e.g. ``running_var + eps == 0``)."""


def batch_norm_scale(
    weight: torch.Tensor | None, running_var: torch.Tensor, eps: float
) -> np.ndarray:
    """The fold scale ``weight / sqrt(running_var + eps)`` of one BatchNorm, in float32.

    Evaluated with torch exactly as ``bn.weight / torch.sqrt(bn.running_var + bn.eps)`` is for a
    float32 BatchNorm, so the folded filters ``conv.weight * scale`` equal torch's bit for bit.
    Other float dtypes are converted to float32 first.

    Parameters
    ----------
    weight : torch.Tensor or None
        ``gamma``; ``None`` (``affine=False``) means 1.
    running_var : torch.Tensor
        The running variance.
    eps : float
        The BatchNorm's ``eps``.

    Returns
    -------
    numpy.ndarray
        ``(C,)`` float32.

    Examples
    --------
    >>> bn = nn.BatchNorm2d(2).eval()
    >>> batch_norm_scale(bn.weight, bn.running_var, bn.eps).tolist() == (
    ...     (bn.weight / torch.sqrt(bn.running_var + bn.eps)).tolist())
    True
    """
    with torch.no_grad():
        var = running_var.detach().to("cpu", torch.float32)
        gamma = torch.ones_like(var) if weight is None else weight.detach().to("cpu", torch.float32)
        scale = gamma / torch.sqrt(var + eps)
    return np.ascontiguousarray(scale.numpy(), dtype=np.float32).reshape(-1)


def module_fold_scale(bn: nn.Module) -> np.ndarray | None:
    """The fold scale of a ``_BatchNorm`` module, or ``None`` without running statistics."""
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_var is None:
        return None
    return batch_norm_scale(bn.weight, bn.running_var, float(bn.eps))


def _resolve(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _reads_only_metadata(user: torch.fx.Node, node: torch.fx.Node) -> bool:
    if user.op == "call_function" and user.target is getattr:
        return len(user.args) >= 2 and user.args[0] is node and user.args[1] in _META_ATTRS
    if user.op == "call_method" and user.target in _META_METHODS:
        return bool(user.args) and user.args[0] is node
    return False


def _functional_scale(user: torch.fx.Node, node: torch.fx.Node, root: nn.Module) -> Any:
    """Scale of an ``F.batch_norm`` call on ``node``; ``None`` when it cannot be folded."""
    try:
        bound = _BN_SIGNATURE.bind(*user.args, **user.kwargs)
    except TypeError:
        return None
    args = bound.arguments
    if args.get("input") is not node:
        return None

    def tensor(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, torch.fx.Node):
            if value.op != "get_attr":
                return False  # computed in the graph: not a constant we can read
            value = _resolve(root, str(value.target))
        return value if isinstance(value, torch.Tensor) else False

    var = tensor(args.get("running_var"))
    gamma = tensor(args.get("weight"))
    eps = args.get("eps", _BN_SIGNATURE.parameters["eps"].default)
    if var is None or var is False or gamma is False or not isinstance(eps, int | float):
        return None
    return batch_norm_scale(gamma, var, float(eps))


def graph_fold_scales(
    graph: torch.fx.Graph, root: nn.Module, conv_names: Iterable[str]
) -> dict[str, np.ndarray]:
    """Fold scales of the convs that a BatchNorm directly follows in a traced graph.

    Parameters
    ----------
    graph : torch.fx.Graph
        A graph traced from ``root`` with the convs as leaf modules.
    root : torch.nn.Module
        The traced module (resolves ``call_module`` and ``get_attr`` targets).
    conv_names : iterable of str
        Module paths of the 2-D convs to look at.

    Returns
    -------
    dict of str to numpy.ndarray
        Conv name -> ``(c_out,)`` float32 scale, only for convs a BatchNorm directly follows
        (see the module docstring).

    Raises
    ------
    FoldError
        A BatchNorm's scale holds NaN or Inf.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 3))
    >>> sorted(graph_fold_scales(torch.fx.Tracer().trace(net), net, ["0", "2"]))
    ['0']
    """
    wanted = set(conv_names)
    calls: dict[str, list[torch.fx.Node]] = {}
    for node in graph.nodes:
        if node.op == "call_module" and str(node.target) in wanted:
            calls.setdefault(str(node.target), []).append(node)
    out: dict[str, np.ndarray] = {}
    for name, nodes in calls.items():
        if len(nodes) != 1:
            continue  # the conv runs more than once: no single BN follows it
        node = nodes[0]
        users = [u for u in node.users if not _reads_only_metadata(u, node)]
        if len(users) != 1:
            continue
        (user,) = users
        scale = None
        if user.op == "call_module":
            bn = root.get_submodule(str(user.target))
            if user.args and user.args[0] is node and user.all_input_nodes == [node]:
                scale = module_fold_scale(bn)
        elif user.op == "call_function" and user.target is nn.functional.batch_norm:
            scale = _functional_scale(user, node, root)
        if scale is None:
            continue
        conv = root.get_submodule(name)
        c_out = int(conv.weight.shape[0]) if hasattr(conv, "weight") else -1
        if scale.shape != (c_out,):
            continue
        if not np.isfinite(scale).all():
            bad = int((~np.isfinite(scale)).sum())
            raise FoldError(
                f"conv {name!r}: the BatchNorm after it gives {bad} non-finite fold scale(s) "
                "(gamma / sqrt(running_var + eps))"
            )
        out[name] = scale
    return out
