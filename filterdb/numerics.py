"""Pinned CPU numerics: torch (training, random initialisation) and the statistics' BLAS.

torch's CPU kernels choose their code by instruction set at run time: ATen's vectorised loops
(``ATEN_CPU_CAPABILITY``: default, avx2, avx512), MKL's BLAS (``MKL_CBWR``: its "conditional
numerical reproducibility" branch) and oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``). Left alone,
an AVX-512 machine trains other bits than an AVX2 machine from the same seed. Measured with
torch 2.14.1 (``docs/reproducibility.md``): random initialisation gives the same bits at
ATen's AVX2 and AVX-512 levels and other bits at its scalar ``default`` level; training gives
other bits at the native AVX-512 settings than at pinned AVX2. :data:`PINNED` caps all three
at AVX2, the newest instruction set every supported x86-64 machine has, so that the same code
gives the same bytes on any of them.

The statistics run on numpy, whose BLAS (OpenBLAS) also picks its kernels by CPU: on this
project's AMD EPYC it uses its ``Haswell`` kernels, on an Intel CPU with AVX-512 it would pick
``SkylakeX`` ones, with another order of summation in the Gram matrices and projections.
``OPENBLAS_CORETYPE`` pins the ``Haswell`` (AVX2) kernels. numpy's own SIMD loops for ``log``
and ``log10`` also differ with AVX-512 (measured: the last bit of 114 of 1,190 layer entropies
and of the KL divergences); the statistics therefore take those logarithms from the C library
(``math.log``), whatever the CPU, instead of pinning numpy's dispatch (which would slow every
numpy loop). The variables are read once, when torch (MKL, oneDNN) or numpy (OpenBLAS) loads, so
:func:`pin` must run before the first ``import numpy``: the CLI calls it first thing.

``FILTERDB_NUMERICS=native`` switches pinning off (the machine's own, faster kernels); what
was in effect is recorded with every checkpoint (:func:`in_effect`), so such a run is never
mistaken for a pinned one.

Examples
--------
>>> sorted(PINNED)
['ATEN_CPU_CAPABILITY', 'MKL_CBWR', 'ONEDNN_MAX_CPU_ISA', 'OPENBLAS_CORETYPE']
>>> requested({"FILTERDB_NUMERICS": "native"})
{}
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Any

from filterdb.errors import FilterDBError

__all__ = ["PINNED", "SWITCH", "NumericsError", "in_effect", "pin", "requested"]

#: The settings, x86-64 spelling. ATen's names are lower case, MKL's and oneDNN's upper case;
#: ``STRICT`` makes MKL's results independent of memory alignment as well.
PINNED: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}

#: Environment variable that turns pinning off when set to ``native``.
SWITCH = "FILTERDB_NUMERICS"


class NumericsError(FilterDBError):
    """torch could not run with the pinned settings (imported too early, or a CPU without AVX2)."""


def requested(
    environ: Mapping[str, str] | None = None, machine: str | None = None
) -> dict[str, str]:
    """The settings :func:`pin` applies (empty when switched off or not on x86-64).

    Parameters
    ----------
    environ : mapping, optional
        Default ``os.environ``.
    machine : str, optional
        Default ``platform.machine()``; the settings are x86-64 ones (elsewhere, e.g. aarch64,
        nothing is pinned and checkpoints record ``pinned: false``).

    Examples
    --------
    >>> requested({}, machine="x86_64")["ATEN_CPU_CAPABILITY"]
    'avx2'
    >>> requested({}, machine="aarch64")
    {}
    """
    env = os.environ if environ is None else environ
    value = env.get(SWITCH, "pinned")
    if value not in ("pinned", "native"):
        raise NumericsError(f"{SWITCH}={value!r}: expected 'pinned' (the default) or 'native'")
    arch = (machine or platform.machine()).lower()
    if value == "native" or arch not in ("x86_64", "amd64"):
        return {}
    return dict(PINNED)


def pin() -> dict[str, str]:
    """Set :data:`PINNED` in ``os.environ`` (unless switched off); return what was set.

    Too late once torch is imported (its kernels are chosen at load): :func:`in_effect`, which
    the training code calls, then refuses to run.
    """
    settings = requested()
    os.environ.update(settings)
    return settings


def in_effect() -> dict[str, Any]:
    """What the running torch uses, to be recorded beside a checkpoint.

    Returns
    -------
    dict
        ``pinned`` (bool), the three environment variables as set (``null`` when unset),
        ``cpu_capability`` (ATen's dispatch level actually in use) and ``torch`` (version).

    Raises
    ------
    NumericsError
        Pinning was requested but one of :data:`PINNED` is not set as pinned in the
        environment (a library caller who skipped :func:`pin`), or ATen runs at another level
        (a CPU without AVX2, or torch imported before :func:`pin`): the bytes would not be the
        published ones.
    """
    settings = requested()
    unset = [f"{k}={os.environ.get(k)}" for k, v in settings.items() if os.environ.get(k) != v]
    if unset:
        raise NumericsError(
            f"pinned numerics need {', '.join(f'{k}={v}' for k, v in settings.items())} in the "
            f"environment before torch is imported, but {', '.join(unset)}; call "
            f"filterdb.numerics.pin() first (the CLI does), or set {SWITCH}=native"
        )
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if settings and capability.lower() != settings["ATEN_CPU_CAPABILITY"]:
        raise NumericsError(
            f"pinned numerics need ATen at {settings['ATEN_CPU_CAPABILITY']!r} but it runs at "
            f"{capability!r} (a CPU without AVX2, or torch imported before filterdb.numerics."
            f"pin()); set {SWITCH}=native to run anyway with results that differ from the "
            "published ones"
        )
    return {
        "pinned": bool(settings),
        **{key: os.environ.get(key) for key in PINNED},
        "cpu_capability": capability,
        "torch": torch.__version__,
    }
