"""Degeneracy against parameters per training sample (the trained-here sweep); random-like models.

The default zoo trains one architecture (ResNet-9) on subsets of one dataset (``mnist-5k``) at
several widths and training-set sizes with the same optimisation budget (see the ``trained:``
section of ``params.yaml``). This module turns the per-layer degeneracy statistics
(``stats/degeneracy.nc``, written by ``filterdb stats degeneracy``) and the dataset's model table
into

- :func:`model_degeneracy`: per model, the share of degenerated layers, the mean H/TH(n) over
  layers, H/TH of the first and last 3x3 layer and ``all_random_like``, for **any** model;
- :func:`all_random_like`: whether every 3x3 layer of a model is random-like (the mark the report
  and tables put on models whose filters look like an initialiser's draw);
- :func:`sweep_table`: the rows of the sweep models (models sharing architecture and dataset
  family, with different parameter counts or training-set sizes) with
  ``params_per_sample = n_parameters / n_train_samples``;
- :func:`sweep_markdown` and :func:`plot_sweep`: the table as Markdown lines and a PNG.

Everything reads the statistics only; nothing re-reads filters or checkpoints.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from filterdb.dataset.flags import flag_lookup

__all__ = [
    "SWEEP_COLUMNS",
    "all_random_like",
    "dataset_family",
    "model_degeneracy",
    "plot_sweep",
    "sweep_markdown",
    "sweep_table",
    "sweep_trend",
]

SWEEP_COLUMNS = (
    "model",
    "architecture",
    "training_dataset",
    "width",
    "n_parameters",
    "n_train_samples",
    "params_per_sample",
    "accuracy",
    "share_degenerated",
    "mean_h_th",
    "mean_h_th_fw",
    "h_th_first",
    "h_th_last",
    "all_random_like",
)
"""Columns of :func:`sweep_table`, in order."""

_OUTCOMES = ("share_degenerated", "mean_h_th", "mean_h_th_fw", "h_th_first", "h_th_last")

_SIZE_SUFFIX = re.compile(r"-\d+(\.\d+)?[kKmM]?$")


def dataset_family(name: str) -> str:
    """A training dataset's name without a trailing size (``mnist-5k`` -> ``mnist``).

    Subsets of one dataset are one family, however they are labelled.

    Examples
    --------
    >>> [dataset_family(n) for n in ("mnist-5k", "mnist-500", "cifar-10", "sklearn-digits")]
    ['mnist', 'mnist', 'cifar', 'sklearn-digits']
    """
    return _SIZE_SUFFIX.sub("", str(name))


def _decode(var: xr.DataArray) -> np.ndarray:
    """Strings of a model variable (categorical codes decoded with ``flag_meanings``)."""
    meanings = var.attrs.get("flag_meanings")
    raw = np.asarray(var.values)
    if meanings is None:
        return raw.astype(object)
    lookup = flag_lookup(var.attrs)
    return np.array([lookup.get(int(c), "unknown") for c in raw], dtype=object)


def _model_ids(stats: xr.Dataset) -> np.ndarray:
    if "model" in stats.variables:
        return np.asarray(stats["model"].values).astype(str).astype(object)
    lm = np.asarray(stats["layer_model"].values, dtype=np.int64)
    return np.arange(int(lm.max()) + 1 if lm.size else 0).astype(str).astype(object)


def model_degeneracy(stats: xr.Dataset) -> pd.DataFrame:
    """Per-model summary of the per-layer degeneracy statistics, for every model.

    Parameters
    ----------
    stats : xarray.Dataset
        A degeneracy statistics dataset (``stats/degeneracy.nc``): per layer ``layer_model``,
        ``entropy_norm`` (H/TH(n)), the int8 flags ``random_like`` and ``degenerated`` (1 yes,
        0 no, -1 undefined), in the dataset's layer order (by depth within a model).

    Returns
    -------
    pandas.DataFrame
        Indexed by model id, columns ``n_layers``, ``share_degenerated`` (degenerated layers
        over layers whose flag is defined), ``mean_h_th`` (unweighted mean of H/TH(n) over the
        layers where it is defined: every layer counts once, whatever its size; a first layer of
        a handful of filters weighs as much as the widest), ``mean_h_th_fw`` (the same weighted by
        the layers' numbers of filters, ``n_filters``; NaN without that variable), ``h_th_first``
        and ``h_th_last`` (H/TH(n) of the model's first and last 3x3 layer) and
        ``all_random_like`` (see :func:`all_random_like`). NaN / ``<NA>`` where undefined.

    Examples
    --------
    >>> st = xr.Dataset(
    ...     {"layer_model": ("layer", [0, 0, 1]), "entropy_norm": ("layer", [1.0, 0.9, 1.01]),
    ...      "random_like": ("layer", np.int8([1, 0, 1])),
    ...      "degenerated": ("layer", np.int8([1, 0, 1]))},
    ...     coords={"model": ["a", "b"]})
    >>> cols = ["share_degenerated", "mean_h_th", "all_random_like"]
    >>> model_degeneracy(st)[cols]  # doctest: +NORMALIZE_WHITESPACE
           share_degenerated  mean_h_th  all_random_like
    model
    a                    0.5       0.95            False
    b                    1.0       1.01             True
    """
    ids = _model_ids(stats)
    lm = np.asarray(stats["layer_model"].values, dtype=np.int64)
    hth = np.asarray(stats["entropy_norm"].values, dtype=np.float64)
    deg = np.asarray(stats["degenerated"].values, dtype=np.int64)
    rnd = np.asarray(stats["random_like"].values, dtype=np.int64)
    nf = (
        np.asarray(stats["n_filters"].values, dtype=np.float64)
        if "n_filters" in stats.variables
        else np.full(lm.shape, math.nan)
    )
    rows = []
    for m in range(len(ids)):
        idx = np.flatnonzero(lm == m)
        d, h, r = deg[idx], hth[idx], rnd[idx]
        defined = d >= 0
        finite = h[np.isfinite(h)]
        ok = np.isfinite(h) & np.isfinite(nf[idx]) & (nf[idx] > 0)
        rows.append(
            {
                "n_layers": idx.size,
                "share_degenerated": float((d == 1).sum() / defined.sum())
                if defined.any()
                else math.nan,
                "mean_h_th": float(finite.mean()) if finite.size else math.nan,
                "mean_h_th_fw": float(np.average(h[ok], weights=nf[idx][ok]))
                if ok.any()
                else math.nan,
                "h_th_first": float(h[0]) if idx.size else math.nan,
                "h_th_last": float(h[-1]) if idx.size else math.nan,
                "all_random_like": _kleene_all(r),
            }
        )
    out = pd.DataFrame(rows, index=pd.Index(ids, name="model"))
    out["n_layers"] = out["n_layers"].astype(np.int64)
    out["all_random_like"] = out["all_random_like"].astype("boolean")
    return out


def _kleene_all(flags: np.ndarray) -> bool | Any:
    """True if every flag is 1, False if one is 0, NA otherwise (no layers, or undefined ones)."""
    if flags.size == 0:
        return pd.NA
    if (flags == 0).any():
        return False
    return True if (flags == 1).all() else pd.NA


def all_random_like(stats: xr.Dataset) -> pd.Series:
    """Whether every 3x3 layer of each model is random-like (``H >= TH(n) - margin``).

    Such a model's filters are, by the study's criterion, indistinguishable from an
    initialiser's draw in every layer; the report and tables mark them.

    Parameters
    ----------
    stats : xarray.Dataset
        A degeneracy statistics dataset (``layer_model`` and the int8 flag ``random_like``).

    Returns
    -------
    pandas.Series of nullable bool
        Indexed by model id: True when every layer is random-like, False when at least one is
        not, ``<NA>`` when no layer says no but some are undefined (e.g. a single filter), or the
        model has no 3x3 layer.

    Examples
    --------
    >>> st = xr.Dataset(
    ...     {"layer_model": ("layer", [0, 0, 1, 2]),
    ...      "random_like": ("layer", np.int8([1, 1, 0, -1]))},
    ...     coords={"model": ["rand", "trained", "one-filter"]})
    >>> all_random_like(st).tolist()
    [True, False, <NA>]
    """
    ids = _model_ids(stats)
    lm = np.asarray(stats["layer_model"].values, dtype=np.int64)
    rnd = np.asarray(stats["random_like"].values, dtype=np.int64)
    vals = [_kleene_all(rnd[lm == m]) for m in range(len(ids))]
    return pd.Series(
        vals, index=pd.Index(ids, name="model"), name="all_random_like", dtype="boolean"
    )


def _models_frame(models: pd.DataFrame) -> pd.DataFrame:
    """The model table indexed by model id (accepts ``read_tables`` output or ``models.csv``)."""
    if "model" in models.columns:
        models = models.set_index("model")
    out = models.copy()
    out.index = out.index.astype(str)
    out.index.name = "model"
    return out


def _entry_value(trained: Mapping[str, Mapping[str, Any]] | None, model: str, key: str) -> float:
    entry = (trained or {}).get(model)
    if not entry:
        return math.nan
    if key == "width":
        value = entry.get("width")
        if value is None and entry.get("arch"):
            from filterdb.train.nets import default_width

            try:
                value = default_width(str(entry["arch"]))
            except KeyError:
                value = None
    else:
        value = entry.get(key)
    return math.nan if value is None else float(value)


def sweep_table(
    stats: xr.Dataset,
    models: pd.DataFrame,
    trained: Mapping[str, Mapping[str, Any]] | None = None,
    min_models: int = 2,
) -> pd.DataFrame:
    """The sweep models: one architecture on one dataset family at several sizes.

    A sweep group is every trained model (``training`` not ``random-init``) with a known
    training-set size, grouped by ``architecture`` and :func:`dataset_family` of
    ``training_dataset``; a group is kept when it holds at least ``min_models`` different
    ``(n_parameters, n_train_samples)`` pairs.

    Parameters
    ----------
    stats : xarray.Dataset
        Degeneracy statistics (``stats/degeneracy.nc``), see :func:`model_degeneracy`.
    models : pandas.DataFrame
        The dataset's model table (``ds.filterdb.models()``, ``read_tables(ds)[0]`` or a release's
        ``models.csv``): indexed by (or with a column) ``model``, with ``architecture``,
        ``training_dataset``, ``n_parameters``, ``n_train_samples`` and ``accuracy``; ``training``
        and ``width`` are used when present.
    trained : mapping, optional
        ``params.yaml``'s ``trained:`` section. Supplies ``width`` (the entry's, else the
        architecture's default) and, where the table has no ``n_train_samples`` column or a
        missing value, the entry's ``n_train``.
    min_models : int
        Smallest number of distinct sizes that makes a group a sweep.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SWEEP_COLUMNS` (``share_degenerated``, ``mean_h_th``, ``h_th_first``,
        ``h_th_last``, ``all_random_like`` as in :func:`model_degeneracy`;
        ``params_per_sample = n_parameters / n_train_samples``), sorted by architecture, dataset
        family and ``params_per_sample``; a default integer index. Empty (same columns) when there
        is no sweep.

    Examples
    --------
    >>> st = xr.Dataset(
    ...     {"layer_model": ("layer", [0, 1, 2]), "entropy_norm": ("layer", [0.8, 0.99, 1.0]),
    ...      "random_like": ("layer", np.int8([0, 1, 1])),
    ...      "degenerated": ("layer", np.int8([0, 1, 1]))},
    ...     coords={"model": ["small", "big", "random"]})
    >>> models = pd.DataFrame(
    ...     {"architecture": ["resnet9", "resnet9", "resnet18"],
    ...      "training_dataset": ["mnist-5k", "mnist-5k", "none"],
    ...      "training": ["normal", "normal", "random-init"],
    ...      "n_parameters": [1000, 8000, 10**7], "n_train_samples": [4000, 500, 0],
    ...      "accuracy": [0.9, 0.95, float("nan")]},
    ...     index=pd.Index(["small", "big", "random"], name="model"))
    >>> sweep_table(st, models)[["model", "params_per_sample", "all_random_like"]]
       model  params_per_sample  all_random_like
    0  small               0.25            False
    1    big              16.00             True
    """
    table = _models_frame(models)
    deg = model_degeneracy(stats)
    ids = list(deg.index)
    table = table.reindex(ids)
    n_train = (
        pd.to_numeric(table["n_train_samples"], errors="coerce")
        if "n_train_samples" in table.columns
        else pd.Series(math.nan, index=table.index)
    ).astype(np.float64)
    n_train = n_train.where(n_train > 0)
    fallback = pd.Series([_entry_value(trained, m, "n_train") for m in ids], index=table.index)
    n_train = n_train.fillna(fallback)
    if "width" in table.columns:
        width = pd.to_numeric(table["width"], errors="coerce").astype(np.float64)
    else:
        width = pd.Series(math.nan, index=table.index)
    width = width.fillna(
        pd.Series([_entry_value(trained, m, "width") for m in ids], index=table.index)
    )
    n_params = pd.to_numeric(table.get("n_parameters"), errors="coerce").astype(np.float64)
    frame = pd.DataFrame(
        {
            "model": ids,
            "architecture": table["architecture"].astype(str).to_numpy(),
            "training_dataset": table["training_dataset"].astype(str).to_numpy(),
            "width": width.to_numpy(),
            "n_parameters": n_params.to_numpy(),
            "n_train_samples": n_train.to_numpy(),
            "accuracy": pd.to_numeric(table.get("accuracy"), errors="coerce").to_numpy(),
            "_random_init": (
                table["training"].astype(str).to_numpy() == "random-init"
                if "training" in table.columns
                else np.zeros(len(ids), bool)
            ),
        }
    )
    frame["params_per_sample"] = frame["n_parameters"] / frame["n_train_samples"]
    for col in (*_OUTCOMES, "all_random_like"):
        frame[col] = deg[col].to_numpy()
    frame["_family"] = [dataset_family(d) for d in frame["training_dataset"]]
    ok = (
        ~frame["_random_init"]
        & (frame["n_parameters"] > 0)
        & np.isfinite(frame["params_per_sample"])
    )
    frame = frame[ok]
    keep = []
    for _, group in frame.groupby(["architecture", "_family"], sort=False):
        sizes = set(zip(group["n_parameters"], group["n_train_samples"], strict=True))
        if len(sizes) >= max(int(min_models), 1):
            keep.append(group)
    if not keep:
        return _typed(pd.DataFrame(columns=list(SWEEP_COLUMNS)))
    out = pd.concat(keep).sort_values(
        ["architecture", "_family", "params_per_sample", "model"], kind="stable"
    )
    return _typed(out[list(SWEEP_COLUMNS)].reset_index(drop=True))


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    for col in ("model", "architecture", "training_dataset"):
        table[col] = table[col].astype(object)
    for col in SWEEP_COLUMNS[3:-1]:
        table[col] = pd.to_numeric(table[col], errors="coerce").astype(np.float64)
    table["all_random_like"] = table["all_random_like"].astype("boolean")
    return table


def sweep_trend(table: pd.DataFrame) -> dict[str, float]:
    """Spearman rank correlation of each outcome with ``params_per_sample`` over the sweep.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`sweep_table`.

    Returns
    -------
    dict
        ``share_degenerated``, ``mean_h_th``, ``mean_h_th_fw``, ``h_th_first``, ``h_th_last``:
        rank correlation in [-1, 1] (positive: more parameters per sample, more random-like);
        NaN with fewer than three models or a constant column; columns the table lacks are
        left out.

    Examples
    --------
    >>> t = pd.DataFrame({"params_per_sample": [1.0, 10.0, 100.0],
    ...                   "share_degenerated": [0.1, 0.5, 1.0], "mean_h_th": [1.0, 0.9, 0.8],
    ...                   "h_th_first": [1.0, 1.0, 1.0], "h_th_last": [0.9, 1.0, 0.95]})
    >>> {k: round(v, 2) for k, v in sweep_trend(t).items()}
    {'share_degenerated': 1.0, 'mean_h_th': -1.0, 'h_th_first': nan, 'h_th_last': 0.5}
    """
    out = {}
    x = pd.to_numeric(table["params_per_sample"], errors="coerce").astype(np.float64)
    for col in _OUTCOMES:
        if col not in table.columns:
            continue
        y = pd.to_numeric(table[col], errors="coerce").astype(np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 3 or y[ok].nunique() < 2 or x[ok].nunique() < 2:
            out[col] = math.nan
        else:
            out[col] = float(x[ok].rank().corr(y[ok].rank()))
    return out


def _fmt(value: Any, spec: str) -> str:
    if value is None or value is pd.NA:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return format(value, spec)


def sweep_markdown(table: pd.DataFrame) -> list[str]:
    """The sweep table as Markdown lines (a header row, a rule, one row per model).

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`sweep_table`.

    Returns
    -------
    list of str
        Lines without newlines; models whose every layer is random-like are marked
        ``**yes**`` in the last column. A one-line note when the table is empty.

    Examples
    --------
    >>> t = pd.DataFrame([{"model": "m", "architecture": "resnet9",
    ...     "training_dataset": "mnist-5k", "width": 4.0, "n_parameters": 26278.0,
    ...     "n_train_samples": 500.0, "params_per_sample": 52.556, "accuracy": 0.942,
    ...     "share_degenerated": 0.125, "mean_h_th": 0.85, "mean_h_th_fw": 0.9,
    ...     "h_th_first": 1.44, "h_th_last": 0.958, "all_random_like": False}])
    >>> lines = sweep_markdown(t)
    >>> len(lines), lines[0].count("|")
    (3, 14)
    >>> lines[2]
    '| m | resnet9 | 4 | 26,278 | 500 | 52.6 | 94.2% | 12% | 0.850 | 0.900 | 1.440 | 0.958 | no |'
    """
    if table is None or len(table) == 0:
        return ["No sweep models (models of one architecture and dataset at several sizes)."]
    lines = [
        "| model | architecture | width | parameters | training images | parameters / image "
        "| accuracy | degenerated layers | mean H/TH | mean H/TH (filter-weighted) | H/TH first "
        "| H/TH last | all random-like |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in table.itertuples(index=False):
        flag = row.all_random_like
        mark = "-" if flag is pd.NA or flag is None else ("**yes**" if bool(flag) else "no")
        lines.append(
            f"| {row.model} | {row.architecture} | {_fmt(row.width, '.0f')} "
            f"| {_fmt(row.n_parameters, ',.0f')} | {_fmt(row.n_train_samples, ',.0f')} "
            f"| {_fmt(row.params_per_sample, '.1f')} | {_fmt(row.accuracy, '.1%')} "
            f"| {_fmt(row.share_degenerated, '.0%')} | {_fmt(row.mean_h_th, '.3f')} "
            f"| {_fmt(getattr(row, 'mean_h_th_fw', math.nan), '.3f')} "
            f"| {_fmt(row.h_th_first, '.3f')} | {_fmt(row.h_th_last, '.3f')} | {mark} |"
        )
    return lines


def _series(group: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The one-factor lines of a sweep group: width varying at one size, size at one width."""
    out = []
    for key, other, fmt in (
        ("n_train_samples", "width", "n={:,.0f}"),
        ("width", "n_train_samples", "w={:.0f}"),
    ):
        for value, sub in group.groupby(key, sort=True):
            if sub[other].nunique() >= 2:
                varying = "width" if other == "width" else "training-set size"
                out.append((f"{varying} varies, {fmt.format(value)}", sub))
    return out


def plot_sweep(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """PNG of degeneracy against parameters per training image (log x), one panel per outcome.

    Panels: share of degenerated 3x3 layers, mean H/TH(n) over layers, and the filter-weighted
    mean H/TH(n) (when the table has it). In each sweep group (architecture and dataset family)
    a line joins the models that differ in width only (same training-set size) and one joins
    those that differ in training-set size only (same width); every point is labelled
    ``w<width>/n<training images>``.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`sweep_table`.
    path : path-like
        The PNG, written atomically (parent folders created). An empty table gives a figure
        that says so.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile
    >>> t = pd.DataFrame({"model": ["a", "b", "c"], "architecture": "resnet9",
    ...     "training_dataset": "mnist-5k", "width": [2.0, 16.0, 2.0],
    ...     "n_train_samples": [4000.0, 4000.0, 500.0], "params_per_sample": [1.7, 103.0, 13.5],
    ...     "share_degenerated": [0.75, 0.1, 0.5], "mean_h_th": [1.0, 0.8, 0.9]})
    >>> plot_sweep(t, Path(tempfile.mkdtemp()) / "sweep.png").stat().st_size > 0
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from filterdb.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = [
        ("share_degenerated", "share of degenerated 3x3 layers"),
        ("mean_h_th", "mean H/TH(n) over layers"),
        ("mean_h_th_fw", "filter-weighted mean H/TH(n)"),
    ]
    empty = table is None or len(table) == 0
    if not empty:
        panels = [p for p in panels if p[0] in table.columns]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    axes = axes[0]
    if empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no sweep models", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
    else:
        fam = [dataset_family(d) for d in table["training_dataset"]]
        groups = table.assign(_family=fam).groupby(["architecture", "_family"], sort=True)
        styles = ["-", "--", ":", "-."]
        for gi, ((arch, family), group) in enumerate(groups):
            color = f"C{gi % 10}"
            for ax, (col, ylabel) in zip(axes, panels, strict=True):
                x = group["params_per_sample"].to_numpy(np.float64)
                y = pd.to_numeric(group[col], errors="coerce").to_numpy(np.float64)
                ax.plot(x, y, "o", color=color, label=f"{arch} on {family}")
                for si, (label, sub) in enumerate(_series(group)):
                    sub = sub.sort_values("params_per_sample")
                    ax.plot(
                        sub["params_per_sample"],
                        sub[col],
                        styles[si % len(styles)],
                        color=color,
                        alpha=0.7,
                        label=label,
                    )
                for xi, yi, w, n in zip(
                    x, y, group["width"], group["n_train_samples"], strict=True
                ):
                    if np.isfinite(yi):
                        tag = f"w{_fmt(w, '.0f')}/n{_fmt(n, '.0f')}"
                        ax.annotate(
                            tag, (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=6
                        )
                ax.set_ylabel(ylabel)
        for ax, (col, _) in zip(axes, panels, strict=True):
            ax.set_xscale("log")
            ax.set_xlabel("parameters per training image")
            if col == "share_degenerated":
                ax.set_ylim(-0.05, 1.05)
            else:
                ax.axhline(1.0, color="k", lw=0.8, ls="--")
            ax.legend(fontsize=7)
    fig.suptitle("trained-here sweep: degeneracy against parameters per training image")
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
