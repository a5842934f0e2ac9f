"""Import the original CNN Filter DB release (v1.0.0) into filterdb's dataset layout.

``filterdb import-upstream dataset.h5`` (the releases issue, part 5). The upstream file
(METHODS.md section 4; Zenodo doi:10.5281/zenodo.6371680) holds, in one HDF5 file:

- ``filters``: an HDF5 dataset of shape ``(N, 3, 3)`` (``(N, 9)`` is accepted too: the
  upstream README describes that shape), float64 in v1.0.0. Row ``i`` is filter id ``i``.
- ``meta``: a pandas table (``DataFrame.to_hdf``, PyTables, format fixed or table) with one row
  per conv layer, MultiIndex ``(model_id, conv_depth, conv_depth_norm, layer_id)`` and a column
  ``filter_ids`` ``"start:end"`` whose *end is inclusive*. Model-level columns (``model``,
  ``Name``, ``Task``, ``Datatype`` / ``Visual Category``, ``Training-Dataset``,
  ``Pretraining-Dataset``, ``Network``, ``Backbone``, ``(X, Y) filters``, ...) repeat on every
  row of a model. A ``meta`` stored as a byte array of CSV text (what upstream's own notebook
  reads) is accepted too.

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
affected) in the returned :class:`ImportReport`, also written as ``<out>.import-report.json``.
``task`` and ``visual_category`` fall back to ``unknown``; ``training_dataset`` and
``pretraining_dataset`` to ``unknown`` (an empty pretraining dataset means ``none``);
``family`` to ``other``.

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

import io
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from filterdb._atomic import atomic_path
from filterdb.dataset.write import StoreParams, write_dataset
from filterdb.errors import FilterDBError
from filterdb.version import __version__
from filterdb.zoo.labels import (
    label_aliases,
    map_label,
    match_family,
    none_labels,
    normalise_label,
)

__all__ = [
    "DEPTH_METHOD",
    "RELEASE",
    "Correction",
    "ImportReport",
    "Unmapped",
    "UpstreamFormatError",
    "UpstreamWeightsError",
    "import_upstream",
    "read_meta",
]

RELEASE = "cnn-filter-db-v1.0.0"
DEPTH_METHOD = "upstream"
INDEX_LEVELS = ("model_id", "conv_depth", "conv_depth_norm", "layer_id")
FILTERS_KEYS = ("filters", "filter")  # v1.0.0 uses `filters`; the upstream README says `filter`
MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
KERNEL_COLUMN_RE = re.compile(r"^\(\s*([1-9]\d*)\s*,\s*([1-9]\d*)\s*\)\s*filters$")
NITRC_RE = re.compile(r"compnet_.*_NITRC_", re.IGNORECASE)

# Upstream column names (normalised) for each role; the first present wins.
COLUMN_ROLES: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "name": ("name",),
    "task": ("task",),
    "visual_category": ("visual-category", "datatype", "data-type", "visualcategory"),
    "training_dataset": ("training-dataset", "trainingdataset", "dataset"),
    "pretraining_dataset": ("pretraining-dataset", "pre-training-dataset", "pretrainingdataset"),
    "network": ("network", "architecture", "arch"),
    "backbone": ("backbone",),
    "training": ("training", "training-method"),
    "in_channels": ("in-channels", "in-channel", "input-channels", "c-in", "cin", "in"),
    "out_channels": ("out-channels", "out-channel", "output-channels", "c-out", "cout", "out"),
}


class UpstreamFormatError(FilterDBError, ValueError):
    """The file does not have the CNN Filter DB v1.0.0 layout (the message says what is wrong)."""


class UpstreamWeightsError(FilterDBError, ValueError):
    """A layer's weights hold NaN or Inf (the message names the file, model, layer and count)."""


@dataclass
class Unmapped:
    """A label that could not be mapped to a vocabulary value.

    Attributes
    ----------
    column : str
        Our meta-parameter (``task``, ``visual_category``, ...).
    upstream_column : str or None
        The upstream column it was read from (None when the column is absent).
    value : str or None
        The upstream value (None when missing).
    mapped_to : str
        What was written instead (``unknown``, ``other``).
    models : list of str
        The (filterdb) ids of the models affected.
    """

    column: str
    upstream_column: str | None
    value: str | None
    mapped_to: str
    models: list[str] = field(default_factory=list)


@dataclass
class Correction:
    """A known upstream label error that was corrected (METHODS.md section 4).

    Attributes
    ----------
    model : str
        The filterdb model id.
    column : str
        Our meta-parameter.
    upstream_value : str
        The value as upstream has it.
    value : str
        The corrected value written.
    rule : str
        Which correction applied.
    """

    model: str
    column: str
    upstream_value: str
    value: str
    rule: str


@dataclass
class ImportReport:
    """What :func:`import_upstream` did.

    Attributes
    ----------
    source, output : str
        The upstream file and the dataset written.
    n_models, n_layers, n_filters : int
        Sizes of the dataset written.
    n_filters_upstream : int
        Rows of upstream's ``filters`` array.
    n_filters_unreferenced : int
        Upstream filters that no layer's ``filter_ids`` covers (not imported).
    model_ids : dict of str to str
        Upstream ``model_id`` (as text) -> filterdb model id.
    unmapped : list of Unmapped
        Every label that could not be mapped.
    corrections : list of Correction
        Every known label error corrected.
    channel_fallbacks : list of dict
        Layers whose channels were missing or inconsistent with their filter count, with what
        was written instead.
    kernel_count_mismatches : list of dict
        Models whose upstream ``(3, 3) filters`` count differs from the filters imported.
    notes : list of str
        Fields filled with a documented default.
    """

    source: str
    output: str
    n_models: int = 0
    n_layers: int = 0
    n_filters: int = 0
    n_filters_upstream: int = 0
    n_filters_unreferenced: int = 0
    model_ids: dict[str, str] = field(default_factory=dict)
    unmapped: list[Unmapped] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)
    channel_fallbacks: list[dict[str, Any]] = field(default_factory=list)
    kernel_count_mismatches: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text (keys in a fixed order, deterministic)."""
        return json.dumps(self.to_dict(), indent=indent, default=_json_default)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


# ------------------------------------------------------------------------------ labels


def _text(value: Any) -> str | None:
    key = normalise_label(value)
    return None if key is None else str(value).strip()


# ------------------------------------------------------------------------------ reading


def _fail(path: Path, message: str) -> UpstreamFormatError:
    return UpstreamFormatError(f"{path}: not a CNN Filter DB v1.0.0 file: {message}")


def read_meta(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read upstream's ``meta`` table, one row per layer, index levels as columns.

    Parameters
    ----------
    path : path-like
        The upstream HDF5 file.

    Returns
    -------
    pandas.DataFrame
        The table with ``model_id``, ``conv_depth``, ``conv_depth_norm``, ``layer_id`` and
        ``filter_ids`` as columns (plus every other upstream column).

    Raises
    ------
    UpstreamFormatError
        No ``meta``, an unreadable one, or missing index levels / columns.
    """
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "meta" not in f:
                raise _fail(path, f"no 'meta' table (top-level keys: {sorted(f.keys())})")
            node = f["meta"]
            csv_bytes = bytes(bytearray(node[...])) if isinstance(node, h5py.Dataset) else None
    except OSError as exc:
        raise _fail(path, f"cannot open as HDF5 ({exc})") from None
    try:
        if csv_bytes is not None:
            meta = pd.read_csv(io.StringIO(csv_bytes.decode("utf-8")))
        else:
            try:
                import tables  # noqa: F401  (pandas.read_hdf needs PyTables)
            except ImportError:  # pragma: no cover - a packaging problem, not a data problem
                raise ImportError(
                    "reading upstream's 'meta' table needs PyTables: pip install tables"
                ) from None
            meta = pd.read_hdf(path, "meta")
    except ImportError:
        raise
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise _fail(path, f"cannot read 'meta' as a pandas table ({why})") from None
    if not isinstance(meta, pd.DataFrame):
        raise _fail(path, f"'meta' is a {type(meta).__name__}, not a DataFrame")
    names = [n for n in meta.index.names if n is not None]
    if names:
        meta = meta.reset_index()
    else:
        meta = meta.reset_index(drop=True)
    missing = [c for c in (*INDEX_LEVELS, "filter_ids") if c not in meta.columns]
    if missing:
        raise _fail(
            path,
            f"'meta' lacks {missing} (expected MultiIndex {list(INDEX_LEVELS)} and a column "
            f"'filter_ids'; found index {names} and columns {[str(c) for c in meta.columns]})",
        )
    return meta


def _filters_node(path: Path, f: h5py.File) -> h5py.Dataset:
    for key in FILTERS_KEYS:
        if key in f and isinstance(f[key], h5py.Dataset):
            node = f[key]
            ok_shape = (node.ndim == 3 and node.shape[1:] == (3, 3)) or (
                node.ndim == 2 and node.shape[1] == 9
            )
            if not ok_shape:
                raise _fail(path, f"'{key}' has shape {node.shape}, expected (N, 3, 3) or (N, 9)")
            if node.dtype.kind != "f":
                raise _fail(path, f"'{key}' has dtype {node.dtype}, expected floating point")
            return node
    raise _fail(path, f"no 'filters' dataset (top-level keys: {sorted(f.keys())})")


def _parse_ranges(path: Path, meta: pd.DataFrame, n_filters: int) -> tuple[np.ndarray, np.ndarray]:
    """``filter_ids`` "start:end" (inclusive end) -> (start, count); checks range and overlap."""
    text = meta["filter_ids"].astype(str).str.strip()
    parts = text.str.extract(r"^(\d+)\s*:\s*(\d+)$")
    bad = parts[0].isna().to_numpy()
    if bad.any():
        rows = np.flatnonzero(bad)[:5]
        raise _fail(
            path,
            f"{int(bad.sum())} filter_ids not of the form 'start:end', e.g. "
            + ", ".join(f"row {r}: {text.iloc[r]!r}" for r in rows),
        )
    start = parts[0].astype(np.int64).to_numpy()
    end = parts[1].astype(np.int64).to_numpy()  # inclusive
    rev = np.flatnonzero(end < start)
    if rev.size:
        r = rev[0]
        raise _fail(path, f"{rev.size} filter_ids with end < start, e.g. row {r}: {text.iloc[r]!r}")
    out = np.flatnonzero(end >= n_filters)
    if out.size:
        r = out[0]
        raise _fail(
            path,
            f"{out.size} filter_ids beyond the {n_filters} filters, e.g. row {r} "
            f"(model_id {meta['model_id'].iloc[r]}, layer_id {meta['layer_id'].iloc[r]}): "
            f"{text.iloc[r]!r} (the end is inclusive)",
        )
    order = np.argsort(start, kind="stable")
    overlap = np.flatnonzero(start[order][1:] <= end[order][:-1])
    if overlap.size:
        a, b = order[overlap[0]], order[overlap[0] + 1]
        raise _fail(
            path,
            f"{overlap.size} overlapping filter_ids ranges, e.g. row {a} {text.iloc[a]!r} and "
            f"row {b} {text.iloc[b]!r} (the end is inclusive)",
        )
    return start, end - start + 1


def _column_of(meta: pd.DataFrame, role: str) -> str | None:
    by_norm = {normalise_label(c): c for c in meta.columns if isinstance(c, str)}
    for candidate in COLUMN_ROLES[role]:
        if candidate in by_norm:
            return by_norm[candidate]
    return None


# ------------------------------------------------------------------------------ conversion


def _model_ids(firsts: pd.DataFrame, cols: Mapping[str, str | None]) -> list[str]:
    ids: list[str] = []
    used: set[str] = set()
    for _, row in firsts.iterrows():
        upstream_id = row["model_id"]
        base = None
        for role in ("model", "name"):
            col = cols[role]
            raw = _text(row[col]) if col else None
            if raw:
                cand = re.sub(r"[^A-Za-z0-9._-]+", "-", raw)
                cand = re.sub(r"^[^A-Za-z0-9]+", "", cand).rstrip("-")
                if cand and MODEL_ID_RE.match(cand):
                    base = cand
                    break
        mid = base or f"upstream-{upstream_id}"
        if mid in used:
            mid = f"{mid}-{upstream_id}"
        k = 2
        while mid in used:
            mid = f"{base or 'upstream'}-{upstream_id}-{k}"
            k += 1
        used.add(mid)
        ids.append(mid)
    return ids


class _Unmapped:
    """Collects (column, upstream column, value, mapped_to) -> models."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str | None, str | None, str], list[str]] = {}

    def add(self, column: str, upstream: str | None, value: Any, to: str, model: str) -> None:
        shown = None if normalise_label(value) is None else str(value)
        self.items.setdefault((column, upstream, shown, to), []).append(model)

    def report(self) -> list[Unmapped]:
        return [
            Unmapped(c, u, v, t, sorted(set(m)))
            for (c, u, v, t), m in sorted(self.items.items(), key=lambda kv: tuple(map(str, kv[0])))
        ]


def _model_meta(
    firsts: pd.DataFrame, ids: list[str], cols: Mapping[str, str | None], report: ImportReport
) -> pd.DataFrame:
    from filterdb.validate.schema_files import load_vocabularies

    vocab = load_vocabularies()
    for name, value in (
        ("task", "unknown"),
        ("visual_category", "unknown"),
        ("training_dataset", "unknown"),
        ("family", "other"),
    ):
        if value not in vocab[name]:  # pragma: no cover - guards an edited vocabulary file
            raise RuntimeError(
                f"filterdb/validate/schemas/vocabularies.yaml: {name} lacks {value!r}"
            )
    unmapped = _Unmapped()
    rows = []
    for (_, row), mid in zip(firsts.iterrows(), ids, strict=True):

        def get(role: str, _row: pd.Series = row) -> Any:
            col = cols[role]
            return _row[col] if col else None

        out: dict[str, Any] = {}
        # task (correction: anything containing "segmentation" collapses to segmentation)
        raw = get("task")
        task = map_label(raw, label_aliases("task"), vocab["task"])
        if normalise_label(raw) is not None and "segmentation" in str(raw).lower():
            if task != "segmentation":
                report.corrections.append(
                    Correction(
                        mid, "task", str(raw), "segmentation", "task contains 'Segmentation'"
                    )
                )
            task = "segmentation"
        if task is None:
            task = "unknown"
            unmapped.add("task", cols["task"], raw, task, mid)
        out["task"] = task

        # visual category (correction: compnet_..._NITRC_... is MRI, not CT)
        raw = get("visual_category")
        vc = map_label(raw, label_aliases("visual_category"), vocab["visual_category"])
        names = " ".join(
            str(x) for x in (get("model"), get("name"), mid) if normalise_label(x) is not None
        )
        if vc == "medical-ct" and NITRC_RE.search(names):
            report.corrections.append(
                Correction(
                    mid,
                    "visual_category",
                    str(raw),
                    "medical-mri",
                    "compnet_..._NITRC_... models are MRI (METHODS.md section 4)",
                )
            )
            vc = "medical-mri"
        if vc is None:
            vc = "unknown"
            unmapped.add("visual_category", cols["visual_category"], raw, vc, mid)
        out["visual_category"] = vc

        # datasets
        raw = get("training_dataset")
        ds = map_label(raw, label_aliases("dataset"), vocab["training_dataset"])
        if ds is None:
            ds = "unknown"
            unmapped.add("training_dataset", cols["training_dataset"], raw, ds, mid)
        out["training_dataset"] = ds
        raw = get("pretraining_dataset")
        if (normalise_label(raw) or "") in none_labels():
            pre = "none"
        else:
            pre = map_label(raw, label_aliases("dataset"), vocab["pretraining_dataset"])
            if pre is None:
                pre = "unknown"
                unmapped.add("pretraining_dataset", cols["pretraining_dataset"], raw, pre, mid)
        out["pretraining_dataset"] = pre

        # architecture (free text, no whitespace) and family
        network, backbone = get("network"), get("backbone")
        arch = normalise_label(network) or normalise_label(backbone)
        if not arch:
            arch = "unknown"
            unmapped.add("architecture", cols["network"], network, arch, mid)
        out["architecture"] = arch
        family = match_family(backbone, network, get("name"), get("model"), source="upstream")
        if family is None:
            family = "other"
            unmapped.add(
                "family",
                cols["backbone"] or cols["network"],
                backbone if normalise_label(backbone) else network,
                family,
                mid,
            )
        out["family"] = family

        # training method
        raw = get("training")
        training = "unknown"
        if cols["training"] is not None and normalise_label(raw) is not None:
            mapped = map_label(raw, label_aliases("training"), vocab["training"])
            if mapped is None:
                unmapped.add("training", cols["training"], raw, training, mid)
            else:
                training = mapped
        out["training"] = training
        out["source"] = "upstream"
        out["weights"] = f"upstream:{RELEASE}:{row['model_id']}"
        # the original exported every model through ONNX in eval mode (BN folded) and stored
        # float64 copies of float32 weights; its data is CC BY-SA 4.0
        out["weight_precision"] = "float64"
        out["bn_folded"] = "yes"
        out["license"] = "CC-BY-SA-4.0"
        out["package"] = "none"
        out["upstream"] = str(row["model_id"])
        out["n_train_samples"] = np.nan
        rows.append(out)
    report.unmapped = unmapped.report()
    return pd.DataFrame(rows, index=pd.Index(ids, name="model"))


def _channels(n: int, cin: Any, cout: Any) -> tuple[int, int, int, str | None]:
    """(in, out, groups, reason for a fallback or None) for a layer of ``n`` 3x3 filters."""

    def as_int(x: Any) -> int | None:
        try:
            v = float(x)
        except (TypeError, ValueError):
            return None
        return int(v) if np.isfinite(v) and v >= 1 and v == int(v) else None

    i, o = as_int(cin), as_int(cout)
    if i is not None and o is not None:
        if o * i == n:
            return i, o, 1, None
        g, rem = divmod(o * i, n)
        if rem == 0 and g >= 1 and i % g == 0 and o % g == 0:
            return i, o, g, None
        reason = f"out*in = {o}*{i} is not a multiple of the {n} filters that divides in and out"
    elif i is None and o is None:
        reason = "no channels recorded"
    else:
        reason = "only one of in/out channels recorded"
    if o is not None and n % o == 0:
        return n // o, o, 1, reason
    return n, 1, 1, reason


def _layers(
    path: Path,
    meta: pd.DataFrame,
    start: np.ndarray,
    count: np.ndarray,
    ids: Mapping[Any, str],
    model_rank: Mapping[Any, int],
    cols: Mapping[str, str | None],
    report: ImportReport,
) -> pd.DataFrame:
    depth = pd.to_numeric(meta["conv_depth"], errors="coerce")
    bad_depth = (depth.isna() | (depth < 0) | (depth != depth.round())).to_numpy()
    if bad_depth.any():
        r = int(np.flatnonzero(bad_depth)[0])
        value = meta["conv_depth"].iloc[r]
        raise _fail(path, f"conv_depth must be integers >= 0; row {r} has {value!r}")
    norm = pd.to_numeric(meta["conv_depth_norm"], errors="coerce").to_numpy(np.float64)
    single = meta.groupby("model_id", sort=False)["conv_depth"].transform("nunique").to_numpy() == 1
    fill = np.isnan(norm) & single
    if fill.any():
        norm = np.where(fill, 0.0, norm)
        report.notes.append(
            f"conv_depth_norm NaN -> 0 for {int(fill.sum())} layers of models with a single "
            "conv depth"
        )
    bad = ~((norm >= 0) & (norm <= 1))
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"conv_depth_norm must lie in [0, 1]; row {r} has {norm[r]!r}")

    table = pd.DataFrame(
        {
            "rank": [model_rank[m] for m in meta["model_id"]],
            "conv_depth": depth.astype(np.int64).to_numpy(),
            "layer_id": meta["layer_id"].to_numpy(),
            "start": start,
            "count": count,
            "conv_depth_norm": norm,
            "row": np.arange(len(meta)),
        }
    )
    table = table.sort_values(["rank", "conv_depth", "layer_id", "start"], kind="stable")
    table = table.reset_index(drop=True)

    cin = meta[cols["in_channels"]].to_numpy() if cols["in_channels"] else [None] * len(meta)
    cout = meta[cols["out_channels"]].to_numpy() if cols["out_channels"] else [None] * len(meta)
    model_names = list(ids.values())
    ins, outs, groups = [], [], []
    for r, n, rank, lid in zip(
        table["row"], table["count"], table["rank"], table["layer_id"], strict=True
    ):
        i, o, g, reason = _channels(int(n), cin[r], cout[r])
        ins.append(i)
        outs.append(o)
        groups.append(g)
        if reason is not None:
            report.channel_fallbacks.append(
                {
                    "model": model_names[rank],
                    "layer_id": str(lid),
                    "filters": int(n),
                    "upstream_in_channels": _jsonable(cin[r]),
                    "upstream_out_channels": _jsonable(cout[r]),
                    "in_channels": i,
                    "out_channels": o,
                    "groups": g,
                    "reason": reason,
                }
            )
    first = np.concatenate([[0], np.cumsum(table["count"].to_numpy())[:-1]]).astype(np.int64)
    return pd.DataFrame(
        {
            "layer_model": table["rank"].to_numpy(np.int32),
            "layer_name": [str(x) for x in table["layer_id"]],
            "layer_first_filter": first,
            "layer_filter_count": table["count"].to_numpy(np.int64),
            "conv_depth": table["conv_depth"].to_numpy(np.int32),
            "in_channels": np.array(ins, np.int32),
            "out_channels": np.array(outs, np.int32),
            "groups": np.array(groups, np.int32),
            "stride_y": np.ones(len(table), np.int32),
            "stride_x": np.ones(len(table), np.int32),
            "dilation_y": np.ones(len(table), np.int32),
            "dilation_x": np.ones(len(table), np.int32),
            "conv_depth_norm": table["conv_depth_norm"].to_numpy(np.float64),
            "depth_method": DEPTH_METHOD,
            "_start": table["start"].to_numpy(np.int64),  # upstream filter ids, for streaming
        }
    )


def _jsonable(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and np.isnan(x):
        return None
    return x if isinstance(x, int | float | str) else str(x)


def _kernel_counts(
    firsts: pd.DataFrame, ids: list[str], n3: np.ndarray, report: ImportReport
) -> pd.DataFrame:
    shape_cols = {}
    for c in firsts.columns:
        m = KERNEL_COLUMN_RE.match(str(c).strip())
        if m:
            shape_cols[f"{m.group(1)}x{m.group(2)}"] = c
    counts = pd.DataFrame(index=pd.Index(ids, name="model"))
    for shape, col in sorted(shape_cols.items()):
        values = pd.to_numeric(firsts[col], errors="coerce").fillna(0).clip(lower=0)
        counts[shape] = values.round().astype(np.int64).to_numpy()
    if "3x3" in counts:
        for mid, up, got in zip(ids, counts["3x3"], n3, strict=True):
            if int(up) != int(got):
                report.kernel_count_mismatches.append(
                    {"model": mid, "upstream_3x3": int(up), "imported_3x3": int(got)}
                )
    else:
        report.notes.append(
            "no '(X, Y) filters' columns: kernel_count records 3x3 only, so total_filters = "
            "n_filters_3x3 and share_3x3 = 1 describe the recorded shapes only"
        )
    counts["3x3"] = n3.astype(np.int64)
    return counts.reindex(sorted(counts.columns), axis=1)


def _blocks(
    path: Path,
    node: h5py.Dataset,
    starts: np.ndarray,
    counts: np.ndarray,
    labels: Sequence[tuple[str, str]],
    chunk: int,
    progress: bool,
) -> Iterator[np.ndarray]:
    """Each layer's range, in order, as float32 (k, 3, 3) blocks of at most ``chunk`` rows.

    ``labels`` are the (model id, layer name) of each range. A layer with a NaN, an Inf or a
    value beyond float32's range (Inf once cast) stops the stream with
    :class:`UpstreamWeightsError`, after the rest of that layer is read to count them all.
    """
    from tqdm.auto import tqdm

    bar = tqdm(
        total=int(counts.sum()),
        unit="filter",
        unit_scale=True,
        disable=not progress,
        desc="import-upstream",
    )

    def read(pos: int, stop: int) -> np.ndarray:
        with np.errstate(over="ignore"):  # beyond float32 -> inf, refused below
            return np.asarray(node[pos:stop], dtype=np.float32).reshape(-1, 3, 3)

    try:
        for s, n, (model, layer) in zip(starts.tolist(), counts.tolist(), labels, strict=True):
            pos, end = s, s + n
            while pos < end:
                stop = min(pos + chunk, end)
                block = read(pos, stop)
                if not np.isfinite(block).all():
                    bad = int((~np.isfinite(block)).sum())
                    for more in range(stop, end, chunk):  # count the whole layer, block by block
                        bad += int((~np.isfinite(read(more, min(more + chunk, end)))).sum())
                    raise UpstreamWeightsError(
                        f"{path}: model {model!r}, layer {layer!r}: {bad} of {n * 9} weight "
                        "values are NaN or Inf (or beyond float32's range); nothing was written"
                    )
                yield block
                bar.update(stop - pos)
                pos = stop
    finally:
        bar.close()


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
        The upstream ``dataset.h5`` (``filters`` + ``meta``; see the module docstring).
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
    filterdb._atomic.DiskFullError
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
        node = _filters_node(h5_path, f)
        n_upstream = int(node.shape[0])
        if len(meta) == 0:
            raise _fail(h5_path, "'meta' has no rows")
        start, count = _parse_ranges(h5_path, meta, n_upstream)
        cols = {role: _column_of(meta, role) for role in COLUMN_ROLES}

        firsts = meta.drop_duplicates("model_id", keep="first").reset_index(drop=True)
        ids = _model_ids(firsts, cols)
        model_rank = {m: i for i, m in enumerate(firsts["model_id"])}
        id_of = dict(zip(firsts["model_id"], ids, strict=True))
        report.model_ids = {str(k): v for k, v in id_of.items()}
        models = _model_meta(firsts, ids, cols, report)
        layers = _layers(h5_path, meta, start, count, id_of, model_rank, cols, report)

        n3 = (
            layers.groupby("layer_model")["layer_filter_count"]
            .sum()
            .reindex(range(len(ids)), fill_value=0)
            .to_numpy(np.int64)
        )
        kernel_counts = _kernel_counts(firsts, ids, n3, report)
        total = kernel_counts.drop(columns=["1x1"], errors="ignore").sum(axis=1).to_numpy(np.int64)
        layer_counts = np.bincount(layers["layer_model"].to_numpy(), minlength=len(ids))
        models["n_parameters"] = 0
        models["accuracy"] = np.nan
        models["n_filters_3x3"] = n3
        models["total_filters"] = total
        models["share_3x3"] = np.where(total > 0, n3 / np.maximum(total, 1), np.nan)
        models["model_first_layer"] = np.concatenate([[0], np.cumsum(layer_counts)[:-1]]).astype(
            np.int64
        )
        models["model_layer_count"] = layer_counts.astype(np.int64)
        report.notes += [
            "n_parameters unknown upstream: written as 0",
            "accuracy unknown upstream: written as NaN",
            "stride and dilation unknown upstream: written as 1",
            f"depth_method '{DEPTH_METHOD}': conv_depth and conv_depth_norm as upstream computed "
            "them from the ONNX graph",
            "weights cast from upstream float64 to float32 (the one lossy step)",
        ]
        if cols["training"] is None:
            report.notes.append("no training column upstream: training = unknown")

        report.n_models, report.n_layers = len(ids), len(layers)
        report.n_filters = int(count.sum())
        report.n_filters_upstream = n_upstream
        report.n_filters_unreferenced = n_upstream - report.n_filters

        starts = layers.pop("_start").to_numpy(np.int64)
        labels = [
            (ids[m], name)
            for m, name in zip(layers["layer_model"], layers["layer_name"], strict=True)
        ]
        blocks = _blocks(
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
