"""Size timm architectures on PyTorch's ``meta`` device, without weights.

:func:`size_architecture` counts the 3x3 layers and filters and all 2-D kernel shapes of an
architecture built on the ``meta`` device (no memory, no download), cached per architecture and
config; :func:`size_entries` sizes many names once each, with a JSON cache on disk and a process
pool; :func:`drop_without_3x3` leaves out the models those counts rule out.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from filterdb.atomic import write_atomic_text

__all__ = ["BYTES_PER_FILTER", "drop_without_3x3", "size_architecture", "size_entries"]

BYTES_PER_FILTER = 9 * 4 + 4
"""Stored bytes per filter: nine float32 weights plus a 4-byte per-filter layer index."""


def _timm() -> Any:
    """timm, imported through the timm source (which sets HF_HUB_OFFLINE before importing it)."""
    from filterdb.sources import timm_source

    return timm_source.timm


def _count_convs(module: nn.Module) -> dict[str, Any]:
    """3x3 layers/filters and per-shape kernel counts, by the rule of filterdb.extract.filters."""
    layers = filters = 0
    kernels: dict[str, int] = {}
    for _, m in module.named_modules():
        if not isinstance(m, nn.Conv2d):
            continue
        c_out, c_in_g, kh, kw = (int(s) for s in m.weight.shape)
        key = f"{kh}x{kw}"
        kernels[key] = kernels.get(key, 0) + c_out * c_in_g
        if (kh, kw) == (3, 3):
            layers += 1
            filters += c_out * c_in_g
    total = sum(n for k, n in kernels.items() if k != "1x1")
    return {
        "n_layers_3x3": layers,
        "n_filters_3x3": filters,
        "total_filters": total,
        "kernel_counts": dict(sorted(kernels.items())),
        "n_parameters": int(sum(p.numel() for p in module.parameters())),
    }


def _size_key(name: str) -> str:
    """Cache key: the architecture plus the config values that change its modules."""
    from timm.models import get_pretrained_cfg

    arch, _, tag = name.partition(".")
    cfg = get_pretrained_cfg(name) if tag else None
    if cfg is None:
        return arch
    return f"{arch}|nc={cfg.num_classes}|in={cfg.input_size[0]}"


_SIZE_CACHE: dict[str, dict[str, Any]] = {}


def size_architecture(name: str) -> dict[str, Any]:
    """Count an architecture's 3x3 conv layers and filters without weights.

    The model is built on PyTorch's ``meta`` device (``timm.create_model(name,
    pretrained=False)``: shapes only, no memory, no download). ``name`` may carry a pretrained
    tag, whose config (number of classes, input channels) is applied as in the real build.
    Results are cached per architecture and config, so tags sharing one are built once.

    Parameters
    ----------
    name : str
        ``arch`` or ``arch.tag``.

    Returns
    -------
    dict
        ``n_layers_3x3``, ``n_filters_3x3`` (sum of ``c_out * c_in/groups`` over Conv2d with a
        3x3 kernel), ``total_filters`` (all 2-D kernels except 1x1), ``kernel_counts``
        (``"KxK"`` -> filters), ``n_parameters``, ``bytes`` (float32 storage,
        :data:`BYTES_PER_FILTER` per filter), ``seconds`` (build time) and ``error`` (None, or
        why the meta build failed: then the counts are 0).

    Examples
    --------
    >>> s = size_architecture("resnet18")
    >>> s["n_layers_3x3"], s["n_filters_3x3"]
    (16, 1220608)
    """
    timm = _timm()
    key = _size_key(name)
    if key in _SIZE_CACHE:
        return dict(_SIZE_CACHE[key])
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.device("meta"):
                module = timm.create_model(name, pretrained=False)
        result: dict[str, Any] = {**_count_convs(module), "error": None}
    except Exception as exc:  # any architecture may fail on meta: report it
        result = {
            "n_layers_3x3": 0,
            "n_filters_3x3": 0,
            "total_filters": 0,
            "kernel_counts": {},
            "n_parameters": 0,
            "error": f"{type(exc).__name__}: {str(exc)[:200]}",
        }
    result["bytes"] = result["n_filters_3x3"] * BYTES_PER_FILTER
    result["seconds"] = round(time.perf_counter() - t0, 3)
    _SIZE_CACHE[key] = result
    return dict(result)


def _cache_stamp() -> str:
    timm = _timm()
    return f"timm={timm.__version__};torch={torch.__version__}"


def _load_disk_cache(path: Path | None) -> None:
    if path is None or not path.is_file():
        return
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if data.get("stamp") == _cache_stamp():
        for k, v in data.get("sizes", {}).items():
            _SIZE_CACHE.setdefault(k, v)


def _save_disk_cache(path: Path | None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic_text(json.dumps({"stamp": _cache_stamp(), "sizes": _SIZE_CACHE}, indent=0), path)


def _size_worker(keys_names: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    return {key: size_architecture(name) for key, name in keys_names}


def size_entries(
    names: Iterable[str],
    *,
    cache: str | os.PathLike[str] | None = None,
    jobs: int = 1,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Size many ``arch.tag`` names, building each distinct architecture once.

    Parameters
    ----------
    names : iterable of str
        ``arch`` or ``arch.tag`` names.
    cache : path-like, optional
        A JSON file of sizes kept between runs (valid for one timm and torch version).
    jobs : int
        Worker processes for the meta builds (1: in this process).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    dict
        Name -> :func:`size_architecture` result.
    """
    cache_path = Path(cache) if cache is not None else None
    _load_disk_cache(cache_path)
    names = list(names)
    keys = {n: _size_key(n) for n in names}
    todo: dict[str, str] = {}
    for n in names:
        if keys[n] not in _SIZE_CACHE:
            todo.setdefault(keys[n], n)
    if todo:
        items = list(todo.items())
        if jobs > 1:
            from concurrent.futures import ProcessPoolExecutor

            chunks = [items[i :: jobs * 4] for i in range(jobs * 4)]
            with ProcessPoolExecutor(jobs) as pool:
                for part in pool.map(_size_worker, [c for c in chunks if c]):
                    _SIZE_CACHE.update(part)
        else:
            it: Iterable[tuple[str, str]] = items
            if progress:
                from tqdm import tqdm

                it = tqdm(items, desc="meta builds", unit="arch")
            for _, name in it:
                size_architecture(name)
        _save_disk_cache(cache_path)
    return {n: dict(_SIZE_CACHE[keys[n]]) for n in names}


def drop_without_3x3(
    entries: Mapping[str, Mapping[str, Any]], sizes: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
    """Drop entries whose architecture has no 3x3 conv (or failed to build on meta).

    Parameters
    ----------
    entries : mapping
        Model id -> entry (``arch`` is the timm name).
    sizes : mapping
        ``arch`` name -> :func:`size_architecture` result (:func:`size_entries`).

    Returns
    -------
    kept : dict
    no_3x3 : list of str
        Ids dropped because the architecture has no 3x3 conv.
    failed : list of str
        Ids whose architecture failed to build on meta, ``"id: error"`` (kept out: unsized).
    """
    kept: dict[str, dict[str, Any]] = {}
    no_3x3: list[str] = []
    failed: list[str] = []
    for model_id, entry in entries.items():
        size = sizes[entry["arch"]]
        if size["error"]:
            failed.append(f"{model_id}: {size['error']}")
        elif size["n_filters_3x3"] == 0:
            no_3x3.append(model_id)
        else:
            kept[model_id] = dict(entry)
    return kept, no_3x3, failed
