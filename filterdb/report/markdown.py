"""A short Markdown summary of the statistics files (``stats/degeneracy.nc``, ``stats/shifts.nc``).

Nothing here re-reads the filters: every number comes from the statistics datasets, except the
reference rows of the replication table that need no data (``TH(n)`` from its formula, the mean
``H`` of i.i.d. normal filters by a small seeded simulation).

The replication table (:func:`replication_table`, written to ``stats/replication.csv``) sets the
numbers the CNN Filter DB study published (``filterdb/reference.yaml``, the only copy) next to
this release's. Its ``filters`` column says which filter values a row describes: ``raw`` (the
conv weights as stored) today. Hook for BatchNorm folding: statistics of folded filters are
added with :func:`write_report`'s ``folded`` argument (or by concatenating
``replication_table(..., filters="folded")``); the statistics files may also name their view in
a global attribute ``filters``, which the table uses when present.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from filterdb.atomic import settle_for_reading, write_atomic_text
from filterdb.stats.degeneracy import layer_stats, randomness_threshold
from filterdb.stats.params import DegeneracyParams
from filterdb.stats.write import degeneracy_summary

__all__ = [
    "REPLICATION_COLUMNS",
    "iid_normal_entropy",
    "load_reference",
    "render_replication",
    "render_report",
    "replication_table",
    "shift_extremes",
    "write_report",
]

#: Columns of ``stats/replication.csv``. ``study`` is a point value, or NaN when the study gave a
#: range ``[study_low, study_high]``; ``difference`` is ``ours - study`` for a point value, and
#: for a range the distance outside it (``ours - high`` above, ``ours - low`` below, 0 inside).
#: ``sign_rule`` is ``any`` for values that do not depend on the PCA signs.
REPLICATION_COLUMNS = [
    "quantity",
    "key",
    "filters",
    "study",
    "study_low",
    "study_high",
    "ours",
    "difference",
    "population",
    "sign_rule",
    "note",
]

#: Filters per simulated i.i.d. layer size draw budget: ``max(MIN_DRAWS, SIM_FILTERS // n)``.
SIM_FILTERS = 20_000
MIN_DRAWS = 50


def _fmt(x: Any, digits: int = 3) -> str:
    if isinstance(x, float | np.floating):
        return "n/a" if not math.isfinite(float(x)) else f"{float(x):.{digits}f}"
    return str(x)


def _num(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return out


def shift_extremes(sh: xr.Dataset, axis: str, k: int = 3) -> tuple[list, list]:
    """The ``k`` largest and smallest off-diagonal shifts of an axis.

    Returns
    -------
    largest, smallest : list of (str, str, float)
        Group pairs ``(a, b)`` with ``a < b`` in the stored order and their ``D``; NaN pairs
        (empty groups) are left out.
    """
    d = sh[f"shift_{axis}"].values
    labels = np.asarray(sh[axis].values).astype(str)
    iu = np.triu_indices(len(labels), k=1)
    vals = d[iu]
    ok = np.isfinite(vals)
    pairs = [
        (labels[i], labels[j], float(v))
        for i, j, v in zip(iu[0][ok], iu[1][ok], vals[ok], strict=True)
    ]
    pairs.sort(key=lambda p: p[2])
    return pairs[::-1][:k], pairs[:k]


# --------------------------------------------------------------------------------------------
# replication table


def load_reference(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The study's published numbers (``filterdb/reference.yaml`` unless ``path`` is given)."""
    if path is None:
        text = resources.files("filterdb").joinpath("reference.yaml").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    return yaml.safe_load(text)


def _degeneracy_params(deg: xr.Dataset | None) -> DegeneracyParams:
    """The ``TH`` coefficients the degeneracy file was computed with (defaults otherwise)."""
    if deg is None:
        return DegeneracyParams()
    keys = ("th_a", "th_b", "th_c", "th_d")
    return DegeneracyParams.from_dict(
        {k: float(deg.attrs[f"param_{k}"]) for k in keys if f"param_{k}" in deg.attrs}
    )


def iid_normal_entropy(
    n: int, params: DegeneracyParams | None = None, seed: int = 0, draws: int | None = None
) -> tuple[float, int]:
    """Mean variance entropy ``H`` of layers of ``n`` i.i.d. N(0, 1) float32 filters.

    Each layer size has its own stream ``numpy.random.default_rng([seed, n])``, so adding a
    size does not change the others. ``draws`` defaults to ``max(50, 20000 // n)``.

    Returns
    -------
    mean, draws : float, int
    """
    draws = draws or max(MIN_DRAWS, SIM_FILTERS // int(n))
    rng = np.random.default_rng([seed, int(n)])
    h = [
        layer_stats(rng.standard_normal((int(n), 3, 3), dtype=np.float32), 1, int(n), params)[
            "entropy"
        ]
        for _ in range(draws)
    ]
    return float(np.mean(h)), draws


def _difference(ours: float, study: float, low: float, high: float) -> float:
    if not math.isfinite(ours):
        return math.nan
    if math.isfinite(study):
        return ours - study
    if ours > high:
        return ours - high
    if ours < low:
        return ours - low
    return 0.0


def _ref_value(value: Any) -> tuple[float, float, float]:
    """``(study, low, high)`` of a reference entry (a number or ``{low, high}``)."""
    if isinstance(value, Mapping):
        return math.nan, float(value["low"]), float(value["high"])
    return float(value), math.nan, math.nan


def _row(
    quantity: str,
    key: str,
    filters: str,
    ref: Any,
    ours: float,
    population: str = "none",
    sign_rule: str = "any",
    note: str = "",
) -> dict[str, Any]:
    study, low, high = _ref_value(ref)
    ours = float(ours)
    return {
        "quantity": quantity,
        "key": key,
        "filters": filters,
        "study": study,
        "study_low": low,
        "study_high": high,
        "ours": ours,
        "difference": _difference(ours, study, low, high),
        "population": population,
        "sign_rule": sign_rule,
        "note": note,
    }


def _data_rows(sh: xr.Dataset, ref: Mapping[str, Any], filters: str) -> list[dict[str, Any]]:
    """Rows that depend on the filters (one set per view: raw, folded)."""
    rows = []
    population = str(sh.attrs.get("population", "all"))
    eta = np.asarray(sh["explained_variance_ratio"].values, dtype=np.float64)
    for i, r in enumerate(ref["explained_variance_ratio"]):
        ours = eta[i] if i < eta.size else math.nan
        rows.append(_row("explained_variance_ratio", f"v{i + 1}", filters, r, ours, population))
    mean = np.asarray(sh["pca_mean"].values, dtype=np.float64)
    for t in range(9):
        rows.append(
            _row(
                "pca_mean",
                f"tap{t} (ky={t // 3}, kx={t % 3})",
                filters,
                ref["pca_mean_per_tap"],
                mean[t],
                population,
            )
        )
    low, high = _ref_value(ref["shift_task_offdiagonal"])[1:]
    lo_d = hi_d = math.nan
    pop_d, rule_d = "none", "any"
    note = "no task axis in the shifts file"
    if "shift_task" in sh:
        d = np.asarray(sh["shift_task"].values, dtype=np.float64)
        off = d[~np.eye(d.shape[0], dtype=bool)]
        off = off[np.isfinite(off)]
        if off.size:
            lo_d, hi_d = float(off.min()), float(off.max())
        pop_d = str(sh["shift_task"].attrs.get("population", population))
        rule_d = str(sh["shift_task"].attrs.get("sign_rule", sh.attrs.get("sign_rule", "v-based")))
        note = f"{d.shape[0]} task groups" if off.size else "fewer than two non-empty task groups"
    rows.append(_row("shift_task", "min off-diagonal", filters, low, lo_d, pop_d, rule_d, note))
    rows.append(_row("shift_task", "max off-diagonal", filters, high, hi_d, pop_d, rule_d, note))
    return rows


def replication_table(
    shifts: xr.Dataset | None,
    degeneracy: xr.Dataset | None = None,
    *,
    filters: str | None = None,
    reference: Mapping[str, Any] | None = None,
    seed: int = 0,
    draws: int | None = None,
    include_reference_rows: bool = True,
) -> pd.DataFrame:
    """The study's published numbers next to this release's, with the difference.

    Parameters
    ----------
    shifts, degeneracy : xarray.Dataset or None
        ``stats/shifts.nc`` and ``stats/degeneracy.nc`` (the latter gives the ``TH``
        coefficients; METHODS.md defaults without it). Without ``shifts`` only the rows that
        need no data are made.
    filters : str, optional
        Value of the ``filters`` column of the data rows: the view of the filter values the
        statistics were computed on (default: the shifts file's ``filters`` attribute, else
        ``raw``; BatchNorm-folded statistics give ``folded``).
    reference : mapping, optional
        The study's numbers (default :func:`load_reference`).
    seed, draws : int
        The i.i.d. simulation (see :func:`iid_normal_entropy`).
    include_reference_rows : bool
        Also the rows that need no data (``TH(n)``, i.i.d. ``H``); their ``filters`` and
        ``population`` are ``none``. Pass False when adding a second view of the same data.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`REPLICATION_COLUMNS`: explained-variance ratios ``v1..v9``, the mean
        vector per tap, ``TH(n)`` and the i.i.d. mean ``H`` at the study's ``n``, and the min and
        max off-diagonal ``D`` across tasks.
    """
    ref = load_reference() if reference is None else reference
    rows: list[dict[str, Any]] = []
    if shifts is not None:
        view = filters or str(shifts.attrs.get("filters", "raw"))
        rows += _data_rows(shifts, ref, view)
    if include_reference_rows:
        p = _degeneracy_params(degeneracy)
        for n, r in ref["randomness_threshold"].items():
            th = float(randomness_threshold(int(n), p))
            rows.append(
                _row(
                    "randomness_threshold",
                    f"n={int(n)}",
                    "none",
                    r,
                    th,
                    note="TH(n) formula with this release's coefficients",
                )
            )
        for n, r in ref["iid_normal_entropy"].items():
            h, k = iid_normal_entropy(int(n), p, seed, draws)
            rows.append(
                _row(
                    "iid_normal_entropy",
                    f"n={int(n)}",
                    "none",
                    r,
                    h,
                    note=f"mean of {k} simulated layers, seed {seed}",
                )
            )
    return pd.DataFrame(rows, columns=REPLICATION_COLUMNS)


def _g(x: Any, digits: int = 4) -> str:
    x = float(x)
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}g}"


def _study_cell(row: Mapping[str, Any]) -> str:
    if math.isfinite(float(row["study"])):
        return _g(row["study"])
    return f"{_g(row['study_low'])} to {_g(row['study_high'])}"


def _max_abs(table: pd.DataFrame, quantity: str) -> tuple[float, str]:
    sel = table[(table["quantity"] == quantity) & np.isfinite(table["difference"])]
    if sel.empty:
        return math.nan, ""
    i = sel["difference"].abs().idxmax()
    return float(abs(sel.loc[i, "difference"])), str(sel.loc[i, "key"])


def _groups_text(sh: xr.Dataset, axis: str) -> tuple[int, str]:
    if f"n_models_{axis}" not in sh:
        return 0, "not computed"
    nm = np.asarray(sh[f"n_models_{axis}"].values)
    labels = np.asarray(sh[axis].values).astype(str)
    keep = nm > 0
    parts = [f"{lab} ({int(n)})" for lab, n in zip(labels[keep], nm[keep], strict=True)]
    return int(keep.sum()), ", ".join(parts) or "none"


def _sign_disagreement(sh: xr.Dataset) -> int:
    """Components whose sign differs between the v-based and the u-based rule."""
    rule = str(sh.attrs.get("sign_rule", "v-based"))
    if rule == "u-based":
        v = np.asarray(sh["pca_components"].values)
        return int((v[np.arange(v.shape[0]), np.abs(v).argmax(axis=1)] < 0).sum())
    if "coef_peak" not in sh:
        return -1
    return int((np.asarray(sh["coef_peak"].values) < 0).sum())


def render_replication(
    table: pd.DataFrame,
    sh: xr.Dataset | None,
    reference: Mapping[str, Any] | None = None,
) -> list[str]:
    """Markdown lines of the replication section: the table and what it can and cannot show."""
    ref = load_reference() if reference is None else reference
    study = ref.get("study", {})
    lines = ["## Replication of the study's published numbers", ""]
    lines += [
        "Study values from `filterdb/reference.yaml`; full table in `stats/replication.csv`. "
        "`difference` is ours minus the study's value, or for a range the distance outside it "
        "(0 inside).",
        "",
        "| quantity | key | filters | study | ours | difference | population | sign rule |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['quantity']} | {r['key']} | {r['filters']} | {_study_cell(r)} | "
            f"{_g(r['ours'])} | {_g(r['difference'], 3)} | {r['population']} | "
            f"{r['sign_rule']} |"
        )
    lines += ["", "### What this release can and cannot show", ""]
    th, th_key = _max_abs(table, "randomness_threshold")
    hh, hh_key = _max_abs(table, "iid_normal_entropy")
    lines.append(
        f"Rows that need no data check the implementation: TH(n) differs from the published "
        f"values by at most {_g(th, 2)} ({th_key}; the study rounded to 3 decimals), the "
        f"simulated mean H of i.i.d. normal layers by at most {_g(hh, 2)} ({hh_key})."
    )
    if sh is None:
        lines.append("")
        return lines
    n_models = int(sh.attrs.get("n_models_pca", 0))
    n_filters = int(sh.attrs.get("n_filters_pca", sh.attrs.get("n_filters_used", 0)))
    s_models, s_filters = int(study.get("n_models", 0)), int(study.get("n_filters", 0))
    share = n_filters / s_filters if s_filters else math.nan
    population = str(sh.attrs.get("population", "all"))
    rule = str(sh.attrs.get("sign_rule", "v-based"))
    eta_d, eta_key = _max_abs(table, "explained_variance_ratio")
    means = table[table["quantity"] == "pca_mean"]
    inside = int((means["difference"] == 0).sum())
    k_task, tasks = _groups_text(sh, "task")
    k_fam, _ = _groups_text(sh, "family")
    k_data, _ = _groups_text(sh, "training_dataset")
    para = [
        f"The data rows describe {n_filters:,} filters of {n_models} models (population "
        f"`{population}`), {_g(share, 2)} of the study's {s_filters:,} filters of "
        f"{s_models} models. The explained-variance ratios differ by at most {_g(eta_d, 2)} "
        f"({eta_key}); {inside} of 9 taps of the mean filter lie in the study's range.",
        f"The shift rows compare {k_task} task group(s) with models per group: {tasks}; the "
        f"population has {k_fam} families and {k_data} training datasets, so a task's D also "
        f"carries the differences of the datasets and architectures of its few models and "
        f"cannot be read as an effect of the task alone.",
    ]
    if k_task < 2:
        para.append("With fewer than two task groups there is no D across tasks to compare.")
    n_sign = _sign_disagreement(sh)
    study_rule = str(study.get("sign_rule", "u-based"))
    if rule != study_rule:
        para.append(
            f"D here uses the {rule} sign rule, the study's the {study_rule} one; the two rules "
            f"give opposite signs to {n_sign} of {sh.sizes.get('component', 0)} components, "
            f"and D depends on the signs through the asymmetric global range (set "
            f"`shifts.sign_rule: {study_rule}` to compare like with like)."
        )
    else:
        para.append(
            f"D uses the study's {rule} sign rule ({n_sign} of "
            f"{sh.sizes.get('component', 0)} components would have the opposite sign under the "
            f"other rule)."
        )
    lines += ["", " ".join(para), ""]
    return lines


# --------------------------------------------------------------------------------------------
# the report


def _population_line(sh: xr.Dataset, axis: str) -> str:
    attrs = sh[f"shift_{axis}"].attrs
    population = str(attrs.get("population", sh.attrs.get("population", "all")))
    basis = str(attrs.get("basis_population", sh.attrs.get("population", "all")))
    rule = str(attrs.get("sign_rule", sh.attrs.get("sign_rule", "v-based")))
    text = f"Population `{population}` (PCA basis and range: `{basis}`), sign rule `{rule}`."
    if population != basis and "n_coef_outside" in sh:
        out = np.asarray(sh["n_coef_outside"].values)
        text += (
            f" Filters outside the basis population are projected in it; {int(out.sum())} of "
            f"their coefficients fell outside the range and were clipped into the end bins."
        )
    return text


def render_report(
    deg: xr.Dataset | None,
    sh: xr.Dataset | None,
    top: int = 10,
    replication: pd.DataFrame | None = None,
    trained: Mapping[str, Any] | None = None,
) -> str:
    """Markdown text of the report (see :func:`write_report`)."""
    lines = ["# filterdb statistics report", ""]
    if deg is not None:
        s = degeneracy_summary(deg)
        lines += ["## Degeneracy", ""]
        lines += [
            f"{s['n_models']} models, {s['n_layers']} layers, {s['n_filters']} filters. "
            f"Degenerated layers: {s['n_layers_degenerated']} "
            f"(share {_fmt(_num(s['share_layers_degenerated']))}; random-like "
            f"{s['n_layers_random_like']}, sparse-collapsed {s['n_layers_sparse_collapsed']}, "
            f"undefined {s['n_layers_undefined']}). Filter-weighted mean H "
            f"{_fmt(_num(s['entropy_mean_fw']))}, mean S "
            f"{_fmt(_num(s['sparsity_mean_fw']))}.",
            "",
        ]
        models = np.asarray(deg["model"].values).astype(str)
        share = deg["share_layers_degenerated"].values
        order = [
            m
            for m in np.lexsort(
                (-deg["n_layers_degenerated"].values, -np.nan_to_num(share, nan=-1.0))
            )
            if deg["n_layers"].values[m] > 0
        ][:top]
        lines += ["### Most degenerated models", ""]
        lines += _table(
            ["model", "layers", "degenerated", "share", "mean H (fw)", "mean S (fw)"],
            [
                [
                    models[m],
                    int(deg["n_layers"].values[m]),
                    int(deg["n_layers_degenerated"].values[m]),
                    float(share[m]),
                    float(deg["entropy_mean_fw"].values[m]),
                    float(deg["sparsity_mean_fw"].values[m]),
                ]
                for m in order
            ],
        )
        lm = deg["layer_model"].values
        names = np.asarray(deg["layer_name"].values).astype(str)
        hn = deg["entropy_norm"].values
        sp = deg["sparsity"].values
        flag = deg["degenerated"].values
        rand = [i for i in np.argsort(-np.nan_to_num(hn, nan=-np.inf)) if flag[i] == 1][:top]
        coll = [
            i
            for i in np.argsort(-np.nan_to_num(sp, nan=-np.inf))
            if deg["sparse_collapsed"].values[i] == 1
        ][:top]
        for title, idx in (
            ("Most random-like layers (highest H/TH)", rand),
            ("Most sparse-collapsed layers (highest S)", coll),
        ):
            lines += ["", f"### {title}", ""]
            if not idx:
                lines.append("None.")
                continue
            lines += _table(
                ["model", "layer", "n", "H", "H/TH", "S", "O"],
                [
                    [
                        models[lm[i]],
                        names[i],
                        int(deg["n_filters"].values[i]),
                        float(deg["entropy"].values[i]),
                        float(hn[i]),
                        float(sp[i]),
                        float(deg["orthogonality"].values[i]),
                    ]
                    for i in idx
                ],
            )
        lines.append("")
    if deg is not None:
        lines += render_licences(deg)
        lines += render_sweep(deg, trained)
    if sh is not None:
        eta = sh["explained_variance_ratio"].values
        population = str(sh.attrs.get("population", "all"))
        n_pca = sh.attrs.get("n_filters_pca", sh.attrs.get("n_filters_used", "?"))
        text = (
            f"Global PCA over {n_pca} peak-scaled filters of the population `{population}` "
            f"({sh.attrs.get('n_filters_nonfinite', 0)} non-finite left out), sign rule "
            f"`{sh.attrs.get('sign_rule', 'v-based')}`."
        )
        if population != "all":
            text += (
                f" {sh.attrs.get('n_filters_projected', 0)} filters of "
                f"{sh.attrs.get('n_models_projected', 0)} random-init models are projected "
                f"in the same basis for the `trained` axis only; "
                f"{sh.attrs.get('n_filters_excluded', 0)} filters of models without a "
                f"training value are left out."
            )
        lines += ["## Distribution shifts", "", text, ""]
        lines += _table([f"v{i + 1}" for i in range(len(eta))], [[float(e) for e in eta]])
        for axis in str(sh.attrs.get("axes", "")).split():
            if f"shift_{axis}" not in sh:
                continue
            big, small = shift_extremes(sh, axis)
            sizes = sh[f"n_filters_{axis}"].values
            n_empty = int((sizes == 0).sum())
            lines += [
                "",
                f"### {axis}",
                "",
                f"{len(sizes)} groups ({n_empty} empty), "
                f"{int(sh[f'n_models_{axis}'].values.max(initial=0))} models in the "
                f"largest. {_population_line(sh, axis)}",
            ]
            if not big:
                lines += ["", "No pair of non-empty groups."]
                continue
            rows = [["largest", a, b, d] for a, b, d in big]
            rows += [["smallest", a, b, d] for a, b, d in small]
            lines += ["", *_table(["", "group a", "group b", "D"], rows)]
        lines.append("")
    if replication is not None:
        lines += render_replication(replication, sh)
    return "\n".join(lines)


def write_report(
    degeneracy_nc: str | os.PathLike[str] | None,
    shifts_nc: str | os.PathLike[str] | None,
    out_md: str | os.PathLike[str],
    top: int = 10,
    replication_csv: str | os.PathLike[str] | None = None,
    folded: tuple[str | os.PathLike[str] | None, str | os.PathLike[str]] | None = None,
    trained: Mapping[str, Any] | None = None,
) -> Path:
    """Write the Markdown report and the replication table atomically.

    Parameters
    ----------
    degeneracy_nc, shifts_nc : path or None
        ``stats/degeneracy.nc`` and ``stats/shifts.nc`` (a section is skipped when None).
    out_md : path
        Output Markdown file.
    top : int
        Rows in the "most degenerated" tables.
    replication_csv : path, optional
        The replication table (:func:`replication_table`); default ``replication.csv`` beside
        ``out_md`` (``stats/replication.csv``).
    folded : (path or None, path), optional
        ``(degeneracy_nc, shifts_nc)`` of the BatchNorm-folded filters: their data rows are
        added to the replication table with ``filters = folded``.

    Returns
    -------
    pathlib.Path
        ``out_md``. The report lists the totals and the most degenerated models and layers,
        the PCA explained-variance ratios, per axis the largest and smallest shifts with the
        population and sign rule of each matrix, and the replication table.
    """
    settle_for_reading(degeneracy_nc, shifts_nc, *(folded or ()))  # no half-renamed set
    deg = _load(degeneracy_nc)
    sh = _load(shifts_nc)
    table = replication_table(sh, deg)
    if folded is not None:  # HOOK(bn-folding): a second view of the same models
        table = pd.concat(
            [
                table,
                replication_table(
                    _load(folded[1]),
                    _load(folded[0]),
                    filters="folded",
                    include_reference_rows=False,
                ),
            ],
            ignore_index=True,
        )
    csv = Path(out_md).with_name("replication.csv") if replication_csv is None else replication_csv
    write_atomic_text(table.to_csv(index=False), csv)
    return write_atomic_text(render_report(deg, sh, top, table, trained), out_md)


def model_table(deg: xr.Dataset) -> pd.DataFrame:
    """The per-model variables of a degeneracy file as a table (flags decoded).

    ``stats/degeneracy.nc`` carries the model meta-parameters and numbers it was computed for,
    so the report needs no other input.
    """
    from filterdb.dataset.flags import decode_flags

    ids = pd.Index(np.asarray(deg["model"].values).astype(str), name="model")
    table = pd.DataFrame(index=ids)
    for name, var in deg.variables.items():
        if var.dims != ("model",) or name == "model":
            continue
        values = np.asarray(var.values)
        table[name] = decode_flags(values, var.attrs) if "flag_meanings" in var.attrs else values
    return table


def render_licences(deg: xr.Dataset) -> list[str]:
    """Markdown lines: models and filters per licence of the weights."""
    table = model_table(deg)
    if "license" not in table.columns:
        return []
    n = table["n_filters_3x3"] if "n_filters_3x3" in table.columns else 0
    grouped = table.assign(n=n).groupby("license", sort=True)
    rows = [[lic, len(g), int(g["n"].sum())] for lic, g in grouped]
    rows.sort(key=lambda r: (-r[2], r[0]))
    return ["## Licences of the weights", "", *_table(["license", "models", "filters"], rows), ""]


def render_sweep(deg: xr.Dataset, trained: Mapping[str, Any] | None = None) -> list[str]:
    """Markdown lines of the training-sweep section and the models that are random-like
    in every layer."""
    from filterdb.stats.sweep import all_random_like, sweep_markdown, sweep_table, sweep_trend

    lines = ["## Models trained here: width and training-set size", ""]
    table = sweep_table(deg, model_table(deg), trained)
    if table.empty:
        lines += ["No sweep in this dataset (no architecture trained at several sizes).", ""]
    else:
        trend = sweep_trend(table)
        lines += [
            f"{len(table)} models of one architecture and training set at different widths and "
            "training-set sizes, each with the same optimizer-step budget. Spearman rank "
            "correlation with parameters per training image (positive: more parameters per "
            "image, more random-like): "
            + ", ".join(f"{k} {_fmt(_num(v), 2)}" for k, v in trend.items())
            + ".",
            "",
            *sweep_markdown(table),
            "",
            "Figure: `plots/sweep.png`.",
            "",
        ]
    rnd = all_random_like(deg)
    every = sorted(str(m) for m, v in rnd.items() if v is not pd.NA and bool(v))
    lines += [
        "### Models random-like in every layer",
        "",
        f"{len(every)} of {len(rnd)} models have every 3x3 layer at H >= TH(n) - margin "
        "(indistinguishable from an initialiser's draw by the study's criterion)"
        + (": " + ", ".join(every) if every else "")
        + ".",
        "",
    ]
    return lines


def _load(path: str | os.PathLike[str] | None) -> xr.Dataset | None:
    if path is None:
        return None
    with xr.open_dataset(path) as ds:
        return ds.load()
