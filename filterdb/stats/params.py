"""Constants of the statistics: the ``params.yaml`` sections ``degeneracy:`` and ``shifts:``.

:class:`DegeneracyParams` and :class:`ShiftsParams` check their values when built (unknown keys
raise; :data:`filterdb.params.SECTION_CLASSES` builds them when ``params.yaml`` is read), and
:func:`blas_limit` applies their ``blas_threads`` while a statistic computes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from filterdb.dataset.reading import check_filter_view
from filterdb.errors import InputError
from filterdb.params import section_params

__all__ = [
    "DEPTH_AXIS",
    "POPULATIONS",
    "SIGN_RULES",
    "TRAINED_AXIS",
    "DegeneracyParams",
    "ShiftsParams",
    "blas_limit",
]


DEPTH_AXIS = "depth"
TRAINED_AXIS = "trained"
#: Values of ``ShiftsParams.population``.
POPULATIONS = ("trained", "all")
#: Values of ``ShiftsParams.sign_rule``.
SIGN_RULES = ("v-based", "u-based")


def blas_limit(threads: int | None) -> contextlib.AbstractContextManager[Any]:
    """Context limiting BLAS threads (a no-op for ``None``)."""
    if threads is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(threads), user_api="blas")


@dataclass(frozen=True)
class DegeneracyParams:
    """Constants of the degeneracy statistics (``params.yaml`` section ``degeneracy:``).

    Attributes
    ----------
    sparsity_divisor : float
        ``t = max|W| / sparsity_divisor``; a filter is sparse when all ``|w_j| < t``.
    th_a, th_b, th_c, th_d : float
        ``TH(n) = th_a / (1 + exp(-th_b (log2 n - th_c))) + th_d``.
    random_margin : float
        Random-like when ``H >= TH(n) - random_margin``.
    collapsed_entropy_below : float
        Sparse-collapsed needs ``H < collapsed_entropy_below`` ...
    collapsed_sparsity_at_least : float
        ... and ``S >= collapsed_sparsity_at_least``.
    chunk_size : int or None
        Filters per read; ``None`` follows the on-disk chunking of ``weight``.
    gram_block : int
        Output channels per block when forming the ``c_out x c_out`` Gram matrix for ``O``
        (bounds the memory of very wide layers; does not change the result).
    blas_threads : int or None
        BLAS threads while computing (``None``: leave as is). The statistics are many small
        matrix products, for which one thread is much faster than several fighting over shared
        cores; parallelism belongs to workers (see the accumulators' ``merge``).
    filters : {"raw", "folded"}
        ``raw``: the conv's own weights; ``folded``: ``weight * fold_scale`` per output channel
        (BatchNorm folded, as the study measured). Files without ``fold_scale`` fold with 1.
    """

    sparsity_divisor: float = 100.0
    th_a: float = 1.2618047
    th_b: float = 0.88767525
    th_c: float = 2.30436435
    th_d: float = -0.31050834
    random_margin: float = 0.02
    collapsed_entropy_below: float = 0.5
    collapsed_sparsity_at_least: float = 0.14
    chunk_size: int | None = None
    gram_block: int = 2048
    blas_threads: int | None = 1
    filters: str = "raw"

    def __post_init__(self) -> None:
        check_filter_view(self.filters, "degeneracy")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DegeneracyParams:
        """Build from a mapping (e.g. ``params.yaml: degeneracy``); unknown keys raise."""
        return section_params(cls, values, "degeneracy")

    @classmethod
    def coerce(cls, params: DegeneracyParams | Mapping[str, Any] | None) -> DegeneracyParams:
        """Return ``params`` as :class:`DegeneracyParams` (``None`` gives the defaults)."""
        if isinstance(params, cls):
            return params
        return cls.from_dict(params)


@dataclass(frozen=True)
class ShiftsParams:
    """Constants of the shift statistics (``params.yaml`` section ``shifts:``).

    Attributes
    ----------
    n_components : int
        PCA components used (1..9); ``eta`` stays relative to the total variance.
    bins : int
        Equal-width histogram bins per component.
    eps : float
        Floor for empty bins before renormalising (float32 machine epsilon).
    axes : sequence of str
        Grouping axes: model-level categorical variables of the layout (``task``,
        ``visual_category``, ``training_dataset``, ``family``, ``training``, ...), ``trained``
        (``training`` collapsed to ``random-init`` vs ``trained``) and ``depth`` (deciles of
        ``conv_depth_norm``).
    depth_edges : sequence of float
        Cut points of the depth groups, right-closed, lowest included (pandas ``cut``).
    random_init_label : str
        The ``training`` value that means untrained, for the ``trained`` axis and the
        population.
    population : {"trained", "all"}
        ``trained``: the PCA, the coefficient range and all axes but ``trained`` use the models
        whose ``training`` is known and not ``random_init_label``; random-init filters are
        projected in that basis for the ``trained`` axis only (clipped into the end bins when
        outside the range). ``all``: every model everywhere.
    sign_rule : {"v-based", "u-based"}
        PCA component signs: ``v-based`` makes each component's largest-magnitude entry
        positive; ``u-based`` (scikit-learn 0.24, the study) makes each component's
        largest-magnitude coefficient over the fit population positive.
    filters : {"raw", "folded"}
        ``raw``: the conv's own weights; ``folded``: ``weight * fold_scale`` per output channel
        (BatchNorm folded, as the study measured), folded chunk by chunk where the passes read
        them. Peak scaling cancels positive scales; a negative scale flips the filter's sign.
    chunk_size : int or None
        Filters per read; ``None`` follows the on-disk chunking of ``weight``.
    store_model_counts : bool
        Also store the raw counts per (model, depth decile, component, bin), from which any
        other grouping of models can be histogrammed without re-reading the data.
    blas_threads : int or None
        BLAS threads while computing (``None``: leave as is); see ``DegeneracyParams``.
    """

    n_components: int = 9
    bins: int = 70
    eps: float = 1.1920929e-07
    axes: tuple[str, ...] = (
        "task",
        "visual_category",
        "training_dataset",
        "family",
        "training",
        TRAINED_AXIS,
        DEPTH_AXIS,
    )
    depth_edges: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    random_init_label: str = "random-init"
    population: str = "trained"
    sign_rule: str = "v-based"
    chunk_size: int | None = None
    store_model_counts: bool = True
    blas_threads: int | None = 1
    filters: str = "raw"

    def __post_init__(self) -> None:
        check_filter_view(self.filters, "shifts")
        for key, allowed in (("population", POPULATIONS), ("sign_rule", SIGN_RULES)):
            value = getattr(self, key)
            if not isinstance(value, str) or value not in allowed:
                raise InputError(
                    f"shifts.{key} must be one of {', '.join(allowed)}; got {value!r}"
                    + ("" if isinstance(value, str) else f" ({type(value).__name__})")
                )
        if not isinstance(self.random_init_label, str) or not self.random_init_label:
            raise InputError(
                f"shifts.random_init_label must be a non-empty string; "
                f"got {self.random_init_label!r}"
            )
        object.__setattr__(self, "axes", tuple(self.axes))
        object.__setattr__(self, "depth_edges", tuple(float(e) for e in self.depth_edges))
        if not 1 <= int(self.n_components) <= 9:
            raise InputError(f"n_components must be in 1..9, got {self.n_components}")
        if int(self.bins) < 1:
            raise InputError(f"bins must be >= 1, got {self.bins}")
        if not self.eps > 0:
            raise InputError(f"eps must be > 0, got {self.eps}")
        e = np.asarray(self.depth_edges)
        if e.size < 2 or np.any(np.diff(e) <= 0):
            raise InputError("depth_edges must be at least two increasing numbers")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ShiftsParams:
        """Build from a mapping (e.g. ``params.yaml: shifts``); unknown keys raise."""
        return section_params(cls, values, "shifts")

    @classmethod
    def coerce(cls, params: ShiftsParams | Mapping[str, Any] | None) -> ShiftsParams:
        """Return ``params`` as :class:`ShiftsParams` (``None`` gives the defaults)."""
        if isinstance(params, cls):
            return params
        return cls.from_dict(params)

    def as_attrs(self) -> dict[str, Any]:
        """The parameters as netCDF-safe attributes (``param_<name>``)."""
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if v is None:
                v = "none"
            elif isinstance(v, bool):
                v = int(v)
            elif isinstance(v, tuple) and v and isinstance(v[0], str):
                v = " ".join(v)
            elif isinstance(v, tuple):
                v = np.asarray(v, dtype=np.float64)
            out[f"param_{k}"] = v
        return out
