"""The ``checkpoint`` source: a local state dict (``.pt``/``.pth``) or ``.safetensors`` file.

With a timm ``arch`` name the weights are loaded into that architecture so that the graph can be
traced for depth; without one, the 4-D conv tensors are taken from the state dict in key order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from filterdb.sources import LoadedModel, ModelLoadError, register_source


def read_state_dict(path: Path, model_id: str = "?") -> dict[str, torch.Tensor]:
    """Read a state dict safely (``weights_only=True`` or safetensors).

    Parameters
    ----------
    path : Path
        A ``.pt``, ``.pth``, ``.bin`` or ``.safetensors`` file. A checkpoint that wraps the state
        dict under ``state_dict`` or ``model`` is unwrapped.
    model_id : str
        For error messages.

    Returns
    -------
    dict of str to torch.Tensor

    Raises
    ------
    ModelLoadError
        Missing, unreadable or corrupt file, or one holding no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model {model_id!r}: checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files raise many types (pickle, zip, EOF, safetensors)
        text = str(exc)
        # torch's message suggests weights_only=False: never pass that on
        # a global outside torch's allow-list ("Unsupported global: ...", or "unsupported
        # GLOBAL os.system whose module os is blocked"): loading it could run code
        if "Weights only load failed" in text and "unsupported global" in text.lower():
            raise ModelLoadError(
                f"model {model_id!r}: checkpoint {path} was refused for safety: it holds pickled "
                "objects other than tensors, which could run code when loaded; filterdb never "
                "loads such files unsafely (save the state dict alone, or as safetensors)"
            ) from exc
        if "Weights only load failed" in text:
            why = re.search(r"WeightsUnpickler error:\s*([^\n]*?)(?:\s+Check the|$)", text)
            raise ModelLoadError(
                f"model {model_id!r}: cannot read checkpoint {path}: not a torch state dict "
                f"({why.group(1).strip() if why else 'unreadable pickle'})"
            ) from exc
        raise ModelLoadError(
            f"model {model_id!r}: cannot read checkpoint {path}: {type(exc).__name__}: {exc}"
        ) from exc
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(
            f"model {model_id!r}: checkpoint {path} holds no state dict of tensors"
        )
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


@register_source("checkpoint", keys=("path", "arch", "num_classes", "input_size"))
def load_checkpoint(model_id: str, entry: Mapping[str, Any]) -> LoadedModel:
    """Load a local checkpoint file.

    Parameters
    ----------
    model_id : str
        The entry's id.
    entry : mapping
        ``path`` (required); ``arch`` (optional timm architecture to load the weights into);
        ``num_classes`` (the checkpoint's head size, with ``arch``);
        ``input_size`` (optional ``[C, H, W]``).

    Returns
    -------
    LoadedModel
    """
    if "path" not in entry:
        raise ModelLoadError(f"zoo entry {model_id!r}: source 'checkpoint' needs a 'path'")
    path = Path(entry["path"])
    state = read_state_dict(path, model_id)
    input_size = tuple(entry["input_size"]) if entry.get("input_size") else None
    arch = entry.get("arch")
    if not arch:
        return LoadedModel(state_dict=state, weights=f"file:{path.name}", input_size=input_size)
    from filterdb.sources.timm_source import load_timm

    timm_entry = {"arch": arch}
    if "num_classes" in entry:  # a fine-tuned head
        timm_entry["num_classes"] = entry["num_classes"]
    loaded = load_timm(model_id, timm_entry)
    assert loaded.module is not None
    try:
        loaded.module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"model {model_id!r}: checkpoint {path} does not fit timm architecture {arch!r}: {exc}"
        ) from exc
    loaded.weights = f"file:{path.name}"
    if input_size:
        loaded.input_size = input_size
    return loaded
