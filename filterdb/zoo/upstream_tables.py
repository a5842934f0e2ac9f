"""Build filterdb's model, layer and kernel-count tables from the original CNN Filter DB file.

:func:`build_tables` turns the ``meta`` table and filter ranges that
:mod:`filterdb.zoo.upstream_read` reads and checks into the tables
:func:`filterdb.zoo.upstream.import_upstream` writes, and fills the :class:`ImportReport`
(unmapped labels as :class:`Unmapped`, corrections as :class:`Correction`, channel fallbacks,
kernel-count mismatches, notes). What the tables hold, and how what upstream does not record
is filled, is described in :mod:`filterdb.zoo.upstream`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from filterdb.zoo.labels import (
    label_aliases,
    map_label,
    match_family,
    none_labels,
    normalise_label,
)
from filterdb.zoo.upstream_read import COLUMN_ROLES, column_of, format_error

__all__ = [
    "DEPTH_METHOD",
    "RELEASE",
    "Correction",
    "ImportReport",
    "Unmapped",
    "build_tables",
]

RELEASE = "cnn-filter-db-v1.0.0"
DEPTH_METHOD = "upstream"
MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
KERNEL_COLUMN_RE = re.compile(r"^\(\s*([1-9]\d*)\s*,\s*([1-9]\d*)\s*\)\s*filters$")
NITRC_RE = re.compile(r"compnet_.*_NITRC_", re.IGNORECASE)


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
        raise format_error(path, f"conv_depth must be integers >= 0; row {r} has {value!r}")
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
        raise format_error(path, f"conv_depth_norm must lie in [0, 1]; row {r} has {norm[r]!r}")

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


def build_tables(
    path: Path, meta: pd.DataFrame, start: np.ndarray, count: np.ndarray, report: ImportReport
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """The model, layer and kernel-count tables of an upstream file, filling ``report``.

    Parameters
    ----------
    path : Path
        The upstream file (named in errors).
    meta : pandas.DataFrame
        Its ``meta`` table (:func:`filterdb.zoo.upstream_read.read_meta`), one row per layer.
    start, count : numpy.ndarray
        Each row's first upstream filter id and filter count
        (:func:`filterdb.zoo.upstream_read.parse_ranges`).
    report : ImportReport
        Receives the model ids, unmapped labels, corrections, fallbacks, mismatches and notes.

    Returns
    -------
    models, layers, kernel_counts : pandas.DataFrame
        The tables for :func:`filterdb.dataset.write.write_dataset`; ``layers`` also holds
        ``_start``, each layer's first upstream filter id (for streaming; drop it before writing).
    ids : list of str
        The filterdb model ids, in model order.

    Raises
    ------
    UpstreamFormatError
        Bad ``conv_depth`` or ``conv_depth_norm`` values.
    """
    cols = {role: column_of(meta, role) for role in COLUMN_ROLES}

    firsts = meta.drop_duplicates("model_id", keep="first").reset_index(drop=True)
    ids = _model_ids(firsts, cols)
    model_rank = {m: i for i, m in enumerate(firsts["model_id"])}
    id_of = dict(zip(firsts["model_id"], ids, strict=True))
    report.model_ids = {str(k): v for k, v in id_of.items()}
    models = _model_meta(firsts, ids, cols, report)
    layers = _layers(path, meta, start, count, id_of, model_rank, cols, report)

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
    return models, layers, kernel_counts, ids
