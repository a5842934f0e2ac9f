"""timm's pretrained tags and architecture names -> filterdb meta-parameters.

:func:`map_tag` reads an ``arch.TAG`` tag (``in22k_ft_in1k``) through the ``timm_tags`` section of
the label table ``filterdb/zoo/labels.yaml`` (data, not code): datasets, training method and task.
Tags the table cannot map are returned with a reason, never guessed. :func:`architecture_family`
gives an architecture's ``family`` from the table's family patterns, else its timm module.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from filterdb.zoo.labels import LABELS_FILE, load_label_table, match_family

__all__ = ["TagMapping", "architecture_family", "map_tag", "tag_table"]


def tag_table() -> dict[str, Any]:
    """The ``timm_tags`` section of the label table.

    Returns
    -------
    dict
        ``separator``, ``method_precedence``, ``datasets``, ``methods``, ``ignore``,
        ``ignore_patterns`` and ``tags``.
    """
    return load_label_table()["timm_tags"]


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
    """Map a timm pretrained tag to meta-parameters through the label table's ``timm_tags``.

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
    table = tag_table()
    datasets: Mapping[str, Mapping[str, str]] = table["datasets"]
    methods: Mapping[str, Mapping[str, str]] = table["methods"]
    ignore = {str(t) for t in table["ignore"]}
    patterns = [re.compile(p) for p in table["ignore_patterns"]]
    override = (table.get("tags") or {}).get(tag, ...)
    if override is None:
        return TagMapping(tag, None, f"listed as unmapped in {LABELS_FILE}")

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
    training = next((m for m in table["method_precedence"] if m in found_methods), "normal")
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
    family = match_family(arch, source="timm")
    if family is not None:
        return family
    from timm.models._registry import _model_to_module

    module = _model_to_module.get(arch)
    try:
        return str(load_label_table()["family_modules"][module])
    except KeyError:
        raise KeyError(
            f"timm architecture {arch!r} (module {module!r}) has no family in {LABELS_FILE}"
        ) from None
