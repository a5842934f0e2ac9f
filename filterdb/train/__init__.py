"""Training small nets here: offline data loaders, CPU-sized architectures, the study's recipe.

Everything is importable without side effects; the registries fill on import of the submodules
(:mod:`filterdb.train.data`, :mod:`filterdb.train.nets`). The CLI entry point is
:func:`filterdb.train.recipe.train_entry`.
"""

from __future__ import annotations

from filterdb.train.data import (
    DatasetSpec,
    DatasetSplits,
    list_datasets,
    load_dataset,
    stratified_order,
)
from filterdb.train.nets import build_net, default_width, list_archs
from filterdb.train.recipe import ENTRY_KEYS, TrainConfig, evaluate, train, train_entry

__all__ = [
    "ENTRY_KEYS",
    "DatasetSpec",
    "DatasetSplits",
    "TrainConfig",
    "build_net",
    "default_width",
    "evaluate",
    "list_archs",
    "list_datasets",
    "load_dataset",
    "stratified_order",
    "train",
    "train_entry",
]
