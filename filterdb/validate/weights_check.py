"""One streaming pass over ``weight``: finite values, consistent indices, no duplicated models.

The schema checks of :mod:`filterdb.validate.layout` read only metadata. This pass reads the
filters once, chunk by chunk in fixed memory, and checks what only the values can show:

- every weight is finite (a NaN or Inf is named by model and layer);
- ``filter_layer`` agrees with ``layer_first_filter``/``layer_filter_count``;
- no two models hold the same 3x3 weights layer for layer (a sha256 per layer; two models whose
  sequences of layer hashes are equal are duplicates, which would double-count one network in
  every statistic).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

import numpy as np

from filterdb.dataset.reading import chunk_size_of, iter_chunks
from filterdb.validate.failures import Failure, SchemaValidationError

__all__ = ["check_weights", "layer_hashes"]


def _tables(ds: Any) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, list[str]]:
    models = [str(x) for x in np.asarray(ds["model"].values)]
    layer_model = np.asarray(ds["layer_model"].values, dtype=np.int64)
    first = np.asarray(ds["layer_first_filter"].values, dtype=np.int64)
    count = np.asarray(ds["layer_filter_count"].values, dtype=np.int64)
    names = [str(x) for x in np.asarray(ds["layer_name"].values)]
    return models, layer_model, first, count, names


def layer_hashes(ds: Any, chunk: int | None = None) -> tuple[list[str], list[Failure]]:
    """sha256 of each layer's float32 weights, and the failures the same pass found.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in filterdb's layout.
    chunk : int, optional
        Filters per read (default: the on-disk chunking).

    Returns
    -------
    hashes : list of str
        One hex digest per layer, in layer order.
    failures : list of Failure
        Non-finite weights and ``filter_layer`` values that disagree with the layer table.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({
    ...     "weight": (("filter", "ky", "kx"), np.ones((3, 3, 3), "f4")),
    ...     "filter_layer": ("filter", np.array([0, 0, 1], "i4")),
    ...     "layer_model": ("layer", np.array([0, 1], "i4")),
    ...     "layer_first_filter": ("layer", np.array([0, 2])),
    ...     "layer_filter_count": ("layer", np.array([2, 1])),
    ...     "layer_name": ("layer", np.array(["a", "b"], object)),
    ...     "model": ("model", np.array(["m", "n"], object))})
    >>> hashes, failures = layer_hashes(ds)
    >>> len(hashes), failures
    (2, [])
    """
    models, layer_model, first, count, names = _tables(ds)
    n_layers = len(first)
    n_filters = int(ds.sizes.get("filter", 0))
    hashers = [hashlib.sha256() for _ in range(n_layers)]
    failures: list[Failure] = []
    source = str(ds.encoding.get("source", "<dataset>"))

    def label(layer: int) -> str:
        m = models[layer_model[layer]] if 0 <= layer_model[layer] < len(models) else "?"
        return f"model {m!r}, layer {layer} ({names[layer]})"

    if n_layers and (first[0] != 0 or int(count.sum()) != n_filters):
        failures.append(
            Failure(
                source,
                None,
                None,
                "layer_filter_count",
                str(int(count.sum())),
                f"layer filter counts sum to the {n_filters} filters",
            )
        )
        return ["" for _ in range(n_layers)], failures
    if not n_filters:
        return [h.hexdigest() for h in hashers], failures
    ends = first + count
    fl_var = ds["filter_layer"].variable
    bad_nonfinite: dict[int, int] = defaultdict(int)
    bad_index = 0
    for start, arr in iter_chunks(ds, chunk_size_of(ds, chunk)):
        stop = start + arr.shape[0]
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        expect = np.searchsorted(first, np.arange(start, stop), side="right") - 1
        got = np.asarray(fl_var[start:stop].values, dtype=np.int64)
        bad_index += int(np.count_nonzero(got != expect))
        finite = np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1)
        if not finite.all():
            for layer, k in zip(*np.unique(expect[~finite], return_counts=True), strict=True):
                bad_nonfinite[int(layer)] += int(k)
        # feed each layer's part of the chunk to its hash
        lo_layer = int(expect[0])
        hi_layer = int(expect[-1])
        for layer in range(lo_layer, hi_layer + 1):
            a = max(int(first[layer]), start) - start
            b = min(int(ends[layer]), stop) - start
            if b > a:
                hashers[layer].update(arr[a:b].tobytes())
    for layer, k in sorted(bad_nonfinite.items()):
        failures.append(
            Failure(
                source,
                layer,
                label(layer),
                "weight",
                f"{k} filter(s) with NaN/Inf",
                "finite weights",
            )
        )
    if bad_index:
        failures.append(
            Failure(
                source,
                None,
                None,
                "filter_layer",
                f"{bad_index} filter(s)",
                "filter_layer equal to the layer whose range holds the filter",
            )
        )
    return [h.hexdigest() for h in hashers], failures


def check_weights(ds: Any, chunk: int | None = None) -> dict[str, str]:
    """Run the value checks; raise one report listing every failure.

    Returns
    -------
    dict of str to str
        Model id -> a sha256 of its sequence of layer hashes (its weight fingerprint).

    Raises
    ------
    SchemaValidationError
        Non-finite weights, inconsistent ``filter_layer``, or models whose 3x3 weights are
        identical layer for layer (each pair named).
    """
    hashes, failures = layer_hashes(ds, chunk)
    models, layer_model, *_ = _tables(ds)
    per_model: dict[int, list[str]] = defaultdict(list)
    for layer, h in enumerate(hashes):
        per_model[int(layer_model[layer])].append(h)
    fingerprints: dict[str, str] = {}
    seen: dict[str, str] = {}
    source = str(ds.encoding.get("source", "<dataset>"))
    for i, model in enumerate(models):
        layers = per_model.get(i, [])
        fp = hashlib.sha256("\n".join(layers).encode()).hexdigest()
        fingerprints[model] = fp
        if not layers:
            continue  # models without 3x3 layers have nothing to duplicate
        if fp in seen:
            failures.append(
                Failure(
                    source,
                    i,
                    f"model {model!r}",
                    "weight",
                    f"same 3x3 weights as model {seen[fp]!r}, layer for layer",
                    "no duplicated models",
                )
            )
        else:
            seen[fp] = model
    if failures:
        raise SchemaValidationError(source, failures)
    return fingerprints
