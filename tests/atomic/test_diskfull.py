"""Which write failures are blamed on a full disk (the decision; tests/dataset/test_disk_full.py
fills a real disk)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from filterdb.atomic import disk_full_error


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


def test_a_classic_netcdf_write_on_a_nearly_full_disk_is_a_full_disk(
    tmp_path: Path, nearly_full: None
) -> None:
    """netCDF classic files report a failed write by its errno's text alone."""
    assert disk_full_error(RuntimeError("No space left on device"), tmp_path / "x.nc")
