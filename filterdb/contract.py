"""The data contract's names, shared by the writer, the schemas and the statistics.

Everything downstream of the store may import this module (it imports nothing); the full layout
is ``docs/data-layout.md``.
"""

from __future__ import annotations

__all__ = ["CATEGORICAL", "DEPTH_METHODS", "SCHEMA_VERSION"]

#: Version of the dataset layout, written as the global attribute ``filterdb_schema_version``.
SCHEMA_VERSION = 1

#: Model-level meta-parameters stored as int16 codes with ``flag_values``/``flag_meanings``.
CATEGORICAL = (
    "task",
    "visual_category",
    "training_dataset",
    "pretraining_dataset",
    "architecture",
    "family",
    "source",
    "training",
)

#: How ``conv_depth`` was determined (the ``depth_method`` codes, in code order).
DEPTH_METHODS = ("fx", "execution-order", "key-order", "upstream")
