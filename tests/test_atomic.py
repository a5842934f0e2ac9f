"""Atomic writes: a killed writer leaves the old file and a temp that the next write removes;
which write failures are blamed on a full disk."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from filterdb.atomic import atomic_path, disk_full_error


def test_kill_9_mid_write_leaves_old_file_and_next_write_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "out.nc"
    target.write_text("old")
    code = (
        "import sys, time\n"
        "from filterdb.atomic import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_text('half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    temps = list(tmp_path.glob(".out.nc.*.tmp"))
    assert len(temps) == 1 and target.read_text() == "old"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert list(tmp_path.glob(".out.nc.*.tmp")) == []


def test_a_live_writers_temp_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    live = tmp_path / f".x.txt.{os.getpid()}.abcd.tmp"
    live.write_text("mine")
    time.sleep(0.01)
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert live.exists() and target.read_text() == "done"


# ------------------------------------------------------------------ what is blamed on a full disk


@pytest.fixture
def nearly_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """``shutil.disk_usage`` reports 4 KiB free (below ``DISK_FULL_BELOW``) everywhere."""
    usage = shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096)  # type: ignore[attr-defined]
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage)


def test_a_netcdf_failure_on_a_nearly_full_disk_is_a_full_disk(
    tmp_path: Path, nearly_full: None
) -> None:
    error = disk_full_error(RuntimeError("NetCDF: HDF error"), tmp_path / "x.nc")
    assert error is not None
    assert str(error).startswith(f"{tmp_path / 'x.nc'}: No space left on device (4,096 bytes")
    assert disk_full_error(OSError(errno.EIO, "Input/output error"), tmp_path / "x.nc")


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("dictionary changed size during iteration"),
        OSError("a message from elsewhere"),
        OSError(errno.EISDIR, "Is a directory"),
    ],
    ids=["runtime-error", "oserror-without-errno", "other-errno"],
)
def test_other_failures_on_a_nearly_full_disk_stay_what_they_are(
    tmp_path: Path, nearly_full: None, exc: BaseException
) -> None:
    assert disk_full_error(exc, tmp_path / "x.nc") is None


def test_a_real_permission_error_on_a_nearly_full_disk_stays_one(
    tmp_path: Path, nearly_full: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EACCES is netCDF's error for creating a file on a full disk, but only in a folder that
    may be written to; in a read-only one (as a non-root user would see it) it is what it says."""
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x.nc"))
    assert disk_full_error(denied, tmp_path / "x.nc") is not None  # writable: the disk
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert disk_full_error(denied, tmp_path / "x.nc") is None
