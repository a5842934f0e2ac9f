"""One zoo entry through the chain sources -> extract -> store, as one shard file.

Used by ``filterdb extract`` (one model per DVC stage) and by the dask fan-out
(:func:`filterdb.stats.fanout.extract_many`), so both write the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from filterdb.dataset.write import StoreParams, write_model
from filterdb.extract.filters import ModelFilters, extract_filters
from filterdb.sources import LoadedModel, load_model

__all__ = ["build_shard", "torch_meta"]

#: torch dtype names -> weight_precision values
_PRECISION = {
    "torch.float32": "float32",
    "torch.float64": "float64",
    "torch.float16": "float16",
    "torch.bfloat16": "bfloat16",
}


def torch_meta(loaded: LoadedModel) -> dict[str, str]:
    """``weight_precision`` and ``bn_folded`` of a torch module or state dict.

    Format readers (ONNX, TF.js, Keras) report their own in ``extra_meta``; for them this
    returns nothing.

    Examples
    --------
    >>> from torch import nn
    >>> torch_meta(LoadedModel(module=nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))))
    {'weight_precision': 'float32', 'bn_folded': 'no'}
    >>> torch_meta(LoadedModel(module=nn.Conv2d(1, 2, 3)))["bn_folded"]
    'no-bn'
    """
    if loaded.convs is not None:
        return {}
    from torch import nn

    if loaded.module is not None:
        mods = list(loaded.module.modules())
        kernels = [m.weight for m in mods if isinstance(m, nn.Conv2d)]
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in mods)
        folded = "no" if has_bn else "no-bn"
    else:
        state = loaded.state_dict or {}
        kernels = [t for k, t in state.items() if t.ndim == 4 and t.is_floating_point()]
        folded = "no" if any(k.endswith("running_var") for k in state) else "unknown"
    kinds = {_PRECISION.get(str(t.dtype), "unknown") for t in kernels}
    precision = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "unknown")
    return {"weight_precision": precision, "bn_folded": folded}


def build_shard(
    model_id: str,
    entry: Mapping[str, Any],
    out: str | os.PathLike[str],
    store: StoreParams | Mapping[str, Any] | None = None,
) -> ModelFilters:
    """Load a zoo entry, extract its 3x3 filters and write its shard atomically.

    Parameters
    ----------
    model_id : str
        The entry's id.
    entry : mapping
        The zoo entry (``source``, source keys, ``meta``).
    out : path-like
        The shard file.
    store : StoreParams or mapping, optional
        On-disk layout (``params.yaml: store``).

    Returns
    -------
    ModelFilters
        What was extracted (for a summary line).
    """
    params = store if isinstance(store, StoreParams) else StoreParams.from_dict(store)
    loaded = load_model(model_id, entry)
    # what the source knows (e.g. a trained model's held-out accuracy), overridden by the entry
    meta = {**torch_meta(loaded), **loaded.extra_meta, **dict(entry.get("meta") or {})}
    mf = extract_filters(model_id, loaded)
    write_model(out, mf, meta, entry["source"], loaded.weights, params)
    return mf
