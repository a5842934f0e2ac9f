"""What a release records of each checkpoint trained here, and when it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from filterdb.release.publish import checkpoint_records
from filterdb.release.versions import ReleaseError

SHA = "a" * 64
PARAMS = {"trained": {"m": {"arch": "resnet9"}, "untrained-yet": {"arch": "vgg"}}}


def _write(root: Path, record: dict, results: dict | None) -> None:
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / "m.json").write_text(json.dumps(record))
    if results is not None:
        (root / "metrics" / "train").mkdir(parents=True, exist_ok=True)
        (root / "metrics" / "train" / "m.json").write_text(json.dumps(results))


def test_records_come_from_the_model_record(tmp_path):
    numerics = {"pinned": True, "cpu_capability": "AVX2"}
    record = {"checkpoint_sha256": SHA, "recipe_sha256": "b" * 64, "numerics": numerics,
              "accuracy": 0.9}
    _write(tmp_path, record, {"checkpoint_sha256": SHA, "accuracy": 0.9})
    assert checkpoint_records(tmp_path, PARAMS) == {
        "m": {"sha256": SHA, "recipe_sha256": "b" * 64, "numerics": numerics}
    }


def test_a_stale_results_file_is_refused_naming_both_files(tmp_path):
    _write(tmp_path, {"checkpoint_sha256": SHA}, {"checkpoint_sha256": "c" * 64})
    with pytest.raises(ReleaseError, match=r"models/m\.json: .*metrics/train/m\.json.*stale"):
        checkpoint_records(tmp_path, PARAMS)


def test_an_entry_models_dir_is_followed(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "m.json").write_text(json.dumps({"checkpoint_sha256": SHA}))
    params = {"trained": {"m": {"models_dir": "elsewhere"}}}
    assert checkpoint_records(tmp_path, params)["m"]["sha256"] == SHA
