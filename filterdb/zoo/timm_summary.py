"""The projected size of a timm zoo: models, layers, filters and bytes of a selection.

:func:`summary` sizes every selected architecture on the meta device
(:func:`filterdb.zoo.timm_sizing.size_entries`) and returns a :class:`ZooSummary`, whose text is
what ``filterdb zoo timm --summary`` prints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from filterdb.zoo.timm_entries import generate_entries, list_pretrained_names
from filterdb.zoo.timm_sizing import BYTES_PER_FILTER, size_entries

__all__ = ["ZooSummary", "summary"]


@dataclass
class ZooSummary:
    """Projected size of a timm zoo.

    Attributes
    ----------
    models : pandas.DataFrame
        One row per selected pretrained name: ``model``, ``arch``, ``family``,
        ``training_dataset``, ``pretraining_dataset``, ``training``, ``mapped``, the size
        columns of :func:`~filterdb.zoo.timm_sizing.size_architecture` and ``kept`` (mapped,
        built and has 3x3 convs).
    unmapped : list of str
        ``"arch.tag: reason"`` of the tags the table cannot map.
    failed : list of str
        ``"arch: error"`` of the architectures that did not build on meta.
    seconds : float
        Wall-clock time of the whole summary.
    """

    models: pd.DataFrame
    unmapped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        """Models, layers, filters and bytes of the projected zoo (kept rows)."""
        k = self.models[self.models["kept"]]
        return {
            "models": len(k),
            "architectures": int(k["arch"].nunique()),
            "layers": int(k["n_layers_3x3"].sum()),
            "filters": int(k["n_filters_3x3"].sum()),
            "bytes": int(k["bytes"].sum()),
        }

    def by(self, column: str) -> pd.DataFrame:
        """Totals of the projected zoo grouped by ``column`` (e.g. ``family``), largest first."""
        k = self.models[self.models["kept"]]
        g = k.groupby(column).agg(
            models=("model", "size"),
            layers=("n_layers_3x3", "sum"),
            filters=("n_filters_3x3", "sum"),
            bytes=("bytes", "sum"),
        )
        return g.sort_values("filters", ascending=False)

    def to_text(self) -> str:
        """The human summary ``filterdb zoo timm --summary`` prints."""
        m = self.models
        t = self.totals()
        no3 = m[m["mapped"] & (m["error"].isna()) & (m["n_filters_3x3"] == 0)]
        unm = m[~m["mapped"]]
        lines = [
            f"timm pretrained names selected: {len(m)} ({m['arch'].nunique()} architectures)",
            f"projected zoo: {t['models']:,} models ({t['architectures']:,} architectures), "
            f"{t['layers']:,} 3x3 layers, {t['filters']:,} filters, "
            f"{_gb(t['bytes'])} as float32 ({BYTES_PER_FILTER} bytes/filter)",
            f"dropped, no 3x3 conv: {len(no3):,} models ({no3['arch'].nunique()} architectures)",
            f"not built on meta: {len(self.failed)} architectures"
            + (": " + ", ".join(self.failed) if self.failed else ""),
            f"unmapped tags (no entry written): {len(self.unmapped):,} models "
            f"({unm['n_filters_3x3'].sum():,} filters)",
            f"time: {self.seconds:.1f} s",
        ]
        for column in ("family", "training_dataset", "pretraining_dataset", "training"):
            table = self.by(column).copy()
            table["bytes"] = table["bytes"].map(_gb)
            lines += ["", f"by {column}:", table.to_string()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _gb(n: float) -> str:
    return f"{n / 1e9:,.2f} GB"


def summary(
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    *,
    cache: str | os.PathLike[str] | None = None,
    jobs: int = 1,
    progress: bool = False,
) -> ZooSummary:
    """Projected models, layers, filters and bytes of the timm zoo for a selection.

    Every selected architecture (unmapped tags included, so their share is known) is sized on
    the meta device; see :func:`~filterdb.zoo.timm_sizing.size_entries`.

    Parameters
    ----------
    include, exclude : sequence of str
        fnmatch globs on ``arch.tag`` names.
    cache, jobs, progress
        Passed to :func:`~filterdb.zoo.timm_sizing.size_entries`.

    Returns
    -------
    ZooSummary
        ``str(result)`` is the printed report.
    """
    t0 = time.perf_counter()
    names = list_pretrained_names(include, exclude)
    entries, unmapped = generate_entries(include, exclude)
    sizes = size_entries(names, cache=cache, jobs=jobs, progress=progress)
    rows = []
    for name in names:
        arch, tag = name.split(".", 1)
        entry = entries.get(name)
        meta = entry["meta"] if entry else {}
        s = sizes[name]
        rows.append(
            {
                "model": name,
                "arch": arch,
                "tag": tag,
                "family": meta.get("family", "(unmapped)"),
                "training_dataset": meta.get("training_dataset", "(unmapped)"),
                "pretraining_dataset": meta.get("pretraining_dataset", "(unmapped)"),
                "training": meta.get("training", "(unmapped)"),
                "mapped": entry is not None,
                **{
                    k: s[k]
                    for k in (
                        "n_layers_3x3",
                        "n_filters_3x3",
                        "total_filters",
                        "n_parameters",
                        "bytes",
                        "error",
                    )
                },
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(
            columns=[
                "model",
                "arch",
                "tag",
                "family",
                "training_dataset",
                "pretraining_dataset",
                "training",
                "mapped",
                "n_layers_3x3",
                "n_filters_3x3",
                "total_filters",
                "n_parameters",
                "bytes",
                "error",
            ]
        )
    df["kept"] = df["mapped"] & df["error"].isna() & (df["n_filters_3x3"] > 0)
    failed = sorted({f"{r.arch}: {r.error}" for r in df.itertuples() if r.error})
    return ZooSummary(df, unmapped, failed, time.perf_counter() - t0)
