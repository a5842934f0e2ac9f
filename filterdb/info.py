"""A human summary of a dataset: models, layers, filters, and counts per meta-parameter value."""

from __future__ import annotations

import os

import xarray as xr

from filterdb.store import CATEGORICAL, read_tables


def summary(path: str | os.PathLike[str]) -> str:
    """Describe a filterdb dataset in plain text.

    Parameters
    ----------
    path : path-like
        A dataset file.

    Returns
    -------
    str
        Totals, one line per model (with accuracy where known) and, for each meta-parameter,
        the number of models and filters per value.
    """
    with xr.open_dataset(path) as ds:
        models, layers, _ = read_tables(ds)
        n_filters = ds.sizes["filter"]
        history = ds.attrs.get("history", "")
    lines = [
        f"{path}",
        f"  {len(models)} models, {len(layers)} layers with 3x3 convs, {n_filters:,} filters",
        f"  {history}",
        "",
        f"  {'model':32s} {'source':9s} {'category':12s} {'task':15s} {'layers':>6s} "
        f"{'filters':>11s} {'accuracy':>8s}",
    ]
    for mid, row in models.iterrows():
        acc = "-" if row["accuracy"] != row["accuracy"] else f"{row['accuracy']:.4f}"
        lines.append(
            f"  {mid!s:32s} {row['source']:9s} {row['visual_category']:12s} {row['task']:15s} "
            f"{row['model_layer_count']:6d} {row['n_filters_3x3']:11,d} {acc:>8s}"
        )
    for col in CATEGORICAL:
        lines.append("")
        lines.append(f"  by {col}:")
        grouped = models.groupby(col)["n_filters_3x3"].agg(["count", "sum"])
        for value, r in grouped.iterrows():
            lines.append(f"    {value!s:30s} {r['count']:4d} models {r['sum']:13,d} filters")
    return "\n".join(lines)
