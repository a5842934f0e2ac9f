"""The statistics give the same bytes whatever SIMD the CPU offers numpy and its BLAS.

numpy's own AVX-512 loops for ``log``/``log10``/``log2``/``exp`` round some results differently
from the C library, and OpenBLAS picks other kernels on an AVX-512 CPU (``SkylakeX``) than on an
AVX2 one (``Haswell``). The statistics take those functions from :mod:`filterdb.stats.libm`, and
the CLI pins ``OPENBLAS_CORETYPE`` (:mod:`filterdb.numerics`), so switching numpy's AVX-512 off
or asking OpenBLAS for its AVX-512 kernels must not change a byte.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from filterdb.stats import libm
from tests.conftest_stats import make_dataset, simple_zoo, write_dataset

BIN = Path(sys.executable).parent
VALUES = np.array([0.0, -0.0, -1.0, np.nan, np.inf, 1e-300, 0.3, 1.0, 2.0, 7.5e10, 5e-324])


@pytest.mark.parametrize(
    ("ours", "ref"),
    [(libm.log, math.log), (libm.log10, math.log10), (libm.log2, math.log2)],
)
def test_logarithms_are_the_c_librarys_with_numpys_edge_values(ours, ref):
    got = ours(VALUES.reshape(1, -1))
    assert got.shape == (1, VALUES.size) and got.dtype == np.float64
    with np.errstate(divide="ignore", invalid="ignore"):
        numpy_edges = {"log": np.log, "log10": np.log10, "log2": np.log2}[ours.__name__](VALUES)
    for v, g, e in zip(VALUES, got[0], numpy_edges, strict=True):
        if v > 0 and math.isfinite(v):
            assert g == ref(v)  # the same bits as the C library
        else:
            assert (math.isnan(g) and math.isnan(e)) or g == e  # numpy's -inf, nan, inf


def test_exp_is_the_c_librarys_and_overflows_to_inf():
    x = np.array([-800.0, -1.5, 0.0, 0.7, 709.0, 710.0, np.nan])
    got = libm.exp(x)
    assert got[:5].tolist() == [math.exp(v) for v in x[:5]]
    assert got[5] == math.inf and math.isnan(got[6])
    assert libm.exp(np.float64(1.0)).shape == ()


def _stats_bytes(folder: Path, source: Path, tag: str, **env: str) -> dict[str, str]:
    out = folder / tag
    out.mkdir()
    run_env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE",)}
    run_env.update(env)
    proc = subprocess.run(
        [BIN / "filterdb", "stats", "all", "--params", str(folder / "none.yaml"),
         "--input", str(source), "--degeneracy", str(out / "d.nc"),
         "--metrics", str(out / "d.json"), "--shifts", str(out / "s.nc")],
        env=run_env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("isa")
    (folder / "none.yaml").write_text("{}\n")
    return write_dataset(make_dataset(simple_zoo(n_models=6, width=48), seed=3), folder / "f.nc")


def _has_avx512() -> bool:
    from numpy._core._multiarray_umath import __cpu_features__

    return bool(__cpu_features__.get("AVX512F"))


@pytest.mark.slow
def test_statistics_bytes_do_not_depend_on_simd(dataset):
    folder = dataset.parent
    pinned = _stats_bytes(folder, dataset, "pinned")
    # what a CPU without AVX-512 runs in numpy
    no_avx512 = _stats_bytes(
        folder, dataset, "no-avx512", NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR"
    )
    # OpenBLAS asked for its AVX-512 kernels: the CLI's pin overrides it
    skylake = _stats_bytes(folder, dataset, "skylakex", OPENBLAS_CORETYPE="SkylakeX")
    assert pinned == no_avx512 == skylake
    if _has_avx512():  # the pin matters: unpinned, the AVX-512 kernels give other bytes
        native = _stats_bytes(
            folder, dataset, "native", FILTERDB_NUMERICS="native", OPENBLAS_CORETYPE="SkylakeX"
        )
        assert native["d.nc"] != pinned["d.nc"] or native["s.nc"] != pinned["s.nc"]
