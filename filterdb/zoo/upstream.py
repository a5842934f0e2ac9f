"""Import the original CNN Filter DB release (v1.0.0) into filterdb's dataset layout.

``filterdb import-upstream dataset.h5`` (the releases issue, part 5): :func:`import_upstream`
converts the file that :mod:`filterdb.zoo.upstream_read` reads and checks (its layout is
described there) into filterdb's model, layer and kernel-count tables, built by
:mod:`filterdb.zoo.upstream_tables`, and writes the dataset and the import report.

The conversion streams: every layer's contiguous filter range is read in blocks of at most
``chunk_filters`` rows, so memory is bounded by the block, not by the 105 GB file. Casting the
float64 upstream weights to float32 is the one lossy step; it matches filterdb's float32 contract.
A layer with NaN or Inf weights (or values beyond float32's range) stops the import with an error
naming the model, the layer and the count, and nothing is written, as for extracted models.

Labels are mapped to ``filterdb/validate/schemas/vocabularies.yaml`` through the aliases and family
patterns of the label table ``filterdb/zoo/labels.yaml`` (:mod:`filterdb.zoo.labels`; data, not
code), with the known corrections of METHODS.md section 4 applied:

- a task containing "Segmentation" (any case) is ``segmentation``;
- a ``compnet_..._NITRC_...`` model labelled ``medical-ct`` is ``medical-mri``.

Every value that could not be mapped is reported (column, value, what it became, models
affected) in the returned :class:`~filterdb.zoo.upstream_tables.ImportReport`, also written as
``<out>.import-report.json``. ``task`` and ``visual_category`` fall back to ``unknown``;
``training_dataset`` and ``pretraining_dataset`` to ``unknown`` (an empty pretraining dataset
means ``none``); ``family`` to ``other``.

What upstream does not record and how it is filled:

- ``conv_depth``/``conv_depth_norm`` come from upstream (ONNX graph), so ``depth_method`` is
  ``upstream``; a NaN ``conv_depth_norm`` of a model with a single conv depth becomes 0.
- ``stride_*`` and ``dilation_*`` are unknown and written as 1.
- ``in_channels``/``out_channels`` come from the table when it has them; ``groups`` is inferred
  as ``out * in / filters`` (1 when the counts match). Without usable channels a layer is written
  with ``out_channels = 1, in_channels = filters, groups = 1`` (orthogonality then is NaN, i.e.
  unknown), or with ``in_channels = filters / out_channels`` when only ``out_channels`` is
  known; every such layer is listed in the report.
- ``kernel_count``: the ``3x3`` count is the number of filters actually imported; other shapes
  come from upstream's ``(X, Y) filters`` columns when present (else only ``3x3`` is recorded,
  so ``total_filters = n_filters_3x3`` and ``share_3x3 = 1`` describe the recorded shapes only).
  ``total_filters`` is always the sum over shapes except 1x1, as in our contract.
- ``n_parameters`` is 0 (unknown), ``accuracy`` NaN, ``training`` ``unknown`` unless a
  ``Training`` column says otherwise, ``source`` ``upstream``, ``weights``
  ``upstream:cnn-filter-db-v1.0.0:<model_id>``.
- Model ids: upstream's unique string ``model`` column (else ``Name``), sanitised to
  ``^[A-Za-z0-9][A-Za-z0-9._-]*$``; a clash gets ``-<model_id>`` appended; no usable name gives
  ``upstream-<model_id>``. Layer names are upstream's ``layer_id`` as text.
- Upstream exported its models via ONNX in eval mode, so BatchNorm is folded into the conv
  weights; the dataset's ``comment`` attribute says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from filterdb.atomic import atomic_path
from filterdb.dataset.write import StoreParams, write_dataset
from filterdb.version import __version__
from filterdb.zoo.upstream_read import (
    filters_node,
    format_error,
    parse_ranges,
    read_meta,
    weight_blocks,
)
from filterdb.zoo.upstream_tables import RELEASE, ImportReport, build_tables

__all__ = ["import_upstream"]


def import_upstream(
    h5_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    chunk_filters: int = 1 << 20,
    progress: bool = False,
    *,
    params: StoreParams | None = None,
    report_path: str | os.PathLike[str] | None = None,
    validate: bool = True,
) -> ImportReport:
    """Convert a CNN Filter DB v1.0.0 file into filterdb's netCDF dataset (streaming).

    Parameters
    ----------
    h5_path : path-like
        The upstream ``dataset.h5`` (``filters`` + ``meta``; the layout is described in
        :mod:`filterdb.zoo.upstream_read`).
    out_path : path-like
        The dataset to write (atomically: nothing is left behind on failure).
    chunk_filters : int
        Most filter rows read from ``h5_path`` at once; memory is about
        ``chunk_filters * 108`` bytes (float64 block plus its float32 copy).
    progress : bool
        Show a progress bar over filters.
    params : StoreParams, optional
        On-disk layout of the result (``params.yaml: store``).
    report_path : path-like, optional
        Where to write the report; default ``<out_path>.import-report.json``.
    validate : bool
        Check the result with :func:`filterdb.validate.layout.validate_dataset` before it is renamed
        into place.

    Returns
    -------
    ImportReport
        Sizes, model ids, unmapped labels, corrections and fallbacks.

    Raises
    ------
    UpstreamFormatError
        The file does not match the layout: no ``meta`` or ``filters``, wrong shape or dtype,
        missing index levels, malformed, out-of-range or overlapping ``filter_ids``, bad depths.
    UpstreamWeightsError
        A layer's weights hold NaN or Inf, or values beyond float32's range (nothing is
        written: filterdb's contract has finite weights only).
    filterdb.atomic.DiskFullError
        The dataset or the report could not be written for lack of space (nothing is left).
    filterdb.validate.failures.SchemaValidationError
        The converted dataset fails validation (a bug; nothing is written).

    Notes
    -----
    float64 -> float32 is the one lossy step (filterdb's contract stores float32). Layers are
    ordered by (model in order of first appearance in ``meta``, ``conv_depth``, ``layer_id``),
    each layer's filters in upstream order.
    """
    if chunk_filters < 1:
        raise ValueError(f"chunk_filters must be >= 1, got {chunk_filters}")
    h5_path, out_path = Path(h5_path), Path(out_path)
    report = ImportReport(source=str(h5_path), output=str(out_path))
    meta = read_meta(h5_path)
    with h5py.File(h5_path, "r") as f:
        node = filters_node(h5_path, f)
        n_upstream = int(node.shape[0])
        if len(meta) == 0:
            raise format_error(h5_path, "'meta' has no rows")
        start, count = parse_ranges(h5_path, meta, n_upstream)
        models, layers, kernel_counts, ids = build_tables(h5_path, meta, start, count, report)

        report.n_models, report.n_layers = len(ids), len(layers)
        report.n_filters = int(count.sum())
        report.n_filters_upstream = n_upstream
        report.n_filters_unreferenced = n_upstream - report.n_filters

        starts = layers.pop("_start").to_numpy(np.int64)
        labels = [
            (ids[m], name)
            for m, name in zip(layers["layer_model"], layers["layer_name"], strict=True)
        ]
        blocks = weight_blocks(
            h5_path,
            node,
            starts,
            layers["layer_filter_count"].to_numpy(np.int64),
            labels,
            int(chunk_filters),
            progress,
        )
        with atomic_path(out_path) as tmp:
            write_dataset(
                tmp,
                models,
                layers,
                kernel_counts,
                blocks,
                params or StoreParams(),
                history=f"filterdb {__version__} import-upstream {h5_path.name} ({RELEASE})",
                attrs=_import_attrs(h5_path),
            )
            if validate:
                _validate(tmp, out_path)

    rpath = (
        Path(report_path)
        if report_path is not None
        else out_path.with_name(out_path.name + ".import-report.json")
    )
    with atomic_path(rpath) as tmp:
        tmp.write_text(report.to_json() + "\n")
    return report


def _import_attrs(h5_path: Path) -> dict[str, str]:
    """Global attributes that differ from filterdb's own extraction (provenance, BN folding)."""
    return {
        "license": (
            "CC-BY-SA-4.0: data of the CNN Filter DB v1.0.0 release by Paul Gavrikov and Janis "
            "Keuper (attribution required, share alike)"
        ),
        "source": (
            f"CNN Filter DB v1.0.0 (Gavrikov & Keuper 2022, doi:10.5281/zenodo.6371680), "
            f"imported from {h5_path.name} by filterdb import-upstream"
        ),
        "comment": (
            "weights are upstream's float64 values cast to float32 (the one lossy step). Upstream "
            "exported its models via ONNX in eval mode, so BatchNorm is folded into the conv "
            "weights. conv_depth is upstream's (ONNX graph); stride and dilation are unknown (1); "
            "channels missing upstream are described in the import report. Filter k of a layer "
            "is output channel k // (in_channels/groups), input channel k % (in_channels/groups)."
        ),
    }


def _validate(path: Path, label: Path) -> None:
    import xarray as xr

    from filterdb.validate.layout import validate_dataset

    with xr.open_dataset(path) as ds:
        validate_dataset(ds, str(label))
