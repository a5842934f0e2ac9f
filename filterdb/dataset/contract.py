"""The data contract's names, shared by the writer, the schemas and the statistics.

Everything downstream of the store may import this module (it imports nothing); the full layout
is ``docs/data-layout.md``.
"""

from __future__ import annotations

__all__ = [
    "CATEGORICAL",
    "DATA_LICENSE",
    "DEPTH_METHODS",
    "LICENSE_NOTE",
    "MODEL_TEXT",
    "SCHEMA_VERSION",
]

#: Version of the dataset layout, written as the global attribute ``filterdb_schema_version``.
SCHEMA_VERSION = 2

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
    "weight_precision",
    "bn_folded",
    "license",
)

#: Model-level free text: provenance of the weights, the package file they came from
#: (``name==version:member`` or ``none``), and the upstream model the package names.
MODEL_TEXT = ("weights", "package", "upstream")

#: How ``conv_depth`` was determined (the ``depth_method`` codes, in code order).
#: ``onnx-graph``/``tfjs-graph``/``keras-graph``: longest path in the file's own graph (ONNX nodes,
#: TF.js graph-model nodes, or the inbound nodes of a Keras/TF.js layers model); ``file-order``:
#: the order of the conv weights in a file that stores no graph (a Keras weights-only ``.h5``).
DEPTH_METHODS = (
    "fx",
    "execution-order",
    "key-order",
    "upstream",
    "onnx-graph",
    "tfjs-graph",
    "keras-graph",
    "file-order",
)

#: Licence of what filterdb itself contributes (models trained here, the compilation, statistics).
DATA_LICENSE = "CC-BY-4.0"

#: The licence statement carried by the netCDF attributes, the manifest and the card.
LICENSE_NOTE = (
    "Each model's weights keep their own licence (the per-model `license` variable, an SPDX id: "
    "of the weights where the package says, else of the package that ships them). What filterdb "
    f"adds (models trained here, the compilation, the statistics) is {DATA_LICENSE}. Cite "
    "filterdb and Gavrikov & Keuper, CVPR 2022 (see CITATION.cff)."
)
