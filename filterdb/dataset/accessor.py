"""The ``ds.filterdb`` accessor: everyday questions about a filter dataset in one line.

Registered on import of :mod:`filterdb` (cf-xarray style: an accessor, not a subclass)::

    ds = xr.open_dataset("data/filters.nc")
    ds.filterdb.filters(visual_category="handwriting", decile=0)   # (n, 3, 3) float32
    ds.filterdb.filters(model="resnet18-random", folded=True)      # BatchNorm folded
    ds.filterdb.models()                                           # pandas DataFrame
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from filterdb.dataset.contract import CATEGORICAL
from filterdb.dataset.reading import FoldScales
from filterdb.dataset.tables import read_tables

__all__ = ["FilterDBAccessor", "open_dataset"]


def open_dataset(path: str | os.PathLike[str], **kwargs: Any) -> xr.Dataset:
    """Open a filterdb dataset with xarray (any engine; ``netcdf4`` by default).

    Parameters
    ----------
    path : path-like
        A filterdb netCDF file.
    **kwargs
        Passed to :func:`xarray.open_dataset`.

    Returns
    -------
    xarray.Dataset
        Lazily loaded; ``ds.filterdb`` answers questions about it.
    """
    return xr.open_dataset(path, **kwargs)


@xr.register_dataset_accessor("filterdb")
class FilterDBAccessor:
    """Selections and tables over a dataset in filterdb's layout."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds
        self._tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None = None
        self._fold: FoldScales | None = None

    def _get_tables(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        if self._tables is None:
            self._tables = read_tables(self._ds)
        return self._tables

    def models(self) -> pd.DataFrame:
        """The model table: one row per model, meta-parameters decoded to strings."""
        return self._get_tables()[0].copy()

    def layers(self) -> pd.DataFrame:
        """The layer table: one row per layer, with its model id and meta-parameters."""
        models, layers, _ = self._get_tables()
        return layers.join(models[list(CATEGORICAL)], on="model")

    def kernel_counts(self) -> pd.DataFrame:
        """Filters per 2-D kernel shape per model."""
        return self._get_tables()[2].copy()

    def select_layers(
        self,
        model: str | Sequence[str] | None = None,
        layer: int | Sequence[int] | None = None,
        depth: tuple[float, float] | None = None,
        decile: int | None = None,
        **meta: str | Sequence[str],
    ) -> np.ndarray:
        """Indices of the layers that match every given criterion.

        Parameters
        ----------
        model : str or sequence of str, optional
            Model id(s).
        layer : int or sequence of int, optional
            Layer index(es) along the ``layer`` dimension.
        depth : (float, float), optional
            ``conv_depth_norm`` in ``(lo, hi]``; ``lo = 0`` is included (the study's deciles).
        decile : int, optional
            Depth decile 0..9: the same as ``depth=(decile/10, (decile+1)/10)``.
        **meta : str or sequence of str
            Meta-parameter values, e.g. ``visual_category="handwriting"``, ``training=["normal"]``.
            A value that no model of the dataset has is a ``KeyError`` listing the values it has.

        Returns
        -------
        numpy.ndarray of int
        """
        table = self.layers()
        keep = np.ones(len(table), dtype=bool)
        if model is not None:
            keep &= table["model"].isin(_as_list(model)).to_numpy()
            _check_known("model", _as_list(model), table["model"])
        if layer is not None:
            keep &= np.isin(table.index.to_numpy(), _as_list(layer))
        if decile is not None:
            if not 0 <= int(decile) <= 9:
                raise ValueError(f"decile must be 0..9, got {decile}")
            depth = (int(decile) / 10, (int(decile) + 1) / 10)
        if depth is not None:
            lo, hi = depth
            d = table["conv_depth_norm"].to_numpy()
            keep &= ((d > lo) | ((lo <= 0) & (d >= lo))) & (d <= hi)
        for key, values in meta.items():
            if key not in CATEGORICAL:
                raise KeyError(f"unknown meta-parameter {key!r}; known: {', '.join(CATEGORICAL)}")
            _check_known(key, _as_list(values), table[key])  # a typo is an error, not 0 filters
            keep &= table[key].isin(_as_list(values)).to_numpy()
        return np.flatnonzero(keep)

    def fold_scales(self) -> FoldScales:
        """Per-filter BatchNorm fold scales of this dataset (see :class:`FoldScales`)."""
        if self._fold is None:
            self._fold = FoldScales(self._ds)
        return self._fold

    def filters(self, folded: bool = False, **criteria: Any) -> np.ndarray:
        """The ``(n, 3, 3)`` float32 filters of the layers matching ``criteria``.

        Takes the same keywords as :meth:`select_layers`; reads only the selected layers'
        contiguous ranges of ``weight``.

        Parameters
        ----------
        folded : bool
            Return the BatchNorm-folded filters ``weight * fold_scale`` of each filter's output
            channel (float32 products, as an exported, folded model holds them) instead of the
            conv's own weights. Layers that no BatchNorm follows, and files without
            ``fold_scale``, have scale 1.
        **criteria
            As :meth:`select_layers`.

        Examples
        --------
        ``ds.filterdb.filters(visual_category="handwriting", decile=0)``
        ``ds.filterdb.filters(model="resnet18-random", folded=True)``
        """
        idx = self.select_layers(**criteria)
        _, layers, _ = self._get_tables()
        starts = layers["layer_first_filter"].to_numpy()[idx]
        counts = layers["layer_filter_count"].to_numpy()[idx]
        weight = self._ds["weight"]
        fold = self.fold_scales() if folded else None
        parts = []
        for s, e in _merge_ranges(starts, starts + counts):
            part = np.asarray(weight[s:e].values, dtype=np.float32)
            parts.append(fold.apply(int(s), part) if fold is not None else part)
        if not parts:
            return np.zeros((0, 3, 3), dtype=np.float32)
        return np.concatenate(parts)

    def channels(self, layer: int | None = None) -> pd.DataFrame:
        """Output and input channel of every filter (of one layer, or of all).

        Filter ``k`` of a layer with ``g = in_channels / groups`` is output channel ``k // g`` and
        input channel (within its group) ``k % g``.

        Returns
        -------
        pandas.DataFrame
            Index ``filter``; columns ``layer``, ``out_channel``, ``in_channel``.
        """
        _, layers, _ = self._get_tables()
        rows = layers if layer is None else layers.iloc[[int(layer)]]
        counts = rows["layer_filter_count"].to_numpy()
        per_group = (rows["in_channels"] // rows["groups"]).to_numpy()
        first = rows["layer_first_filter"].to_numpy()
        local = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        g = np.repeat(per_group, counts)
        return pd.DataFrame(
            {
                "layer": np.repeat(rows.index.to_numpy(), counts),
                "out_channel": local // g,
                "in_channel": local % g,
            },
            index=pd.Index(np.repeat(first, counts) + local, name="filter"),
        )


def _as_list(x: Any) -> list[Any]:
    if isinstance(x, str | int | np.integer):
        return [x]
    return list(x)


def _check_known(what: str, values: list[Any], known: pd.Series) -> None:
    missing = sorted(set(values) - set(known))
    if missing:
        present = ", ".join(sorted(map(str, set(known))))
        raise KeyError(f"unknown {what}(s): {missing}; this dataset has: {present}")


def _merge_ranges(starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out
