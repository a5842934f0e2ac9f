"""The published-checkpoint check: what its digest covers and how it fails without git."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from filterdb.train import checkpoints
from filterdb.train.checkpoints import PublishedLookupError, code_digest, published_record

PACKAGE = Path(checkpoints.__file__).resolve().parents[1]


@pytest.fixture
def package_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the files the code digest reads, which the test may edit."""
    root = tmp_path / "filterdb"
    shutil.copytree(PACKAGE / "train", root / "train", ignore=shutil.ignore_patterns("__py*"))
    shutil.copy(PACKAGE / "numerics.py", root / "numerics.py")
    monkeypatch.setattr(checkpoints, "_PACKAGE", root)
    return root


def test_the_code_digest_covers_training_code_and_numerics(package_copy):
    before = code_digest()
    assert before == checkpoints.code_digest()
    (package_copy / "numerics.py").write_text("# changed\n", encoding="utf-8")
    assert code_digest() != before


def test_the_checks_own_messages_are_not_part_of_the_recipe(package_copy):
    before = code_digest()
    path = package_copy / "train" / "checkpoints.py"
    path.write_text(path.read_text() + "\n# a reworded message\n", encoding="utf-8")
    assert code_digest() == before
    recipe = package_copy / "train" / "recipe.py"
    recipe.write_text(recipe.read_text() + "\n# a change to training\n", encoding="utf-8")
    assert code_digest() != before


def test_without_git_the_lookup_is_a_named_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable anywhere
    with pytest.raises(PublishedLookupError, match=r"cannot run git in .*install git"):
        published_record("tiny", tmp_path)


def test_outside_a_repository_nothing_is_published(tmp_path):
    assert published_record("tiny", tmp_path) is None


def test_the_train_stage_stops_before_training_when_git_is_missing(tmp_path):
    entry = {
        "arch": "resnet9",
        "dataset": "digits",
        "width": 2,
        "epochs": 1,
        "meta": {
            "task": "classification",
            "visual_category": "handwriting",
            "training_dataset": "sklearn-digits",
            "pretraining_dataset": "none",
            "architecture": "resnet9",
            "family": "resnet",
            "training": "normal",
        },
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"trained": {"tiny": entry}}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {**os.environ, "PATH": str(bin_dir)}  # python found by absolute path, git not at all
    t0 = time.perf_counter()
    proc = subprocess.run(
        [Path(sys.executable).parent / "filterdb", "train", "tiny", "--params", "params.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert "cannot run git" in proc.stderr and "Traceback" not in proc.stderr
    assert "training tiny" not in proc.stderr  # stopped before the work, not after it
    assert not (tmp_path / "models").exists()
    assert time.perf_counter() - t0 < 60
