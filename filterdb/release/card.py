"""The dataset card of a release (``releases/vX.Y.Z/README.md``), generated from its manifest.

Nothing here is written by hand per version: every count comes from the manifest's ``counts``
(which :func:`filterdb.dataset.info.dataset_counts` takes from ``filters.nc``), so the card
cannot disagree with the data it describes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from filterdb.dataset.contract import DATA_LICENSE, LICENSE_NOTE

__all__ = ["DATA_LICENSE", "LICENSE_NOTE", "render_card"]


def _counts(by: Mapping[str, Any], key: str) -> list[str]:
    rows = sorted((by.get(key) or {}).items(), key=lambda kv: (-kv[1]["filters"], kv[0]))
    return [f"| {v} | {d['models']} | {d['filters']:,} |" for v, d in rows]


def _table(title: str, by: Mapping[str, Any], key: str) -> list[str]:
    return [
        f"### {title}",
        "",
        f"| {key} | models | filters |",
        "|---|---|---|",
        *_counts(by, key),
        "",
    ]


def render_card(manifest: Mapping[str, Any]) -> str:
    """Markdown dataset card of one release.

    Parameters
    ----------
    manifest : mapping
        The release's ``manifest.json`` (``version``, ``counts`` with ``by``).

    Returns
    -------
    str

    Examples
    --------
    >>> by = {"license": {"MIT": {"models": 2, "filters": 90}},
    ...       "training": {"normal": {"models": 2, "filters": 90}}}
    >>> card = render_card({"version": "9.9.9", "counts": {"models": 2, "layers": 3,
    ...                     "filters": 90, "by": by}})
    >>> "| MIT | 2 | 90 |" in card and card.startswith("# filterdb v9.9.9")
    True
    """
    c = manifest["counts"]
    by = c.get("by") or {}
    v = manifest["version"]
    n_random = (by.get("training") or {}).get("random-init", {}).get("models", 0)
    quantized = {
        k: d for k, d in (by.get("weight_precision") or {}).items() if k not in ("float32",)
    }
    folded = (by.get("bn_folded") or {}).get("yes", {}).get("models", 0)
    lines = [
        f"# filterdb v{v}: dataset card",
        "",
        "## What it is",
        "",
        f"{c['models']} convolutional networks, {c['layers']} layers with 3x3 convolutions and "
        f"{c['filters']:,} 3x3 filters, each stored as float32 with its layer's place in the "
        "network (graph depth) and its model's meta-parameters (task, visual category, training "
        "data, architecture, family, training method, weight precision, BatchNorm folding, "
        "licence). One CF-1.10 netCDF file (`filters.nc`), with degeneracy and distribution-shift "
        "statistics (`degeneracy.nc`, `shifts.nc`), tables (`models.csv`, `layers.csv`), a "
        "report, plots and a replication table against the CNN Filter DB study.",
        "",
        "## How it was made",
        "",
        "`dvc repro` in the filterdb repository at the tag `v" + v + "`: trained weights were "
        "read from files shipped in pinned registry packages (ONNX, TensorFlow.js, Keras, "
        "PyTorch; never executed), from models trained by the pipeline on data shipped in "
        "packages, and from random-init baselines; every 3x3 kernel was taken bit for bit as "
        "float32 (float16 kernels widened exactly, quantized ones dequantized as their format "
        "defines); conv depth is the longest path from the input in the model's graph, counted "
        "in 2-D convs, or the order of the kernels where a file stores no graph (the layer table's "
        "`depth_method` says which). The manifest records the params, the git revision and every "
        "file's sha256.",
        "",
        "## Intended uses",
        "",
        "- Studying the distributions of trained 3x3 filters across tasks, data, architectures "
        "and depth; degeneracy (sparse or random-like layers) of public models.",
        "- Weight-space research: priors and initialisations from trained filters, filter "
        "generative models, robustness and transfer studies.",
        "",
        "## Out of scope",
        "",
        "- Reconstructing or running the models: only 3x3 kernels are stored (no biases, 1x1 or "
        "larger kernels, or wiring).",
        "- Claims about a population of models at large: the zoo is small and not a random "
        "sample (see limitations).",
        "",
        "## Known limitations",
        "",
        f"- Small offline zoo: {c['models']} models, of which {n_random} are random-init "
        "baselines (kept out of the statistics' meta-parameter axes by default).",
    ]
    if quantized:
        parts = ", ".join(f"{k} ({d['models']} models)" for k, d in sorted(quantized.items()))
        lines.append(
            f"- Stored precision other than float32: {parts}. Their values are what the package "
            "stores (widened or dequantized), not the trained floats."
        )
    lines += [
        f"- BatchNorm: {folded} models arrive with BatchNorm folded into the kernels by their "
        "export; for torch models the fold scale is stored beside the weights "
        "(`ds.filterdb.filters(folded=True)`), so both views exist.",
        "- Labels of packaged models come from the packages' own descriptions; a training set "
        "the package does not name is `unknown`.",
        "",
        "## Known label issues",
        "",
        "- Where a package names its upstream model only by a converter version, `upstream` is "
        "`none`.",
        "- Near-duplicates (not exact copies) can remain, e.g. two variants of one face "
        "recognition network; exact duplicates are refused by `filterdb validate`.",
        "",
        "## Licences",
        "",
        LICENSE_NOTE,
        "",
        *_table("Per licence", by, "license"),
        "## Counts",
        "",
        *_table("Per task", by, "task"),
        *_table("Per visual category", by, "visual_category"),
        *_table("Per weight precision", by, "weight_precision"),
        *_table("Per source", by, "source"),
        "## How to cite",
        "",
        "See `CITATION.cff` in the repository: cite filterdb (this release, `v" + v + "`) and "
        'Gavrikov & Keuper, "CNN Filter DB: An Empirical Investigation of Trained '
        'Convolutional Filters", CVPR 2022 (arXiv:2203.15331).',
    ]
    return "\n".join(lines) + "\n"
