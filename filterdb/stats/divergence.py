"""From histogram counts to distribution shifts: floored probabilities, symmetric KL and ``D``.

METHODS.md section 3: each histogram is density-normalised, its empty bins floored to ``eps`` and
renormalised; ``KLsym(p, q) = KL(p||q) + KL(q||p)`` (natural log) per component; and
``D(P, Q) = sum_i eta_i KLsym(h_P,i, h_Q,i)`` between every two groups.
"""

from __future__ import annotations

import numpy as np

from filterdb.stats import libm

__all__ = ["histogram_probabilities", "shift_matrix", "symmetric_kl"]


def histogram_probabilities(counts: np.ndarray, edges: np.ndarray, eps: float) -> np.ndarray:
    """Turn counts into the recipe's floored probability vectors.

    ``density = counts / n / width`` (as ``numpy.histogram(density=True)``), empty bins set to
    ``eps``, then divided by its sum. Along the last axis; rows with no counts give NaN.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=-1, keepdims=True)
    width = np.diff(edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        dens = counts / width / n
    dens = np.where(counts == 0, eps, dens)
    dens = np.where(n > 0, dens, np.nan)
    return dens / dens.sum(axis=-1, keepdims=True)


def symmetric_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``KL(p||q) + KL(q||p)`` (natural log) along the last axis; NaN if either is NaN."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    return (p * libm.log(p / q)).sum(axis=-1) + (q * libm.log(q / p)).sum(axis=-1)


def shift_matrix(probs: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise shifts ``D`` between groups.

    Parameters
    ----------
    probs : numpy.ndarray
        ``(groups, components, bins)`` from :func:`histogram_probabilities`.
    eta : numpy.ndarray
        ``(components,)`` explained-variance ratios.

    Returns
    -------
    D : numpy.ndarray
        ``(groups, groups)``, ``D[a, b] = sum_i eta_i KLsym(p_a,i, p_b,i)``: symmetric, zero on
        the diagonal of non-empty groups, NaN rows/columns for empty groups.
    klsym : numpy.ndarray
        ``(groups, groups, components)`` per-component symmetric KL.
    """
    g = probs.shape[0]
    kl = np.zeros((g, g, probs.shape[1]))
    for a in range(g):
        kl[a] = symmetric_kl(probs[a][None], probs)
    kl = (kl + kl.transpose(1, 0, 2)) / 2.0  # exact symmetry against rounding
    empty = np.isnan(probs).any(axis=(1, 2))
    for a in range(g):
        kl[a, a] = np.nan if empty[a] else 0.0
    return (kl * eta).sum(axis=-1), kl
