"""Atomic writes: a killed writer leaves the old file and a temp that the next write removes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from filterdb.atomic import atomic_path


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
