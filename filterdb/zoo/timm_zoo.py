"""Zoo entries for timm's pretrained registry, and the projected size of the database they make.

``filterdb zoo timm`` (issue 7) in four pieces, each a plain function the CLI calls:

- :func:`generate_entries`: one zoo entry (the ``params.yaml`` format, ``source: timm``) per
  pretrained ``arch.tag`` of ``timm.list_pretrained()`` matching include/exclude globs, with
  meta-parameters derived from the tag and the architecture through ``timm_tags.yaml`` (data,
  not code). Tags the table cannot map are returned as *unmapped*, never dropped silently.
- :func:`size_architecture`: counts 3x3 layers and filters and all 2-D kernel shapes of an
  architecture built on PyTorch's ``meta`` device (no memory, no download), cached per
  architecture; :func:`summary` projects models, layers, filters and bytes for a selection.
- :func:`filter_available` / :func:`weights_dir_overrides`: keep only models whose weights are
  on this machine, or point entries at local stand-in files.
- :func:`write_zoo`: writes ``zoo:`` YAML that :func:`filterdb.params.load_params` accepts,
  atomically, with unmapped tags, skipped and dropped models listed in comments.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from torch import nn

from filterdb._atomic import write_atomic_text

__all__ = [
    "BYTES_PER_FILTER",
    "TagMapping",
    "ZooSummary",
    "add_cli_arguments",
    "architecture_family",
    "drop_without_3x3",
    "filter_available",
    "generate_entries",
    "list_pretrained_names",
    "load_tag_table",
    "make_zoo",
    "map_tag",
    "run_cli",
    "size_architecture",
    "size_entries",
    "summary",
    "weights_dir_overrides",
    "write_zoo",
]

BYTES_PER_FILTER = 9 * 4 + 4
"""Stored bytes per filter: nine float32 weights plus a 4-byte per-filter layer index."""

_PROVENANCE_FIELDS = ("license", "paper_ids", "paper_name", "origin_url", "hf_hub_id", "url")


def _timm() -> Any:
    """timm, imported through the timm source (which sets HF_HUB_OFFLINE before importing it)."""
    from filterdb.sources import timm_source

    return timm_source.timm


# --------------------------------------------------------------------------------------------
# Tag table
# --------------------------------------------------------------------------------------------


@functools.cache
def load_tag_table() -> dict[str, Any]:
    """The mapping table ``filterdb/zoo/timm_tags.yaml`` (package data), parsed once.

    Returns
    -------
    dict
        ``datasets``, ``methods``, ``ignore``, ``ignore_patterns``, ``tags``,
        ``method_precedence``, ``family_patterns``, ``family_modules``.
    """
    text = resources.files("filterdb.zoo").joinpath("timm_tags.yaml").read_text()
    return yaml.safe_load(text)


@dataclass(frozen=True)
class TagMapping:
    """What a pretrained tag says about the weights.

    Attributes
    ----------
    tag : str
        The timm tag (``in22k_ft_in1k``).
    meta : dict or None
        ``task``, ``visual_category``, ``training_dataset``, ``pretraining_dataset``,
        ``training``; None when the tag is unmapped.
    reason : str
        Why the tag is unmapped (empty when mapped).
    """

    tag: str
    meta: dict[str, str] | None
    reason: str = ""

    @property
    def mapped(self) -> bool:
        """True when the table maps the tag."""
        return self.meta is not None


def _tokenize(tag: str, phrases: Iterable[str]) -> list[str]:
    """Split a tag at ``_``, joining known multi-token phrases (longest first)."""
    parts = tag.split("_") if tag else []
    multi = sorted((p.split("_") for p in phrases if "_" in p), key=len, reverse=True)
    out: list[str] = []
    i = 0
    while i < len(parts):
        for phrase in multi:
            if parts[i : i + len(phrase)] == phrase:
                out.append("_".join(phrase))
                i += len(phrase)
                break
        else:
            out.append(parts[i])
            i += 1
    return out


@functools.cache
def map_tag(tag: str) -> TagMapping:
    """Map a timm pretrained tag to meta-parameters through ``timm_tags.yaml``.

    Parameters
    ----------
    tag : str
        The part after the dot of a pretrained name (``resnet50.a1_in1k`` -> ``a1_in1k``).

    Returns
    -------
    TagMapping
        Unmapped (``meta`` None, with a reason) when a token is unknown or no dataset results.

    Examples
    --------
    >>> m = map_tag("fb_swsl_ig1b_ft_in1k").meta
    >>> m["pretraining_dataset"], m["training_dataset"], m["training"]
    ('instagram-1b', 'imagenet-1k', 'semi-supervised')
    >>> map_tag("in22k_ft_in1k").meta["pretraining_dataset"]
    'imagenet-21k'
    >>> map_tag("qwen3_vl_8b").reason
    "unknown token(s) ['qwen3', 'vl', '8b']"
    """
    table = load_tag_table()
    datasets: Mapping[str, Mapping[str, str]] = table["datasets"]
    methods: Mapping[str, Mapping[str, str]] = table["methods"]
    ignore = {str(t) for t in table["ignore"]}
    patterns = [re.compile(p) for p in table["ignore_patterns"]]
    override = (table.get("tags") or {}).get(tag, ...)
    if override is None:
        return TagMapping(tag, None, "listed as unmapped in timm_tags.yaml")

    tokens = _tokenize(tag, [*datasets, *methods])
    stages: list[list[str]] = [[]]
    unknown = []
    for tok in tokens:
        if tok == table["separator"]:
            stages.append([])
        elif tok in datasets or tok in methods:
            stages[-1].append(tok)
        elif not (tok in ignore or any(p.fullmatch(tok) for p in patterns)):
            unknown.append(tok)
    if unknown:
        return TagMapping(tag, None, f"unknown token(s) {unknown}")

    found_datasets: list[str] = []
    found_methods: set[str] = set()
    task = "classification"
    for stage in stages:
        stage_datasets = [datasets[t]["dataset"] for t in stage if t in datasets]
        implied = None
        for t in stage:
            spec = datasets.get(t) or methods.get(t) or {}
            if "training" in spec:
                found_methods.add(spec["training"])
            if "task" in spec:
                task = spec["task"]
            if t in methods and "dataset" in spec and implied is None:
                implied = spec["dataset"]
        if implied is not None and implied not in stage_datasets:
            stage_datasets.insert(0, implied)  # e.g. swag_lc_in1k: SWAG data, then in1k
        if not stage_datasets and any(t in methods for t in stage):
            stage_datasets = ["unknown"]
        found_datasets.extend(stage_datasets)
    if not found_datasets and not isinstance(override, Mapping):
        return TagMapping(tag, None, "no dataset in tag")
    training = next(
        (m for m in table["method_precedence"] if m in found_methods), "normal"
    )
    meta = {
        "task": task,
        "visual_category": "natural",
        "training_dataset": found_datasets[-1] if found_datasets else "unknown",
        "pretraining_dataset": found_datasets[0] if len(found_datasets) > 1 else "none",
        "training": training,
    }
    if isinstance(override, Mapping):
        meta.update({str(k): str(v) for k, v in override.items()})
    return TagMapping(tag, meta)


@functools.cache
def architecture_family(arch: str) -> str:
    """The ``family`` of a timm architecture: a name pattern, else its timm module.

    Parameters
    ----------
    arch : str
        timm architecture name without tag.

    Returns
    -------
    str
        A value of the ``family`` vocabulary.

    Raises
    ------
    KeyError
        The architecture's timm module is not in ``family_modules`` (the table is incomplete).

    Examples
    --------
    >>> architecture_family("seresnext50_32x4d"), architecture_family("vit_base_patch16_224")
    ('resnext', 'vit')
    """
    table = load_tag_table()
    for pattern, family in table["family_patterns"]:
        if re.search(pattern, arch):
            return str(family)
    from timm.models._registry import _model_to_module

    module = _model_to_module.get(arch)
    try:
        return str(table["family_modules"][module])
    except KeyError:
        raise KeyError(
            f"timm architecture {arch!r} (module {module!r}) has no family in timm_tags.yaml"
        ) from None


# --------------------------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------------------------


def list_pretrained_names(
    include: Sequence[str] = ("*",), exclude: Sequence[str] = ()
) -> list[str]:
    """Pretrained ``arch.tag`` names of timm's registry selected by fnmatch globs.

    Parameters
    ----------
    include : sequence of str
        A name is kept when it matches any of these (default: all).
    exclude : sequence of str
        ... and none of these.

    Returns
    -------
    list of str
        In timm's order (sorted by architecture).
    """
    timm = _timm()
    include = list(include) or ["*"]
    return [
        n
        for n in timm.list_pretrained()
        if "." in n
        and any(fnmatch.fnmatchcase(n, p) for p in include)
        and not any(fnmatch.fnmatchcase(n, p) for p in exclude)
    ]


def _provenance(name: str) -> dict[str, Any]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    out: dict[str, Any] = {}
    if cfg is None:
        return out
    for key in _PROVENANCE_FIELDS:
        value = getattr(cfg, key, None)
        if value:
            out[key] = list(value) if isinstance(value, (list, tuple)) else str(value)
    return out


def generate_entries(
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    *,
    provenance: bool = False,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Zoo entries for timm's pretrained models.

    Parameters
    ----------
    include, exclude : sequence of str
        fnmatch globs on ``arch.tag`` names (see :func:`list_pretrained_names`).
    provenance : bool
        Add a ``provenance`` block (licence, paper ids, origin and hub ids from timm's
        pretrained config). The sources do not accept it yet: only with the proposed
        ``filterdb.sources.load_model`` change; :func:`write_zoo` can also put it in comments.

    Returns
    -------
    entries : dict of str to dict
        Model id (the ``arch.tag`` name, which is a valid id) -> ``{source: timm, arch:
        NAME.TAG, pretrained: true, meta: {...}}``; meta passes
        :func:`filterdb.validate.schema.validate_entry_meta`.
    unmapped : list of str
        Selected names whose tag the table cannot map (no entry written), with the reason:
        ``"arch.tag: reason"``.
    """
    entries: dict[str, dict[str, Any]] = {}
    unmapped: list[str] = []
    for name in list_pretrained_names(include, exclude):
        arch, tag = name.split(".", 1)
        mapping = map_tag(tag)
        if not mapping.mapped:
            unmapped.append(f"{name}: {mapping.reason}")
            continue
        meta = {
            "task": mapping.meta["task"],
            "visual_category": mapping.meta["visual_category"],
            "training_dataset": mapping.meta["training_dataset"],
            "pretraining_dataset": mapping.meta["pretraining_dataset"],
            "architecture": arch,
            "family": architecture_family(arch),
            "training": mapping.meta["training"],
        }
        entry: dict[str, Any] = {"source": "timm", "arch": name, "pretrained": True, "meta": meta}
        if provenance:
            entry["provenance"] = _provenance(name)
        entries[name] = entry
    return entries, unmapped


def weights_dir_overrides(
    entries: Mapping[str, Mapping[str, Any]], weights_dir: str | os.PathLike[str]
) -> dict[str, dict[str, Any]]:
    """Point entries at local weight files ``DIR/arch.tag.safetensors`` (or ``.pth``) when present.

    An entry with such a file gets ``weights_file`` instead of ``pretrained: true``; the timm
    source feeds it through timm's pretrained-config overlay, exactly as a hub download.

    Parameters
    ----------
    entries : mapping
        From :func:`generate_entries`.
    weights_dir : path-like
        Folder of stand-in or pre-downloaded weights.

    Returns
    -------
    dict
        New entries (the input is not modified).
    """
    root = Path(weights_dir)
    out: dict[str, dict[str, Any]] = {}
    for model_id, entry in entries.items():
        entry = dict(entry)
        for suffix in (".safetensors", ".pth", ".bin"):
            path = root / f"{entry['arch']}{suffix}"
            if path.is_file():
                entry.pop("pretrained", None)
                entry["weights_file"] = str(path.resolve())
                break
        out[model_id] = entry
    return out


def filter_available(
    entries: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Split entries into those whose weights are on this machine and those that are not.

    An entry is available when it has a ``weights_file`` that exists, or ``pretrained: true`` and
    :func:`filterdb.sources.timm_source.local_pretrained_file` finds it in the local hub cache
    (no network). Random-init entries are always available.

    Parameters
    ----------
    entries : mapping
        Model id -> zoo entry.

    Returns
    -------
    kept : dict
        Available entries, in order.
    skipped : list of str
        Ids of the others (``--only-available`` writes them into the zoo file as a comment).
    """
    from filterdb.sources.timm_source import local_pretrained_file

    kept: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for model_id, entry in entries.items():
        if entry.get("weights_file") is not None:
            ok = Path(entry["weights_file"]).is_file()
        elif entry.get("pretrained"):
            ok = local_pretrained_file(entry["arch"]) is not None
        else:
            ok = True
        if ok:
            kept[model_id] = dict(entry)
        else:
            skipped.append(model_id)
    return kept, skipped


# --------------------------------------------------------------------------------------------
# Sizing on the meta device
# --------------------------------------------------------------------------------------------


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
    _atomic_write(path, json.dumps({"stamp": _cache_stamp(), "sizes": _SIZE_CACHE}, indent=0))


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

            chunks = [items[i::jobs * 4] for i in range(jobs * 4)]
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


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


@dataclass
class ZooSummary:
    """Projected size of a timm zoo.

    Attributes
    ----------
    models : pandas.DataFrame
        One row per selected pretrained name: ``model``, ``arch``, ``family``,
        ``training_dataset``, ``pretraining_dataset``, ``training``, ``mapped``, the size
        columns of :func:`size_architecture` and ``kept`` (mapped, built and has 3x3 convs).
    unmapped : list of str
        ``"arch.tag: reason"`` of the tags the table cannot map.
    failed : list of str
        ``"arch: error"`` of the architectures that did not build on meta.
    seconds : float
        Wall-clock time of the whole summary.
    """

    models: pd.DataFrame
    unmapped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        """Models, layers, filters and bytes of the projected zoo (kept rows)."""
        k = self.models[self.models["kept"]]
        return {
            "models": len(k),
            "architectures": int(k["arch"].nunique()),
            "layers": int(k["n_layers_3x3"].sum()),
            "filters": int(k["n_filters_3x3"].sum()),
            "bytes": int(k["bytes"].sum()),
        }

    def by(self, column: str) -> pd.DataFrame:
        """Totals of the projected zoo grouped by ``column`` (e.g. ``family``), largest first."""
        k = self.models[self.models["kept"]]
        g = k.groupby(column).agg(
            models=("model", "size"),
            layers=("n_layers_3x3", "sum"),
            filters=("n_filters_3x3", "sum"),
            bytes=("bytes", "sum"),
        )
        return g.sort_values("filters", ascending=False)

    def to_text(self) -> str:
        """The human summary ``filterdb zoo timm --summary`` prints."""
        m = self.models
        t = self.totals()
        no3 = m[m["mapped"] & (m["error"].isna()) & (m["n_filters_3x3"] == 0)]
        unm = m[~m["mapped"]]
        lines = [
            f"timm pretrained names selected: {len(m)} ({m['arch'].nunique()} architectures)",
            f"projected zoo: {t['models']:,} models ({t['architectures']:,} architectures), "
            f"{t['layers']:,} 3x3 layers, {t['filters']:,} filters, "
            f"{_gb(t['bytes'])} as float32 ({BYTES_PER_FILTER} bytes/filter)",
            f"dropped, no 3x3 conv: {len(no3):,} models ({no3['arch'].nunique()} architectures)",
            f"not built on meta: {len(self.failed)} architectures"
            + (": " + ", ".join(self.failed) if self.failed else ""),
            f"unmapped tags (no entry written): {len(self.unmapped):,} models "
            f"({unm['n_filters_3x3'].sum():,} filters)",
            f"time: {self.seconds:.1f} s",
        ]
        for column in ("family", "training_dataset", "pretraining_dataset", "training"):
            table = self.by(column).copy()
            table["bytes"] = table["bytes"].map(_gb)
            lines += ["", f"by {column}:", table.to_string()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _gb(n: float) -> str:
    return f"{n / 1e9:,.2f} GB"


def summary(
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    *,
    cache: str | os.PathLike[str] | None = None,
    jobs: int = 1,
    progress: bool = False,
) -> ZooSummary:
    """Projected models, layers, filters and bytes of the timm zoo for a selection.

    Every selected architecture (unmapped tags included, so their share is known) is sized on
    the meta device; see :func:`size_entries`.

    Parameters
    ----------
    include, exclude : sequence of str
        fnmatch globs on ``arch.tag`` names.
    cache, jobs, progress
        Passed to :func:`size_entries`.

    Returns
    -------
    ZooSummary
        ``str(result)`` is the printed report.
    """
    t0 = time.perf_counter()
    names = list_pretrained_names(include, exclude)
    entries, unmapped = generate_entries(include, exclude)
    sizes = size_entries(names, cache=cache, jobs=jobs, progress=progress)
    rows = []
    for name in names:
        arch, tag = name.split(".", 1)
        entry = entries.get(name)
        meta = entry["meta"] if entry else {}
        s = sizes[name]
        rows.append(
            {
                "model": name,
                "arch": arch,
                "tag": tag,
                "family": meta.get("family", "(unmapped)"),
                "training_dataset": meta.get("training_dataset", "(unmapped)"),
                "pretraining_dataset": meta.get("pretraining_dataset", "(unmapped)"),
                "training": meta.get("training", "(unmapped)"),
                "mapped": entry is not None,
                **{k: s[k] for k in ("n_layers_3x3", "n_filters_3x3", "total_filters",
                                     "n_parameters", "bytes", "error")},
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["model", "arch", "tag", "family", "training_dataset",
                                   "pretraining_dataset", "training", "mapped", "n_layers_3x3",
                                   "n_filters_3x3", "total_filters", "n_parameters", "bytes",
                                   "error"])
    df["kept"] = df["mapped"] & df["error"].isna() & (df["n_filters_3x3"] > 0)
    failed = sorted({f"{r.arch}: {r.error}" for r in df.itertuples() if r.error})
    return ZooSummary(df, unmapped, failed, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    write_atomic_text(text, path)


def _comment(lines: Iterable[str], indent: str = "") -> str:
    return "".join(f"{indent}# {line}\n" for line in lines)


def write_zoo(
    path: str | os.PathLike[str],
    entries: Mapping[str, Mapping[str, Any]],
    unmapped: Sequence[str] = (),
    *,
    skipped: Sequence[str] = (),
    dropped: Sequence[str] = (),
    provenance: str = "comment",
    header: Sequence[str] = (),
) -> Path:
    """Write entries as a params file with one top-level ``zoo:`` key, atomically.

    Parameters
    ----------
    path : path-like
        Output YAML; readable by :func:`filterdb.params.load_params`.
    entries : mapping
        Model id -> entry (a ``provenance`` block in an entry is written per ``provenance``).
    unmapped : sequence of str
        Unmapped tags, listed in a comment.
    skipped : sequence of str
        Ids left out because their weights are not on this machine (``--only-available``).
    dropped : sequence of str
        Ids left out for another reason (no 3x3 conv, meta build failed).
    provenance : {"comment", "block", "none"}
        Licence and paper ids as a comment above each entry (works with today's sources), as a
        ``provenance:`` key of the entry (needs the proposed source change), or not at all.
    header : sequence of str
        Extra comment lines at the top.

    Returns
    -------
    Path
    """
    if provenance not in ("comment", "block", "none"):
        raise ValueError(f"provenance must be 'comment', 'block' or 'none', not {provenance!r}")
    out = [
        _comment(
            [
                "Generated by filterdb.zoo.timm_zoo (filterdb zoo timm): "
                "timm's pretrained registry.",
                *header,
            ]
        ),
        "zoo:\n",
    ]
    for model_id, entry in entries.items():
        entry = dict(entry)
        prov = entry.pop("provenance", None)
        if prov is None and provenance != "none" and "arch" in entry:
            prov = _provenance(str(entry["arch"]))
        if provenance == "block" and prov:
            entry["provenance"] = prov
        elif provenance == "comment" and prov:
            out.append(
                _comment(
                    [f"{k}: {', '.join(v) if isinstance(v, list) else v}" for k, v in prov.items()],
                    "  ",
                )
            )
        body = yaml.safe_dump({model_id: entry}, sort_keys=False, default_flow_style=None,
                              width=100)
        out.append("".join(f"  {line}\n" for line in body.splitlines()))
    if not entries:
        out[-1] = "zoo: {}\n"
    for title, items in (
        ("unmapped tags (no entry written)", unmapped),
        ("skipped: weights not on this machine", skipped),
        ("dropped", dropped),
    ):
        if items:
            out.append("\n" + _comment([f"{title}: {len(items)}", *(f"  {i}" for i in items)]))
    path = Path(path)
    _atomic_write(path, "".join(out))
    return path


# --------------------------------------------------------------------------------------------
# The command: `filterdb zoo timm`
# --------------------------------------------------------------------------------------------


def make_zoo(
    path: str | os.PathLike[str],
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    only_available: bool = False,
    drop_no_3x3: bool = True,
    cache: str | os.PathLike[str] | None = None,
    jobs: int = 1,
    provenance: str = "comment",
) -> dict[str, Any]:
    """Generate, size, filter and write a timm zoo file in one call.

    Parameters
    ----------
    path : path-like
        Output params file (top-level ``zoo:`` only).
    include, exclude : sequence of str
        fnmatch globs on ``arch.tag`` names.
    weights_dir : path-like, optional
        Use ``DIR/arch.tag.safetensors`` (or ``.pth``/``.bin``) as ``weights_file`` where present.
    only_available : bool
        Keep only models whose weights are on this machine (:func:`filter_available`); the
        others are listed in the file as skipped.
    drop_no_3x3 : bool
        Size every architecture on meta and leave out models without a 3x3 conv (and those
        that fail to build on meta), listed in the file as dropped.
    cache, jobs
        See :func:`size_entries`.
    provenance : {"comment", "block", "none"}
        See :func:`write_zoo`.

    Returns
    -------
    dict
        ``path``, ``entries`` (written), ``unmapped``, ``skipped``, ``no_3x3``, ``failed``
        (lists of ids, with reasons where known).
    """
    entries, unmapped = generate_entries(include, exclude)
    no_3x3: list[str] = []
    failed: list[str] = []
    if drop_no_3x3:
        sizes = size_entries([e["arch"] for e in entries.values()], cache=cache, jobs=jobs)
        entries, no_3x3, failed = drop_without_3x3(entries, sizes)
    if weights_dir is not None:
        entries = weights_dir_overrides(entries, weights_dir)
    skipped: list[str] = []
    if only_available:
        entries, skipped = filter_available(entries)
    dropped = [f"{i}: no 3x3 conv" for i in no_3x3] + [f"{f} (meta build failed)" for f in failed]
    header = [
        f"include={list(include)} exclude={list(exclude)}; {len(entries)} entries, "
        f"{len(unmapped)} unmapped, {len(skipped)} skipped, {len(dropped)} dropped",
        "Build: filterdb extract MODEL --params THIS_FILE; filterdb assemble --params THIS_FILE",
    ]
    out = write_zoo(path, entries, unmapped, skipped=skipped, dropped=dropped,
                    provenance=provenance, header=header)
    return {"path": out, "entries": list(entries), "unmapped": unmapped, "skipped": skipped,
            "no_3x3": no_3x3, "failed": failed}


def add_cli_arguments(parser: Any) -> None:
    """Options of ``filterdb zoo timm`` on an ``argparse`` (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("--include", action="append", default=None, metavar="GLOB",
                        help="fnmatch glob on arch.tag names; repeatable (default: all)")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="fnmatch glob on arch.tag names to leave out; repeatable")
    parser.add_argument("--out", default="zoo-timm.yaml", help="default: zoo-timm.yaml")
    parser.add_argument("--summary", action="store_true",
                        help="print the projected models, layers, filters and bytes; write nothing")
    parser.add_argument("--weights-dir", metavar="DIR",
                        help="use DIR/arch.tag.safetensors (or .pth) as weights_file where present")
    parser.add_argument("--only-available", action="store_true",
                        help="keep only models whose weights are on this machine (skips listed)")
    parser.add_argument("--keep-no-3x3", action="store_true",
                        help="do not size on meta nor drop models without a 3x3 conv")
    parser.add_argument("--provenance", choices=("comment", "block", "none"), default="comment",
                        help="licence/paper ids as comments (default), a block, or omitted")
    parser.add_argument("--cache", default=".cache/filterdb/timm-sizes.json",
                        help="per-architecture size cache (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="processes for the meta builds")


def run_cli(args: Any) -> int:
    """Run ``filterdb zoo timm`` for parsed :func:`add_cli_arguments` options.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    int
        Exit status (0).
    """
    include = args.include or ["*"]
    if args.summary:
        print(summary(include, args.exclude, cache=args.cache, jobs=args.jobs, progress=True))
        return 0
    report = make_zoo(
        args.out, include, args.exclude, weights_dir=args.weights_dir,
        only_available=args.only_available, drop_no_3x3=not args.keep_no_3x3,
        cache=args.cache, jobs=args.jobs, provenance=args.provenance,
    )
    print(
        f"{len(report['entries'])} entries -> {report['path']}; unmapped tags: "
        f"{len(report['unmapped'])}, skipped (no local weights): {len(report['skipped'])}, "
        f"no 3x3 conv: {len(report['no_3x3'])}, meta build failed: {len(report['failed'])}"
    )
    return 0
