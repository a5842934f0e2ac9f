"""A killed release build or pull never loses the published folder."""

from __future__ import annotations

from pathlib import Path

from filterdb.release.publish import recover_release_folder


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(text)
    return path


def test_folder_moved_aside_by_a_dead_writer_is_put_back(tmp_path: Path) -> None:
    folder = tmp_path / "v1.0.0"
    _folder(tmp_path / ".v1.0.0.old-999999999", "published")  # killed between the two renames
    recover_release_folder(folder)
    assert (folder / "manifest.json").read_text() == "published"
    assert not list(tmp_path.glob(".v1.0.0.old-*"))


def test_dead_temporaries_go_live_ones_stay(tmp_path: Path) -> None:
    import os

    folder = _folder(tmp_path / "v1.0.0", "current")
    dead = _folder(tmp_path / ".v1.0.0.tmp-999999999-abc", "half")
    dead_pull = _folder(tmp_path / ".v1.0.0.pull-999999999-abc", "half")
    live = _folder(tmp_path / f".v1.0.0.tmp-{os.getpid()}-xyz", "being written")
    stale_aside = _folder(tmp_path / ".v1.0.0.old-999999999", "older copy")
    recover_release_folder(folder)
    assert not dead.exists() and not dead_pull.exists() and not stale_aside.exists()
    assert live.exists() and (folder / "manifest.json").read_text() == "current"
