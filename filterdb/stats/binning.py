"""Integer histogram binning of coefficients: common edges, exact bin indices, slot counts.

Binning reproduces ``numpy.histogram(range=(min, max), bins=bins)`` exactly (its edges, its ULP
corrections, a zero-width range widened by 0.5 on each side). Counts are kept per (group slot,
component, bin) in one ``bincount``; being integers, the counts of chunks, threads or dask tasks
add up in any order to the same result.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["GroupHistogram", "bin_indices", "count_outside", "histogram_edges", "slot_counts"]


def histogram_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """Bin edges as ``numpy.histogram(range=(lo, hi), bins=bins)`` makes them.

    A zero-width range is widened by 0.5 on each side; an undefined (NaN) range gives ``[0, 1]``
    (numpy's choice for empty data).
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, int(bins) + 1, endpoint=True, dtype=np.float64)


def bin_indices(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value, exactly as ``numpy.histogram`` assigns it for equal bins.

    Values below the first edge go to bin 0 and above the last to the last bin (the streaming
    passes only bin values inside the range; clipping guards against nothing being dropped).

    As numpy does, an estimate ``e = int((x - lo) / (hi - lo) * bins)`` (clipped to the bins)
    is corrected against the edges themselves: ``e - 1`` where ``x < edges[e]``, ``e + 1``
    where ``x >= edges[e + 1]`` (never past the last bin, which is closed on the right). The
    two corrections exclude each other, so both are read off the estimate, with two lookups
    into small tables and no boolean indexing. The result is a new ``intp`` array.
    """
    bins = edges.size - 1
    first, last = edges[0], edges[-1]
    x = np.asarray(x, dtype=np.float64)
    # upper[e] = edges[e + 1], except the last bin: NaN, so that no comparison moves it up
    upper = np.append(edges[1:-1], np.nan)
    t = np.subtract(x, first)
    t /= last - first
    t *= bins
    with np.errstate(invalid="ignore"):
        idx = t.astype(np.intp)
    np.clip(idx, 0, bins - 1, out=idx)
    move = np.empty(x.shape, dtype=bool)
    np.take(edges, idx, out=t)
    np.less(x, t, out=move)  # below the estimate's lower edge: one bin down
    np.take(upper, idx, out=t)
    idx -= move
    np.greater_equal(x, t, out=move)  # at or above its upper edge: one bin up
    idx += move
    np.maximum(idx, 0, out=idx)  # below the first edge: bin 0
    return idx


def slot_counts(
    coefs: np.ndarray, slots: np.ndarray, edges: np.ndarray
) -> tuple[int, np.ndarray | None]:
    """Histogram counts of coefficient rows per (group slot, component, bin), one ``bincount``.

    Parameters
    ----------
    coefs : numpy.ndarray
        ``(n, k)`` coefficients.
    slots : numpy.ndarray
        ``(n,)`` group slot of each row; rows with a negative slot are skipped.
    edges : numpy.ndarray
        Common bin edges (:func:`histogram_edges`); binned by :func:`bin_indices`.

    Returns
    -------
    first_slot : int
        The lowest slot seen (0 when none).
    counts : numpy.ndarray or None
        int64 ``(last_slot - first_slot + 1, k, bins)``, or None when no row has a slot.
    """
    coefs = np.asarray(coefs, dtype=np.float64)
    slots = np.asarray(slots, dtype=np.int64)
    keep = slots >= 0
    if not keep.all():
        coefs, slots = coefs[keep], slots[keep]
    if slots.size == 0:
        return 0, None
    k, bins = coefs.shape[1], edges.size - 1
    s0, s1 = int(slots.min()), int(slots.max())
    key = bin_indices(coefs, edges)  # a new array: the key is built in it
    key += np.arange(k, dtype=np.intp) * bins
    if s1 > s0:
        key += ((slots - s0) * (k * bins))[:, None]
    local = np.bincount(key.ravel(), minlength=(s1 - s0 + 1) * k * bins)
    return s0, local.reshape(s1 - s0 + 1, k, bins)


class GroupHistogram:
    """Streaming histogram counts per (group slot, component, bin) in one ``bincount``.

    Parameters
    ----------
    n_slots : int
        Number of group slots (values of ``slots`` in :meth:`update` are ``0..n_slots-1``;
        negative slots are skipped).
    edges : numpy.ndarray
        Common bin edges (from :func:`histogram_edges`).

    Attributes
    ----------
    counts_ : numpy.ndarray
        int64 ``(n_slots, n_components, bins)``.
    """

    def __init__(self, n_slots: int, edges: np.ndarray) -> None:
        self.n_slots = n_slots
        self.edges = edges

    def _state(self, n_components: int | None = None) -> np.ndarray:
        if not hasattr(self, "_counts"):
            if n_components is None:
                raise ValueError("update() the histogram before finalize() or merge()")
            self._counts = np.zeros(
                (self.n_slots, n_components, self.edges.size - 1), dtype=np.int64
            )
        return self._counts

    def update(self, coefs: np.ndarray, slots: np.ndarray) -> GroupHistogram:
        """Add coefficient rows ``(n, n_components)`` with their group slot ``(n,)``."""
        coefs = np.asarray(coefs, dtype=np.float64)
        counts = self._state(coefs.shape[1])
        s0, local = slot_counts(coefs, slots, self.edges)
        if local is not None:
            counts[s0 : s0 + local.shape[0]] += local
        return self

    def merge(self, other: GroupHistogram) -> GroupHistogram:
        """Add another accumulator's counts (same edges and slots); returns ``self``."""
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge histograms with different bin edges")
        if hasattr(other, "_counts"):
            self._state(other._counts.shape[1])
            self._counts += other._counts
        return self

    def finalize(self, n_components: int | None = None) -> GroupHistogram:
        """Set ``counts_``; returns ``self``."""
        self.counts_ = self._state(n_components).copy()
        return self


def count_outside(out: np.ndarray, coefs: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Add to ``out[component, (below, above)]`` the coefficients outside ``edges``."""
    if coefs.size:
        out[:, 0] += (coefs < edges[0]).sum(axis=0)
        out[:, 1] += (coefs > edges[-1]).sum(axis=0)
    return out
