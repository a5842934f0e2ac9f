"""A write that runs out of disk space is one line naming the file, not `NetCDF: HDF error`.

netCDF-C reports a failed ``write(2)`` inside HDF5 as ``RuntimeError: NetCDF: HDF error`` (and
creating a file on a full disk as ``PermissionError``), without the errno. filterdb/atomic.py
turns such a failure into :class:`filterdb.atomic.DiskFullError` when the folder written to is
(nearly) full, before the partial temp file is removed.

Two kinds of test:

- **a real full disk**: the commands run in a user and mount namespace (``unshare -rm``) on a
  tmpfs of 1 MiB, so HDF5 really gets ENOSPC. Skipped where unprivileged namespaces are not
  allowed.
- **the decision, portable**: a real HDF5 write failure (a file-size limit, ``RLIMIT_FSIZE`` with
  SIGXFSZ ignored, so ``write(2)`` fails with EFBIG) while ``shutil.disk_usage`` is made to
  report a full or an empty disk. This checks what is concluded from the free space, not that a
  full disk produces the failure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}

# runs "$@" with a tmpfs of $2 KiB mounted on $1, then lists what is left in it on stdout
NAMESPACE = r"""
mnt=$1; size=$2; shift 2
mount -t tmpfs -o "size=${size}k" tmpfs "$mnt" || exit 97
"$@"
rc=$?
echo "LEFT: $(cd "$mnt" && find . -mindepth 1 | sort | tr '\n' ' ')"
exit $rc
"""


def _in_tmpfs(mnt: Path, size_kib: int, *argv: str) -> subprocess.CompletedProcess[str]:
    mnt.mkdir(exist_ok=True)
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", NAMESPACE, "sh", str(mnt), str(size_kib), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def tmpfs_allowed(tmp_path_factory: pytest.TempPathFactory) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    probe = _in_tmpfs(tmp_path_factory.mktemp("probe") / "mnt", 64, "true")
    if probe.returncode != 0:
        pytest.skip(f"no unprivileged user/mount namespace here: {probe.stderr.strip()}")


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("filterdb: error:")]


def _left(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("LEFT:"))[5:].strip()


def write_upstream(path: Path, n_layers: int = 6, per_layer: int = 10_000) -> None:
    """An upstream-layout file (float64 ``filters`` + pandas ``meta``) of one model."""
    rows = [
        {
            "model_id": 1,
            "conv_depth": d,
            "conv_depth_norm": d / (n_layers - 1),
            "layer_id": d,
            "filter_ids": f"{d * per_layer}:{(d + 1) * per_layer - 1}",
            "model": "big_net",
            "Task": "Classification",
            "Datatype": "natural",
            "Training-Dataset": "ImageNet",
            "Network": "VGG-16",
            "out_channels": per_layer,
            "in_channels": 1,
        }
        for d in range(n_layers)
    ]
    meta = pd.DataFrame(rows).set_index(["model_id", "conv_depth", "conv_depth_norm", "layer_id"])
    meta.to_hdf(path, key="meta", mode="w", format="fixed")
    rng = np.random.default_rng(0)
    with h5py.File(path, "a") as f:
        f.create_dataset("filters", data=rng.standard_normal((n_layers * per_layer, 3, 3)))


def test_import_upstream_onto_a_full_disk_names_the_file(
    tmpfs_allowed: None, tmp_path: Path
) -> None:
    """60,000 filters (2.2 MB as float32) into 1 MiB: exit 2, one line, nothing left behind."""
    pytest.importorskip("tables")
    src = tmp_path / "dataset.h5"
    write_upstream(src)
    out = tmp_path / "mnt" / "upstream.nc"
    proc = _in_tmpfs(
        tmp_path / "mnt",
        1024,
        sys.executable,
        "-m",
        "filterdb.cli",
        "import-upstream",
        str(src),
        "--out",
        str(out),
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = _error_lines(proc.stderr)
    assert line.startswith(f"filterdb: error: {out}: No space left on device (")
    assert line.endswith(
        f"free in {out.parent}; the write failed with RuntimeError: NetCDF: HDF error)"
    )
    assert _left(proc.stdout) == ""  # no dataset, no report, no temp file


def test_stats_all_onto_a_full_disk_names_a_file_and_keeps_the_old_set(
    tmpfs_allowed: None, tiny_dataset: Path, tmp_path: Path
) -> None:
    """The old set is copied onto the tmpfs, the rest of it filled but 16 KiB; a new set fails.

    ``filterdb stats all`` writes its three outputs as one set (filterdb.atomic.atomic_paths):
    the failure names the output being written and leaves the old set byte for byte.
    """
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["shifts"]["population"] = "all"
    old_params, new_params = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old_params.write_text(yaml.safe_dump(params))
    params["degeneracy"]["sparsity_divisor"] = 10.0
    new_params.write_text(yaml.safe_dump(params))
    old = tmp_path / "old"
    names = ["stats/degeneracy.nc", "stats/shifts.nc", "metrics/degeneracy.json"]

    def stats(root: Path, params_file: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "filterdb.cli",
            "stats",
            "all",
            "--params",
            str(params_file),
            "--input",
            str(tiny_dataset),
            "--degeneracy",
            str(root / names[0]),
            "--shifts",
            str(root / names[1]),
            "--metrics",
            str(root / names[2]),
        ]

    first = subprocess.run(
        stats(old, old_params), capture_output=True, text=True, env=ENV, cwd=REPO
    )
    assert first.returncode == 0, first.stderr
    mnt = tmp_path / "mnt"
    driver = textwrap.dedent(
        f"""
        import hashlib, shutil, subprocess, sys
        shutil.copytree({str(old)!r}, {str(mnt)!r}, dirs_exist_ok=True)
        free = shutil.disk_usage({str(mnt)!r}).free
        with open({str(mnt / "filler")!r}, "wb") as f:
            f.write(bytes(free - 16384))
        rc = subprocess.run({stats(mnt, new_params)!r}).returncode
        for name in {names!r}:
            data = open({str(mnt)!r} + "/" + name, "rb").read()
            print("SHA", name, hashlib.sha256(data).hexdigest())
        sys.exit(rc)
        """
    )
    proc = _in_tmpfs(mnt, 1024, sys.executable, "-c", driver)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = _error_lines(proc.stderr)
    assert "No space left on device" in line
    assert any(line.startswith(f"filterdb: error: {mnt / n}: ") for n in names), line
    # the old set, byte for byte (hashed inside the namespace), and nothing else left
    hashes = dict(x.split()[1:] for x in proc.stdout.splitlines() if x.startswith("SHA "))
    assert hashes == {n: hashlib.sha256((old / n).read_bytes()).hexdigest() for n in names}
    assert _left(proc.stdout).split() == [
        "./filler",
        "./metrics",
        "./metrics/degeneracy.json",
        "./stats",
        "./stats/degeneracy.nc",
        "./stats/shifts.nc",
    ]


# a real HDF5 write failure without a full disk: the file-size limit makes write(2) fail (EFBIG)
RLIMIT_CHILD = r"""
import resource, shutil, signal, sys
from collections import namedtuple
import numpy as np, xarray as xr
from filterdb.atomic import write_atomic_netcdf

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
Usage = namedtuple("Usage", "total used free")
free = int(sys.argv[2])
shutil.disk_usage = lambda path: Usage(10**9, 10**9 - free, free)
try:
    write_atomic_netcdf(xr.Dataset({"x": ("n", np.zeros(100_000))}), sys.argv[1])
except Exception as exc:
    print(type(exc).__name__, "|", exc)
"""


@pytest.mark.parametrize(
    ("free", "expected"),
    [
        (
            0,
            "DiskFullError | {out}: No space left on device (0 bytes free in {dir}; the write "
            "failed with RuntimeError: NetCDF: HDF error)",
        ),
        (10**9, "RuntimeError | NetCDF: HDF error"),
    ],
    ids=["disk-reports-full", "disk-reports-space"],
)
def test_a_netcdf_write_failure_is_blamed_on_the_disk_only_when_it_is_full(
    tmp_path: Path, free: int, expected: str
) -> None:
    """An 800 kB variable under a 200 kB file-size limit: HDF5's write fails for real.

    With the disk reported full (0 bytes free, what a failed write on a full disk leaves) the
    error is the one-line DiskFullError naming the target; with plenty reported free the
    library's error is left as it is (a size limit is not a full disk). The temp file is gone
    either way.
    """
    out = tmp_path / "out.nc"
    proc = subprocess.run(
        [sys.executable, "-c", RLIMIT_CHILD, str(out), str(free)],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected.format(out=out, dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
