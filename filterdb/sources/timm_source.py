"""The ``timm`` source: any timm architecture, random-init with a seed or pretrained offline.

Pretrained weights are only ever read from the local machine: a ``weights_file`` passed through
timm's pretrained-config overlay, or the Hugging Face hub cache with ``HF_HUB_OFFLINE=1`` set, so
that missing weights fail at once instead of hanging on a network call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from filterdb.sources import LoadedModel, ModelLoadError, register_source

# Must be set before huggingface_hub is imported (it reads the variable once, at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm
import timm.layers

_HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = (
        os.environ.get("HF_HOME")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    )
    return Path(home) / "hub"


def local_pretrained_file(arch: str) -> Path | None:
    """The local file holding timm's pretrained weights for ``arch``, if the machine has it.

    Looks in the Hugging Face hub cache (``HF_HUB_CACHE``/``HF_HOME``) for the config's
    ``hf_hub_id`` and in torch's hub checkpoint folder for the config's ``url``; never touches
    the network.

    Parameters
    ----------
    arch : str
        A timm name, optionally with its pretrained tag (``resnet50.a1_in1k``).

    Returns
    -------
    Path or None
    """
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = ([cfg.hf_hub_filename] if cfg.hf_hub_filename else []) + list(_HUB_FILENAMES)
        for name in names:
            found = try_to_load_from_cache(
                repo, name, cache_dir=_hub_cache_dir(), revision=revision or None
            )
            if isinstance(found, str):
                return Path(found)
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if path.is_file():
            return path
    return None


def _notrace() -> tuple[tuple[type, ...], tuple[Any, ...]]:
    modules = tuple(m for m in timm.layers.get_notrace_modules() if isinstance(m, type))
    functions = tuple(f for f in timm.layers.get_notrace_functions() if callable(f))
    return modules, functions


#: timm's lower-case licence tags -> SPDX ids of the vocabulary (others: unknown).
_SPDX = {
    "apache-2.0": "Apache-2.0",
    "mit": "MIT",
    "bsd-3-clause": "BSD-3-Clause",
    "bsd-2-clause": "BSD-2-Clause",
    "cc-by-4.0": "CC-BY-4.0",
}


@register_source("timm", keys=("arch", "pretrained", "seed", "weights_file", "num_classes"))
def load_timm(model_id: str, entry: Mapping[str, Any]) -> LoadedModel:
    """Build a timm model for a zoo entry.

    Parameters
    ----------
    model_id : str
        The entry's id, used in error messages.
    entry : mapping
        ``arch`` (timm name, required); ``pretrained`` (bool, default False); ``seed`` (int,
        default 0, for random init); ``weights_file`` (a local ``.pth``/``.safetensors`` file fed
        through timm's ``pretrained_cfg_overlay``; implies pretrained); ``num_classes``.

    Returns
    -------
    LoadedModel
        The module in eval mode, with timm's no-trace modules as fx leaves.

    Raises
    ------
    ModelLoadError
        Unknown architecture, missing weights file, or no weights in the local hub cache.
    """
    arch = entry.get("arch")
    if not arch:
        raise ModelLoadError(f"zoo entry {model_id!r}: source 'timm' needs an 'arch' name")
    if not timm.is_model(arch):
        close = timm.list_models(f"*{str(arch).split('.')[0][:6]}*")[:5]
        raise ModelLoadError(
            f"zoo entry {model_id!r}: unknown timm architecture {arch!r}"
            + (f" (similar: {', '.join(close)})" if close else "")
        )
    weights_file = entry.get("weights_file")
    pretrained = bool(entry.get("pretrained", False)) or weights_file is not None
    kwargs: dict[str, Any] = {}
    if "num_classes" in entry:
        n = entry["num_classes"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ModelLoadError(
                f"zoo entry {model_id!r}: num_classes must be an int >= 0, got {n!r}"
            )
        kwargs["num_classes"] = n
    path: Path | None = None
    if weights_file is not None:
        path = Path(weights_file)
        if not path.is_file():
            raise ModelLoadError(f"zoo entry {model_id!r}: weights file not found: {path}")
    elif pretrained:
        # resolve the cached file ourselves: timm would otherwise try the network
        path = local_pretrained_file(arch)
        if path is None:
            raise ModelLoadError(
                f"zoo entry {model_id!r}: no local pretrained weights for {arch!r} in the hub "
                f"cache ({_hub_cache_dir()}) or torch hub ({torch.hub.get_dir()}); filterdb runs "
                "offline: download them first or set 'weights_file'"
            )
    if pretrained:
        kwargs["pretrained_cfg_overlay"] = {"file": str(path.resolve())}
    seed = int(entry.get("seed", 0))
    torch.manual_seed(seed)
    try:
        module = timm.create_model(arch, pretrained=pretrained, **kwargs)
    except Exception as exc:  # timm/hub raise many types; name the model and the cause
        what = f"load pretrained weights for {arch!r} from {path}" if path else f"build {arch!r}"
        raise ModelLoadError(
            f"zoo entry {model_id!r}: could not {what}: {type(exc).__name__}: {exc}"
        ) from exc
    module.eval()
    if weights_file is not None:
        weights = f"file:{Path(weights_file).name}"
    elif pretrained:
        cfg = module.pretrained_cfg
        weights = f"pretrained:{cfg.get('hf_hub_id') or cfg.get('architecture')}:{path.name}"
    else:
        weights = f"random-init:seed={seed}"
    leaf_modules, autowrap = _notrace()
    if pretrained or weights_file is not None:
        # timm's pretrained configs carry the weights' licence (e.g. "apache-2.0")
        lic = str(module.pretrained_cfg.get("license") or "")
        extra = {"license": _SPDX.get(lic.lower(), "unknown")}
    else:
        extra = {"license": "none"}  # a random draw: no trained work to license
    return LoadedModel(
        module=module,
        weights=weights,
        extra_meta=extra,
        input_size=tuple(module.pretrained_cfg.get("input_size", (3, 224, 224))),
        leaf_modules=leaf_modules,
        autowrap_functions=autowrap,
    )
