"""Benchmarks of the dask driver (pytest-benchmark): scaling, worker memory, per-filter costs.

Scale with environment variables (defaults keep ``--benchmark-disable`` runs quick):

- ``FILTERDB_BENCH_DIST_FILTERS``: filters for the 1-vs-2-workers throughput test (default
  4e6; 2e5 when benchmarks are disabled).
- ``FILTERDB_BENCH_DIST_MEMORY_SIZES``: comma-separated file sizes for the worker peak-memory
  test (default ``"2e5,1e6"``; ``"1e7,1e8"`` for the 10M/100M run: 0.36 GB and 3.6 GB files).
- ``FILTERDB_BENCH_DIST_COST_FILE``: a dataset for the per-filter cost breakdown (default: a
  synthetic file of ``FILTERDB_BENCH_DIST_FILTERS`` filters; e.g. ``data/filters.nc``).
- ``FILTERDB_BENCH_DIST_MALLOC``: ``tuned`` (default: workers get
  ``filterdb.stats.schedulers.WORKER_ENVIRON``) or ``dask`` (dask's own
  ``MALLOC_TRIM_THRESHOLD_``).
- ``FILTERDB_BENCH_DIR``: where the synthetic files go (default: pytest's temporary directory;
  files of 5e6 filters or more are deleted after use).

Run for the report (``docs/scaling.md``)::

    FILTERDB_BENCH_DIST_MEMORY_SIZES=1e7,1e8 FILTERDB_BENCH_DIR=/tmp \\
    FILTERDB_BENCH_DIST_COST_FILE=data/filters.nc \\
    pytest tests/benchmarks/test_bench_distributed.py -s --benchmark-enable
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dask
import netCDF4
import pytest
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest_stats import synthetic_file

from filterdb.dataset.reading import chunk_size_of, iter_chunks, iter_layers, layer_table
from filterdb.stats.accumulators import CoefficientRange
from filterdb.stats.binning import GroupHistogram, histogram_edges
from filterdb.stats.compute import compute_stats
from filterdb.stats.degeneracy import DegeneracyPass
from filterdb.stats.distributed import compute_stats_dask
from filterdb.stats.params import DegeneracyParams, ShiftsParams, blas_limit
from filterdb.stats.schedulers import worker_config
from filterdb.stats.shifts import ShiftsPasses

distributed = pytest.importorskip("distributed")

ORIGINAL_FILTERS = 1_464_797_156


def _n_filters(benchmark) -> int:
    default = "2e5" if benchmark.disabled else "4e6"
    return int(float(os.environ.get("FILTERDB_BENCH_DIST_FILTERS", default)))


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    root = os.environ.get("FILTERDB_BENCH_DIR")
    if root:
        path = Path(root) / f"filterdb-bench-{os.getpid()}"
        path.mkdir(parents=True, exist_ok=True)
        yield path
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp("bench_dist")


MALLOC = os.environ.get("FILTERDB_BENCH_DIST_MALLOC", "tuned")


def _cluster(n_workers: int) -> distributed.LocalCluster:
    config = worker_config() if MALLOC == "tuned" else {}
    with dask.config.set(config):
        return distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        )


def _vmhwm_mb() -> float:
    """Peak RSS of this process (VmHWM; RSS from psutil where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _cpu_s() -> float:
    """User + system CPU seconds of this process."""
    return time.process_time()


def _partition(n: int, parts: int, chunk: int = 65_536) -> int:
    return max(chunk, -(-n // parts))


def test_bench_throughput_one_vs_two_workers(benchmark, bench_dir):
    n = _n_filters(benchmark)
    path = synthetic_file(bench_dir, n)
    rates, cores = {}, {}
    kwargs = {"partition_filters": _partition(n, 8)}
    with xr.open_dataset(path) as ds:  # the single-process path, for reference
        cpu0, t = _cpu_s(), time.perf_counter()
        compute_stats(ds)
        wall = time.perf_counter() - t
        rates[0], cores[0] = n / wall, (_cpu_s() - cpu0) / wall
    for workers in (1, 2):
        with _cluster(workers) as cluster, distributed.Client(cluster) as client:
            compute_stats_dask(path, scheduler=client, **kwargs)  # warm workers, page cache
            cpu0 = sum(client.run(_cpu_s).values())
            t = time.perf_counter()
            if workers == 2:
                _, sh = benchmark.pedantic(compute_stats_dask, args=(path,),
                                           kwargs={"scheduler": client, **kwargs},
                                           rounds=1, iterations=1)
            else:
                _, sh = compute_stats_dask(path, scheduler=client, **kwargs)
            wall = time.perf_counter() - t
            rates[workers] = n / wall
            # cores the workers actually got (the machine may be shared)
            cores[workers] = (sum(client.run(_cpu_s).values()) - cpu0) / wall
            assert int(sh.attrs["n_filters_used"]) == n
    ratio = rates[2] / rates[1]
    benchmark.extra_info.update(
        n_filters=n, filters_per_s_1_worker=rates[1], filters_per_s_2_workers=rates[2],
        filters_per_s_single_process=rates[0], single_process_cores_used=cores[0],
        speedup_2_over_1=ratio, worker_cores_used_1=cores[1], worker_cores_used_2=cores[2],
        load_average=os.getloadavg()[0], malloc=MALLOC,
    )
    print(f"\n{n} filters: single process {rates[0] / 1e6:.2f} M filters/s ({cores[0]:.2f} "
          f"cores used); 1 worker {rates[1] / 1e6:.2f} M filters/s ({cores[1]:.2f} cores "
          f"used), 2 workers {rates[2] / 1e6:.2f} M filters/s ({cores[2]:.2f} cores used), "
          f"ratio {ratio:.2f}; per worker-CPU-second: 1 worker "
          f"{rates[1] / cores[1] / 1e6:.2f} M, 2 workers {rates[2] / cores[2] / 1e6:.2f} M; "
          f"load average {os.getloadavg()[0]:.1f}; malloc {MALLOC}")


def test_worker_peak_memory_is_flat_in_the_number_of_filters(bench_dir):
    sizes = [int(float(s)) for s in
             os.environ.get("FILTERDB_BENCH_DIST_MEMORY_SIZES", "2e5,1e6").split(",")]
    peaks: dict[int, float] = {}
    for n in sorted(sizes):
        path = synthetic_file(bench_dir, n)
        # fresh worker processes per size: their VmHWM is this run's peak only
        with _cluster(2) as cluster, distributed.Client(cluster) as client:
            t = time.perf_counter()
            _, sh = compute_stats_dask(path, scheduler=client)
            elapsed = time.perf_counter() - t
            hwm = client.run(_vmhwm_mb)
        assert int(sh.attrs["n_filters_used"]) == n
        peaks[n] = max(hwm.values())
        print(f"\n{n} filters ({path.stat().st_size / 1e9:.2f} GB): 2 workers {elapsed:.1f} s "
              f"({n / elapsed / 1e6:.2f} M filters/s), worker VmHWM "
              f"{sorted(round(v) for v in hwm.values())} MB")
        if n >= 5_000_000:
            path.unlink()
    print(f"\nworker peak RSS (MB) by filters, malloc {MALLOC}:",
          {k: round(v) for k, v in peaks.items()})
    values = list(peaks.values())
    assert max(values) < 1024
    assert max(values) - min(values) < 150


def _direct_read_mb_s(path: Path) -> float | None:
    """Device read speed of ``path`` bypassing the page cache (``dd iflag=direct``)."""
    dd = shutil.which("dd")
    if dd is None:
        return None
    proc = subprocess.run([dd, f"if={path}", "of=/dev/null", "bs=16M", "iflag=direct"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    t = time.perf_counter()
    subprocess.run([dd, f"if={path}", "of=/dev/null", "bs=16M", "iflag=direct"],
                   capture_output=True, check=True)
    return path.stat().st_size / (time.perf_counter() - t) / 1e6


def _zlib_copy(src: Path, dst: Path, chunk: int) -> Path:
    with netCDF4.Dataset(src) as a, netCDF4.Dataset(dst, "w") as b:
        n = a.dimensions["filter"].size
        for dim in ("filter", "ky", "kx"):
            b.createDimension(dim, a.dimensions[dim].size)
        w = b.createVariable("weight", "f4", ("filter", "ky", "kx"), zlib=True, complevel=1,
                             shuffle=True, chunksizes=(min(chunk, n), 3, 3))
        for s in range(0, n, chunk):
            w[s : s + chunk] = a["weight"][s : s + chunk]
    return dst


def _read_time(path: Path, chunk: int) -> float:
    """One sequential chunked read of ``weight`` on a fresh handle (no HDF5 chunk cache)."""
    with xr.open_dataset(path) as ds:
        return _time(lambda: [None for _ in iter_chunks(ds, chunk)])


def _time(fn) -> float:
    """CPU seconds (user + system) of ``fn()`` in this process: single-threaded work measured
    this way does not depend on what else runs on a shared machine."""
    t = _cpu_s()
    fn()
    return _cpu_s() - t


def test_per_filter_costs(benchmark, bench_dir):
    """CPU seconds per filter of a read and of each statistic's compute, one process, one core.

    Reads are from the page cache (the file was just read), so they measure HDF5 and copying;
    ``read_zlib`` reads a zlib-compressed copy (decompression); ``read_disk_direct`` is the
    device speed without the page cache (``dd iflag=direct``, wall time).
    """
    cost_file = os.environ.get("FILTERDB_BENCH_DIST_COST_FILE")
    path = Path(cost_file) if cost_file else synthetic_file(bench_dir, _n_filters(benchmark))
    dp, sp = DegeneracyParams(), ShiftsParams()
    with xr.open_dataset(path) as ds:
        n = int(ds.sizes["filter"])
        chunk = chunk_size_of(ds)
        first, count = layer_table(ds)
        t_read = min(_read_time(path, chunk) for _ in range(2))
        benchmark.pedantic(_read_time, args=(path, chunk), rounds=1, iterations=1)
        chunks = list(iter_chunks(ds, chunk))  # in memory: the compute below reads nothing
        t_all = _time(lambda: compute_stats(ds))
        with blas_limit(1):
            deg = DegeneracyPass(ds, dp)
            passes = ShiftsPasses(ds, sp)

            def degeneracy() -> None:
                for li, w in iter_layers(iter(chunks), first, count):
                    deg.layer(li, w)

            def pca() -> None:
                for s, a in chunks:
                    passes.pca_chunk(s, a)

            t_deg, t_pca = _time(degeneracy), _time(pca)
            passes.pca.finalize()
            rng = CoefficientRange()
            t_rng = _time(lambda: [rng.update(passes.coefficients(s, a)[0]) for s, a in chunks])
            rng.finalize()
            hist = GroupHistogram(passes.n_models * passes.n_depth_slots,
                                  histogram_edges(rng.min_, rng.max_, sp.bins))

            def histogram() -> None:
                for s, a in chunks:
                    c, ok, _ = passes.coefficients(s, a)
                    hist.update(c, passes.slots(s, a.shape[0])[ok])

            t_hist = _time(histogram)
    zpath = _zlib_copy(path, bench_dir / "zlib_copy.nc", chunk)
    t_zread = min(_read_time(zpath, chunk) for _ in range(2))
    z_ratio = zpath.stat().st_size / path.stat().st_size
    zpath.unlink()
    disk = _direct_read_mb_s(path)
    ns = {k: v / n * 1e9 for k, v in dict(
        read_page_cache=t_read, read_zlib=t_zread, degeneracy=t_deg, pca=t_pca,
        coef_range=t_rng, histogram=t_hist, compute_stats_total=t_all).items()}
    bytes_per_filter = 36
    if disk:
        ns["read_disk_direct"] = bytes_per_filter / (disk * 1e6) * 1e9
    model = 3 * ns["read_page_cache"] + ns["degeneracy"] + ns["pca"] + ns["coef_range"] + \
        ns["histogram"]
    out = {"file": str(path), "n_filters": n, "ns_per_filter": {k: round(v, 1)
                                                                  for k, v in ns.items()},
           "sum_of_parts_ns": round(model, 1), "zlib_size_ratio": round(z_ratio, 3),
           "disk_direct_MB_s": disk and round(disk),
           "projection_1_core_h": ORIGINAL_FILTERS * ns["compute_stats_total"] / 1e9 / 3600}
    print("\n" + json.dumps(out, indent=1))
    benchmark.extra_info.update(out)
    assert all(v >= 0 for v in ns.values())
