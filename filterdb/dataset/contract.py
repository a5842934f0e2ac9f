"""The data contract's names and codes, shared by the writer, the readers, the schemas and the
statistics.

Every module may import this one (it imports nothing); the full layout
is ``docs/data-layout.md``.
"""

from __future__ import annotations

__all__ = [
    "BN_FOLLOWS",
    "CATEGORICAL",
    "DATA_LICENSE",
    "DEPTH_METHODS",
    "LAYER_INT32",
    "LAYER_INT64",
    "LICENSE_NOTE",
    "MODEL_FLOAT",
    "MODEL_INT",
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

#: Model-level integers (int64).
MODEL_INT = (
    "n_parameters",
    "n_filters_3x3",
    "total_filters",
    "model_first_layer",
    "model_layer_count",
)
#: Model-level floats (float64, NaN when unknown).
MODEL_FLOAT = ("accuracy", "share_3x3", "n_train_samples")
#: Layer-level int32 columns.
LAYER_INT32 = (
    "layer_model",
    "conv_depth",
    "in_channels",
    "out_channels",
    "groups",
    "stride_y",
    "stride_x",
    "dilation_y",
    "dilation_x",
)
#: Layer-level int64 columns: the layer's run of filters.
LAYER_INT64 = ("layer_first_filter", "layer_filter_count")
#: Meanings of the ``bn_follows`` codes 0, 1.
BN_FOLLOWS = ("no", "yes")

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
