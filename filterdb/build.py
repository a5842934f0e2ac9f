"""One zoo entry through the chain sources -> extract -> store, as one shard file.

Used by ``filterdb extract`` (one model per DVC stage) and by the dask fan-out
(:func:`filterdb.distributed.extract_many`), so both write the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from filterdb.extract import ModelFilters, extract_filters
from filterdb.sources import load_model
from filterdb.store import StoreParams, write_model

__all__ = ["build_shard"]


def build_shard(
    model_id: str,
    entry: Mapping[str, Any],
    out: str | os.PathLike[str],
    store: StoreParams | Mapping[str, Any] | None = None,
) -> ModelFilters:
    """Load a zoo entry, extract its 3x3 filters and write its shard atomically.

    Parameters
    ----------
    model_id : str
        The entry's id.
    entry : mapping
        The zoo entry (``source``, source keys, ``meta``).
    out : path-like
        The shard file.
    store : StoreParams or mapping, optional
        On-disk layout (``params.yaml: store``).

    Returns
    -------
    ModelFilters
        What was extracted (for a summary line).
    """
    params = store if isinstance(store, StoreParams) else StoreParams.from_dict(store)
    loaded = load_model(model_id, entry)
    # what the source knows (e.g. a trained model's held-out accuracy), overridden by the entry
    meta = {**loaded.extra_meta, **dict(entry.get("meta") or {})}
    mf = extract_filters(model_id, loaded)
    write_model(out, mf, meta, entry["source"], loaded.weights, params)
    return mf
