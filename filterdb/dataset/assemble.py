"""Assembly: model shards, in a given order, -> one dataset file (filters streamed)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd

from filterdb.dataset.tables import StoreError, read_fold, read_tables
from filterdb.dataset.write import LAYER_COLUMNS, StoreParams, write_dataset
from filterdb.version import __version__

__all__ = ["assemble"]


def assemble(
    shards: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    params: StoreParams | None = None,
    progress: bool = False,
) -> Path:
    """Concatenate model shards, in the given order, into one dataset file.

    Parameters
    ----------
    shards : sequence of path-like
        Shard files written by :func:`filterdb.dataset.write.write_model` (or any file in the
        layout).
    out : path-like
        The dataset to write, atomically.
    params : StoreParams, optional
        On-disk layout of the result.
    progress : bool
        Show a progress bar over filters.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        Duplicate model ids across shards, naming both files.
    """
    params = params or StoreParams()
    if not shards:
        raise StoreError(f"no shards to assemble into {out}")
    model_tables, layer_tables, kc_tables = [], [], []
    scale_tables: list[np.ndarray] = []
    seen: dict[str, str] = {}
    layer_offset = filter_offset = channel_offset = 0
    for shard in shards:
        with netCDF4.Dataset(shard) as nc:
            nc.set_auto_mask(False)
            m, la, kc = read_tables(nc)
            _, _, shard_scale = read_fold(nc)
        for mid in m.index:
            if mid in seen:
                raise StoreError(f"duplicate model id {mid!r} in {shard} and {seen[mid]}")
            seen[mid] = str(shard)
        m["model_first_layer"] = m["model_first_layer"] + layer_offset
        la["layer_model"] = la["layer_model"] + sum(len(t) for t in model_tables)
        la["layer_first_filter"] = la["layer_first_filter"] + filter_offset
        la["layer_first_channel"] = la["layer_first_channel"] + channel_offset
        layer_offset += len(la)
        filter_offset += int(la["layer_filter_count"].sum())
        channel_offset += int(shard_scale.size)
        scale_tables.append(shard_scale)
        model_tables.append(m)
        layer_tables.append(la.drop(columns="model"))
        kc_tables.append(kc)
    models = pd.concat(model_tables) if model_tables else pd.DataFrame()
    layers = (
        pd.concat(layer_tables, ignore_index=True)
        if layer_tables
        else pd.DataFrame(columns=LAYER_COLUMNS)
    )
    kernel_counts = pd.concat(kc_tables).fillna(0).astype(np.int64)
    kernel_counts = kernel_counts.reindex(sorted(kernel_counts.columns), axis=1)

    def blocks() -> Iterator[np.ndarray]:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=filter_offset,
            unit="filter",
            unit_scale=True,
            disable=not progress,
            desc="assemble",
        )
        step = params.chunk_filters
        for shard in shards:
            with netCDF4.Dataset(shard) as nc:
                nc.set_auto_mask(False)
                w = nc.variables["weight"]
                n = w.shape[0]
                for s in range(0, n, step):
                    block = np.asarray(w[s : s + step], dtype=np.float32)
                    bar.update(block.shape[0])
                    yield block
        bar.close()

    names = " ".join(Path(s).stem for s in shards)
    write_dataset(
        Path(out),
        models,
        layers,
        kernel_counts,
        blocks(),
        params,
        history=f"filterdb {__version__} assemble {len(shards)} shards: {names}",
        fold_scale=np.concatenate(scale_tables).astype(np.float32, copy=False),
    )
    return Path(out)
