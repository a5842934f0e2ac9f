"""Mergeable streaming accumulators of the statistics (float64 sums, exact extremes).

Each accumulator takes rows with ``update``, combines with another of its kind with ``merge``
(the partial results of threads or dask tasks) and sets its results with ``finalize``:
:class:`ScatterAccumulator` (count, mean and centred scatter, Chan's merge),
:class:`LayerAccumulator` (the per-layer sums of the degeneracy's ``S`` and ``H``),
:class:`StreamingPCA` (the shifts' PCA from a scatter) and :class:`CoefficientRange` (extremes and
peak coefficients). :func:`row_peak` and :func:`col_min_max` are the exact per-row and per-column
extremes they use.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "CoefficientRange",
    "LayerAccumulator",
    "ScatterAccumulator",
    "StreamingPCA",
    "col_min_max",
    "row_peak",
]


class ScatterAccumulator:
    """Streaming count, mean and centred scatter matrix of row vectors (float64).

    Each :meth:`update` centres its chunk on the chunk's own mean and merges with Chan et al.'s
    pairwise formula, which keeps the scatter accurate for data far from the origin.

    Attributes
    ----------
    n_ : int
        Rows seen (set by :meth:`finalize`).
    mean_ : numpy.ndarray
        Mean row.
    scatter_ : numpy.ndarray
        ``sum (x - mean)^T (x - mean)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100, 3))
    >>> acc = ScatterAccumulator(n_features=3).update(x[:30]).update(x[30:]).finalize()
    >>> bool(np.allclose(acc.scatter_ / 99, np.cov(x.T)))
    True
    """

    def __init__(self, n_features: int = 9) -> None:
        self.n_features = n_features

    def _state(self) -> tuple[int, np.ndarray, np.ndarray]:
        if not hasattr(self, "_n"):
            self._n = 0
            self._mean = np.zeros(self.n_features)
            self._m2 = np.zeros((self.n_features, self.n_features))
        return self._n, self._mean, self._m2

    def _merge_state(self, nb: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        na, mean_a, m2_a = self._state()
        if nb == 0:
            return
        if na == 0:
            self._n, self._mean, self._m2 = nb, mean_b.copy(), m2_b.copy()
            return
        n = na + nb
        delta = mean_b - mean_a
        self._mean = mean_a + delta * (nb / n)
        self._m2 = m2_a + m2_b + np.outer(delta, delta) * (na * nb / n)
        self._n = n

    def update(self, x: np.ndarray) -> ScatterAccumulator:
        """Add the rows of ``x`` (shape ``(n, n_features)``); returns ``self``."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.n_features)
        self._state()
        if x.shape[0] == 0:
            return self
        mean_b = x.mean(axis=0)
        xc = x - mean_b
        self._merge_state(x.shape[0], mean_b, np.dot(xc.T, xc))
        return self

    def merge(self, other: ScatterAccumulator) -> ScatterAccumulator:
        """Combine with another accumulator (e.g. from a parallel worker); returns ``self``."""
        nb, mean_b, m2_b = other._state()
        self._state()
        self._merge_state(nb, mean_b, m2_b)
        return self

    def finalize(self) -> ScatterAccumulator:
        """Set ``n_``, ``mean_``, ``scatter_`` from the accumulated state; returns ``self``."""
        n, mean, m2 = self._state()
        self.n_ = n
        self.mean_ = mean.copy()
        self.scatter_ = (m2 + m2.T) / 2.0
        return self


def row_peak(x: np.ndarray) -> np.ndarray:
    """``max_j |x[i, j]|`` of an ``(n, k)`` array, exact, in its own dtype.

    A loop over the few columns: much faster than ``np.abs(x).max(axis=1)`` for ``k = 9``.
    """
    x = np.asarray(x)
    if x.shape[0] == 0:
        return np.zeros(0, dtype=x.dtype)
    out = np.abs(x[:, 0])
    for j in range(1, x.shape[1]):
        np.maximum(out, np.abs(x[:, j]), out=out)
    return out


def col_min_max(x: np.ndarray, group: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ``(min, max)`` of an ``(n, k)`` array: ``x.min(axis=0)``, ``x.max(axis=0)``.

    min and max are exact and order-free, so the rows can be reduced in any grouping: blocks of
    ``group`` rows are laid side by side (a free reshape) and reduced along the long axis, then
    the ``group`` partial results per column. numpy's reduction over axis 0 of an ``(n, 9)``
    array runs an inner loop of 9 per row; this one runs ``9 * group``, several times faster.
    NaN propagates as in ``numpy.minimum``/``maximum``. ``n`` must be at least 1.

    Examples
    --------
    >>> x = np.arange(30.0).reshape(10, 3)[::-1].copy()
    >>> [a.tolist() for a in col_min_max(x, group=4)]
    [[0.0, 1.0, 2.0], [27.0, 28.0, 29.0]]
    """
    x = np.asarray(x)
    k = x.shape[1]
    m = (x.shape[0] // group) * group
    if m == 0:
        return x.min(axis=0), x.max(axis=0)
    body = x[:m].reshape(-1, group * k)
    lo = np.minimum.reduce(body, axis=0).reshape(group, k).min(axis=0)
    hi = np.maximum.reduce(body, axis=0).reshape(group, k).max(axis=0)
    if m < x.shape[0]:
        rest = x[m:]
        np.minimum(lo, rest.min(axis=0), out=lo)
        np.maximum(hi, rest.max(axis=0), out=hi)
    return lo, hi


class LayerAccumulator:
    """Streaming per-layer sums for ``S`` and ``H`` from consecutive pieces of one layer.

    Used by :func:`filterdb.stats.degeneracy.layer_stats`; exposed so a layer larger than memory
    could be fed piecewise (``O`` still needs the whole layer: its Gram matrix pairs every two
    output channels).
    """

    def __init__(self) -> None:
        self.scatter = ScatterAccumulator(9)
        self.n = 0
        self.max_abs = 0.0
        self.finite = True
        self.tap_min = np.full(9, np.inf, dtype=np.float64)
        self.tap_max = np.full(9, -np.inf, dtype=np.float64)
        self.peaks: list[np.ndarray] = []

    def update(self, w: np.ndarray, w64: np.ndarray | None = None) -> LayerAccumulator:
        """Add filters ``w`` of shape ``(k, 3, 3)`` (or ``(k, 9)``); returns ``self``.

        ``w64``, when given, is ``w`` already converted to float64 (saves a conversion).
        """
        x = np.asarray(w).reshape(-1, 9)
        if x.shape[0] == 0:
            return self
        self.n += x.shape[0]
        if not np.isfinite(x).all():
            self.finite = False
            return self
        peak = row_peak(x)  # exact in the stored precision
        self.peaks.append(peak)
        self.max_abs = max(self.max_abs, float(peak.max()))
        lo, hi = col_min_max(x)  # exact: equal to x.min(axis=0), x.max(axis=0)
        self.tap_min = np.minimum(self.tap_min, lo)
        self.tap_max = np.maximum(self.tap_max, hi)
        self.scatter.update(x if w64 is None else w64)
        return self


class StreamingPCA:
    """PCA from streamed rows: count, mean and centred scatter (float64, Chan's merge).

    Parameters
    ----------
    n_components : int
        Components kept (the ratios stay relative to the total variance).

    Attributes
    ----------
    n_samples_ : int
        Rows seen.
    mean_ : numpy.ndarray
        ``(n_features,)`` mean row.
    components_ : numpy.ndarray
        ``(n_components, n_features)`` principal axes, by decreasing variance; each row's entry
        of largest magnitude is positive (v-based signs; :meth:`flip` changes them).
    explained_variance_ : numpy.ndarray
        Variances along the components (denominator ``n - 1``, as scikit-learn).
    explained_variance_ratio_ : numpy.ndarray
        ``explained_variance_ / total variance``; NaN when the total variance is 0.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 9)) * np.arange(9, 0, -1)
    >>> pca = StreamingPCA().update(x[:200]).update(x[200:]).finalize()
    >>> bool(np.isclose(pca.explained_variance_ratio_.sum(), 1.0))
    True
    """

    def __init__(self, n_components: int = 9, n_features: int = 9) -> None:
        self.n_components = n_components
        self.n_features = n_features

    def _acc(self) -> ScatterAccumulator:
        if not hasattr(self, "_scatter"):
            self._scatter = ScatterAccumulator(self.n_features)
        return self._scatter

    def update(self, x: np.ndarray) -> StreamingPCA:
        """Add rows ``x`` of shape ``(n, n_features)``; returns ``self``."""
        self._acc().update(x)
        return self

    def merge(self, other: StreamingPCA) -> StreamingPCA:
        """Combine with another accumulator (parallel workers); returns ``self``."""
        self._acc().merge(other._acc())
        return self

    def finalize(self) -> StreamingPCA:
        """Compute the learned attributes from the accumulated sums; returns ``self``."""
        acc = self._acc().finalize()
        n = acc.n_
        self.n_samples_ = n
        self.mean_ = acc.mean_
        cov = acc.scatter_ / (n - 1) if n > 1 else np.zeros_like(acc.scatter_)
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1]
        vals = np.clip(vals[order], 0.0, None)
        comps = vecs[:, order].T
        idx = np.argmax(np.abs(comps), axis=1)
        signs = np.sign(comps[np.arange(comps.shape[0]), idx])
        comps *= np.where(signs == 0, 1.0, signs)[:, None]
        total = vals.sum()
        k = self.n_components
        self.components_ = comps[:k]
        self.explained_variance_ = vals[:k]
        self.explained_variance_ratio_ = vals[:k] / total if total > 0 else np.full(k, np.nan)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Coefficients ``(x - mean_) @ components_.T`` (float64)."""
        return np.dot(np.asarray(x, dtype=np.float64) - self.mean_, self.components_.T)

    def transform_owned(self, x: np.ndarray) -> np.ndarray:
        """:meth:`transform` of a float64 array the caller owns: centred in place (the same
        arithmetic, one temporary less), so ``x`` is overwritten."""
        np.subtract(x, self.mean_, out=x)
        return np.dot(x, self.components_.T)

    def flip(self, signs: np.ndarray) -> StreamingPCA:
        """Multiply component ``i`` by ``signs[i]`` (``+1`` or ``-1``); returns ``self``."""
        signs = np.asarray(signs, dtype=np.float64)
        if not np.all(np.abs(signs) == 1.0):
            raise ValueError(f"signs must be +1 or -1, got {signs}")
        self.components_ = self.components_ * signs[:, None]
        return self


class CoefficientRange:
    """Streaming min and max of coefficients, and each component's peak coefficient.

    :meth:`update` takes coefficient rows ``(n, k)``: it tracks the global min and max over all
    values, the min and max per column, and per column the value of largest magnitude (the
    first in ``index`` order on ties, as ``numpy.argmax`` over the rows of ``U`` picks it).

    Attributes
    ----------
    min_, max_ : float
        Global extremes (NaN when nothing was seen).
    component_min_, component_max_ : numpy.ndarray
        ``(k,)`` extremes per column (NaN when nothing was seen).
    peak_ : numpy.ndarray
        ``(k,)`` per column the value of largest magnitude; its sign is the u-based sign.
    peak_index_ : numpy.ndarray
        ``(k,)`` int64 ``index`` of that value (-1 when nothing was seen).
    """

    def _state(self) -> tuple[float, float]:
        if not hasattr(self, "_lo"):
            self._lo, self._hi = math.inf, -math.inf
            self._seen = 0
            self._cols: tuple[np.ndarray, ...] | None = None
        return self._lo, self._hi

    def update(self, values: np.ndarray, index: np.ndarray | None = None) -> CoefficientRange:
        """Add coefficient rows ``(n, k)`` (other shapes: only the global extremes).

        ``index`` gives each row's position in the data (increasing; default: the number of
        rows added before); it breaks ties of the peak magnitude. Returns ``self``.
        """
        lo, hi = self._state()
        v = np.asarray(values)
        if v.ndim == 2 and v.shape[0]:
            n = v.shape[0]
            cmin, cmax = col_min_max(v)  # exact, as v.min(axis=0), v.max(axis=0)
            # the global extremes are the extremes of the columns' (NaN propagates alike)
            self._lo, self._hi = min(lo, float(cmin.min())), max(hi, float(cmax.max()))
            idx = (
                np.arange(self._seen, self._seen + n, dtype=np.int64)
                if index is None
                else np.asarray(index, dtype=np.int64)
            )
            arg = np.argmax(np.abs(v), axis=0)  # first occurrence: the smallest index
            cols = np.arange(v.shape[1])
            self._merge_cols((cmin, cmax, v[arg, cols].astype(np.float64), idx[arg]))
        elif v.size:
            self._lo, self._hi = min(lo, float(v.min())), max(hi, float(v.max()))
        if v.ndim == 2:
            self._seen += v.shape[0]
        return self

    def _merge_cols(self, other: tuple[np.ndarray, ...] | None) -> None:
        if other is None:
            return
        if self._cols is None:
            self._cols = tuple(np.array(a) for a in other)
            return
        cmin, cmax, peak, pidx = self._cols
        omin, omax, opeak, oidx = other
        if omin.shape != cmin.shape:
            raise ValueError("cannot combine coefficient rows with different numbers of columns")
        a, b = np.abs(peak), np.abs(opeak)
        take = (b > a) | ((b == a) & (oidx < pidx))
        self._cols = (
            np.minimum(cmin, omin),
            np.maximum(cmax, omax),
            np.where(take, opeak, peak),
            np.where(take, oidx, pidx),
        )

    def merge(self, other: CoefficientRange) -> CoefficientRange:
        """Combine with another accumulator; returns ``self``."""
        lo, hi = self._state()
        olo, ohi = other._state()
        self._lo, self._hi = min(lo, olo), max(hi, ohi)
        self._merge_cols(other._cols)
        self._seen += other._seen
        return self

    def finalize(self, n_components: int | None = None) -> CoefficientRange:
        """Set the attributes (``n_components`` sizes the per-column ones when nothing was
        seen); returns ``self``."""
        lo, hi = self._state()
        empty = lo > hi
        self.min_ = math.nan if empty else lo
        self.max_ = math.nan if empty else hi
        if self._cols is not None:
            cmin, cmax, peak, pidx = (np.array(a) for a in self._cols)
        else:
            k = int(n_components or 0)
            cmin, cmax, peak = (np.full(k, np.nan) for _ in range(3))
            pidx = np.full(k, -1, np.int64)
        self.component_min_, self.component_max_ = cmin, cmax
        self.peak_, self.peak_index_ = peak, pidx
        return self

    def u_based_signs(self) -> np.ndarray:
        """``sign(peak_)`` per component, ``+1`` where the peak is 0 or undefined."""
        return np.where(self.peak_ < 0, -1.0, 1.0)

    def flipped(self, signs: np.ndarray) -> CoefficientRange:
        """The finalized range of the coefficients after multiplying column ``i`` by
        ``signs[i]`` (exact: negation commutes with the projection in IEEE arithmetic)."""
        signs = np.asarray(signs, dtype=np.float64)
        neg = signs < 0
        out = CoefficientRange()
        out._state()
        out._seen = self._seen
        cmin = np.where(neg, -self.component_max_, self.component_min_)
        cmax = np.where(neg, -self.component_min_, self.component_max_)
        out._cols = (cmin, cmax, self.peak_ * signs, self.peak_index_.copy())
        if cmin.size and np.isfinite(cmin).all():
            out._lo, out._hi = float(cmin.min()), float(cmax.max())
        else:
            out._lo, out._hi = self._lo, self._hi
        return out.finalize(signs.size)
