"""Logarithms and exponentials from the C library, the same bits on every x86-64 CPU.

numpy's ``log``, ``log10``, ``log2`` and ``exp`` have AVX-512 loops of their own: on a CPU with
AVX-512 they round some results differently in the last bit than the C library's (which numpy
runs elsewhere). Measured on the v0.3.0 dataset: 114 of 1,190 layer entropies and some KL
divergences changed (``docs/reproducibility.md``). The statistics take these functions from here
instead: element by element through :mod:`math`, whatever the CPU. They are applied to small
arrays only (nine eigenvalues per layer, the histograms' probabilities, one threshold per layer).

Examples
--------
>>> log10(np.array([1.0, 10.0, 0.0]))
array([  0.,   1., -inf])
>>> log(np.array([-1.0, np.nan]))
array([nan, nan])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["exp", "log", "log2", "log10"]


def _elementwise(fn: Callable[[float], float], x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    flat = arr.ravel()
    out = np.empty_like(flat)
    for i, v in enumerate(flat.tolist()):
        out[i] = fn(v)
    return out.reshape(arr.shape)


def _log_with(fn: Callable[[float], float]) -> Callable[[float], float]:
    def f(v: float) -> float:
        if v > 0.0:
            return fn(v)  # +inf stays +inf
        if v == 0.0:
            return -math.inf
        return math.nan  # negative or NaN, as numpy gives (without its warning)

    return f


_LOG, _LOG10, _LOG2 = _log_with(math.log), _log_with(math.log10), _log_with(math.log2)


def _exp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def log(x: np.ndarray) -> np.ndarray:
    """Natural logarithm, element by element (``-inf`` at 0, NaN below 0 and at NaN)."""
    return _elementwise(_LOG, x)


def log10(x: np.ndarray) -> np.ndarray:
    """Base-10 logarithm, element by element (as :func:`log` at 0, below 0 and at NaN)."""
    return _elementwise(_LOG10, x)


def log2(x: np.ndarray) -> np.ndarray:
    """Base-2 logarithm, element by element (as :func:`log` at 0, below 0 and at NaN)."""
    return _elementwise(_LOG2, x)


def exp(x: np.ndarray) -> np.ndarray:
    """Exponential, element by element (``inf`` on overflow, NaN at NaN)."""
    return _elementwise(_exp, x)
