"""The zoo's label table: other collections' labels -> filterdb's vocabularies.

One data file, ``filterdb/zoo/labels.yaml`` (package data, read through
:mod:`importlib.resources`), holds the family patterns that timm's architecture names and the
original CNN Filter DB's free-text labels share, the timm module fallback, the upstream label
aliases and the grammar of timm's pretrained tags (:mod:`filterdb.zoo.timm_tags`). This module
reads it and applies the parts both sources use: label normalisation, alias lookup and family
matching.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import yaml

__all__ = [
    "ALIAS_COLUMNS",
    "LABELS_FILE",
    "SOURCES",
    "label_aliases",
    "load_label_table",
    "map_label",
    "match_family",
    "none_labels",
    "normalise_label",
]

LABELS_FILE = "labels.yaml"
"""The label table, package data of :mod:`filterdb.zoo`."""

SOURCES = ("timm", "upstream")
"""The collections whose labels the table maps (the third element of a family pattern row)."""

ALIAS_COLUMNS = ("task", "visual_category", "dataset", "training")
"""Meta-parameters with upstream aliases (``dataset`` serves both dataset columns)."""


@functools.cache
def load_label_table() -> dict[str, Any]:
    """The label table ``filterdb/zoo/labels.yaml`` (package data), parsed once.

    Returns
    -------
    dict
        ``family_patterns``, ``family_modules``, ``aliases``, ``none_labels`` and
        ``timm_tags`` (see the comments of the file).

    Examples
    --------
    >>> load_label_table()["aliases"]["task"]["detection"]
    'object-detection'
    """
    text = resources.files("filterdb.zoo").joinpath(LABELS_FILE).read_text()
    return yaml.safe_load(text)


def normalise_label(value: Any) -> str | None:
    """Normalise a label: lower case, runs of other characters than [a-z0-9] -> '-'.

    Parameters
    ----------
    value : object
        A label or a name (any case, spaces or underscores).

    Returns
    -------
    str or None
        None for a missing value (None, NaN, ``pd.NA``, blank text).

    Examples
    --------
    >>> normalise_label("  Object Detection "), normalise_label("inception_resnet_v2")
    ('object-detection', 'inception-resnet-v2')
    >>> normalise_label(float("nan")) is None
    True
    """
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    if not text:
        return None
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@functools.cache
def label_aliases(column: str) -> dict[str, str]:
    """The upstream aliases of one meta-parameter: normalised label -> vocabulary value.

    Parameters
    ----------
    column : {"task", "visual_category", "dataset", "training"}
        ``dataset`` serves ``training_dataset`` and ``pretraining_dataset``.

    Returns
    -------
    dict of str to str
        A normalised label equal to a vocabulary value maps to itself without an entry.

    Examples
    --------
    >>> label_aliases("dataset")["ilsvrc2012"]
    'imagenet-1k'
    """
    if column not in ALIAS_COLUMNS:
        raise ValueError(f"column must be one of {list(ALIAS_COLUMNS)}, not {column!r}")
    return dict(load_label_table()["aliases"][column])


@functools.cache
def none_labels() -> frozenset[str]:
    """Normalised pretraining labels that mean ``none`` (upstream leaves models trained from
    scratch empty).

    Returns
    -------
    frozenset of str

    Examples
    --------
    >>> "from-scratch" in none_labels() and "" in none_labels()
    True
    """
    return frozenset(str(x) for x in load_label_table()["none_labels"])


def map_label(value: Any, aliases: Mapping[str, str], vocabulary: Sequence[str]) -> str | None:
    """Map one upstream label to a vocabulary value.

    Parameters
    ----------
    value : object
        The upstream label (any case, spaces or underscores).
    aliases : mapping
        Normalised label -> vocabulary value (:func:`label_aliases`).
    vocabulary : sequence of str
        The allowed values.

    Returns
    -------
    str or None
        The vocabulary value, or None when the label cannot be mapped.

    Examples
    --------
    >>> map_label("Object Detection", label_aliases("task"), ["object-detection"])
    'object-detection'
    >>> map_label("GAN-Generator", label_aliases("task"), ["gan-generator"])
    'gan-generator'
    >>> map_label("Medical CT", label_aliases("visual_category"), ["medical-ct"])
    'medical-ct'
    >>> map_label("Pose Estimation", label_aliases("task"), ["classification"]) is None
    True
    """
    key = normalise_label(value)
    if key is None:
        return None
    mapped = aliases.get(key, key)
    return mapped if mapped in vocabulary else None


@functools.cache
def _family_patterns(source: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    """The family pattern rows one source uses, in table order, compiled."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {list(SOURCES)}, not {source!r}")
    rows = []
    for pattern, family, *only in load_label_table()["family_patterns"]:
        if not only or source in only:
            rows.append((re.compile(pattern), str(family)))
    return tuple(rows)


def match_family(*candidates: Any, source: str) -> str | None:
    """The family of the first candidate name that a family pattern of ``source`` matches.

    Each candidate is normalised (:func:`normalise_label`; missing ones are skipped) and searched
    with the table's patterns in order: the first match wins.

    Parameters
    ----------
    *candidates : object
        Names in order of preference (timm: the architecture; upstream: Backbone, Network, Name,
        model).
    source : {"timm", "upstream"}
        Whose rows of the table apply.

    Returns
    -------
    str or None
        A value of the ``family`` vocabulary, or None when no pattern matches.

    Examples
    --------
    >>> match_family("seresnext50_32x4d", source="timm")
    'resnext'
    >>> match_family("inception_resnet_v2", source="timm")
    'inception'
    >>> match_family(None, "SE-ResNet-50", source="upstream")
    'senet'
    >>> match_family("ViT-B/16", source="upstream") is None
    True
    """
    rows = _family_patterns(source)
    for value in candidates:
        key = normalise_label(value)
        if key is None:
            continue
        for pattern, family in rows:
            if pattern.search(key):
                return family
    return None
