"""croissant.json of a release: Croissant 1.0 JSON-LD with a checksummed file per artifact and
record sets for the model table, the layer table and the filter array; validated by mlcroissant.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from filterdb.release import croissant
from filterdb.release.check import validate_release
from filterdb.release.croissant import CONFORMS_TO, CROISSANT_FILE, check_croissant, write_croissant
from filterdb.release.report import ReleaseReport
from tests.small_release import build_small_release

HAS_MLCROISSANT = importlib.util.find_spec("mlcroissant") is not None
needs_mlcroissant = pytest.mark.skipif(
    not HAS_MLCROISSANT, reason="mlcroissant is not installed (pip install 'filterdb[croissant]')"
)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:
    return build_small_release(tmp_path_factory.mktemp("croissant"), tiny_dataset)


def _doc(folder: Path) -> dict:
    return json.loads((folder / CROISSANT_FILE).read_text())


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _header(path: Path) -> list[str]:
    with path.open(newline="") as fh:
        return next(csv.reader(fh))


def test_croissant_json_is_an_artifact_of_the_manifest(release: Path) -> None:
    entry = _manifest(release)["artifacts"][CROISSANT_FILE]
    assert entry["sha256"] == croissant.file_digests(release / CROISSANT_FILE)["sha256"]
    assert entry["size"] == (release / CROISSANT_FILE).stat().st_size


def test_distribution_lists_every_other_artifact_with_its_sha256_and_size(release: Path) -> None:
    artifacts = _manifest(release)["artifacts"]
    files = {d["@id"]: d for d in _doc(release)["distribution"]}
    assert set(files) == set(artifacts) - {CROISSANT_FILE}  # it cannot hold its own hash
    for name, d in files.items():
        assert d["@type"] == "cr:FileObject" and d["contentUrl"] == name
        assert d["sha256"] == artifacts[name]["sha256"]
        assert d["contentSize"] == f"{artifacts[name]['size']} B"
    assert files["filters.nc"]["encodingFormat"] == "application/x-netcdf"
    assert files["models.csv"]["encodingFormat"] == "text/csv"


def test_dataset_metadata_names_licence_citation_and_version(release: Path) -> None:
    doc = _doc(release)
    assert doc["conformsTo"] == CONFORMS_TO == "http://mlcommons.org/croissant/1.0"
    assert doc["@type"] == "sc:Dataset" and doc["name"] == "filterdb"
    assert doc["version"] == "0.0.1"
    assert doc["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"
    # citeAs from CITATION.cff: the software and the study
    assert "@inproceedings{gavrikov2022cnnfilterdb" in doc["citeAs"]
    assert "Gavrikov, Paul and Keuper, Janis" in doc["citeAs"]
    assert "@misc{filterdb_v0_0_1" in doc["citeAs"]
    assert doc["url"].startswith("https://")
    assert "per-model `license` variable" in doc["description"]


def test_record_sets_follow_the_tables_and_the_filter_array(release: Path) -> None:
    sets = {r["@id"]: r for r in _doc(release)["recordSet"]}
    assert set(sets) == {"models", "layers", "filters"}
    for set_id, csv_name in (("models", "models.csv"), ("layers", "layers.csv")):
        fields = sets[set_id]["field"]
        assert [f["name"] for f in fields] == _header(release / csv_name)
        assert all(f["source"]["fileObject"]["@id"] == csv_name for f in fields)
        assert all(f["source"]["extract"]["column"] == f["name"] for f in fields)
    assert sets["models"]["key"] == {"@id": "models/model"}
    types = {f["name"]: f["dataType"] for f in sets["models"]["field"]}
    assert types["model"] == "sc:Text" and types["n_filters_3x3"] == "sc:Integer"
    layer_model = next(f for f in sets["layers"]["field"] if f["name"] == "model")
    assert layer_model["references"] == {"field": {"@id": "models/model"}}
    filters = {f["name"]: f for f in sets["filters"]["field"]}
    assert filters["weight"]["dataType"] == "cr:Float32"
    assert "weight(filter=" in filters["weight"]["description"]
    assert filters["filter_layer"]["dataType"] == "sc:Integer"


def test_writing_twice_gives_the_same_bytes(release: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(release, copy)
    (copy / CROISSANT_FILE).unlink()
    root = release.parents[1]  # the repository, with CITATION.cff
    digests = write_croissant(copy, "0.0.1", _manifest(release)["artifacts"], root=root)
    assert (copy / CROISSANT_FILE).read_bytes() == (release / CROISSANT_FILE).read_bytes()
    assert digests["sha256"] == _manifest(release)["artifacts"][CROISSANT_FILE]["sha256"]


@needs_mlcroissant
def test_mlcroissant_validates_it_and_loads_the_table_records(release: Path) -> None:
    import mlcroissant as mlc

    ds = mlc.Dataset(jsonld=str(release / CROISSANT_FILE))  # raises ValidationError on errors
    n_models = sum(1 for _ in ds.records("models"))
    n_layers = sum(1 for _ in ds.records("layers"))
    assert n_models == _manifest(release)["counts"]["models"] == 4
    assert n_layers == _manifest(release)["counts"]["layers"]


@needs_mlcroissant
def test_mlcroissant_command_line_validate_passes(release: Path) -> None:
    exe = Path(sys.executable).parent / "mlcroissant"
    r = subprocess.run(
        [str(exe), "validate", "--jsonld", str(release / CROISSANT_FILE)],
        capture_output=True,
        text=True,
        cwd=release,
    )
    assert r.returncode == 0, r.stderr
    assert "error" not in r.stderr.lower()


@needs_mlcroissant
def test_validate_release_checks_croissant_with_mlcroissant(release: Path) -> None:
    report = validate_release(release, recheck=False)
    assert report.ok, str(report)
    assert any("passes mlcroissant" in c for c in report.checked)


def test_validate_release_says_it_skipped_mlcroissant_when_missing(
    release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(croissant, "is_available", lambda module: False)
    report = validate_release(release, recheck=False)
    assert report.ok, str(report)
    assert any("lists every artifact" in c for c in report.checked)
    assert any(
        "mlcroissant is not installed (pip install 'filterdb[croissant]')" in s
        for s in report.skipped
    )


def test_a_distribution_that_disagrees_with_the_manifest_is_a_problem(release: Path) -> None:
    manifest = _manifest(release)
    manifest["artifacts"]["models.csv"]["sha256"] = "0" * 64
    report = ReleaseReport(str(release))
    check_croissant(release, manifest, report)
    assert len(report.problems) == 1
    assert "distribution disagrees with the manifest" in report.problems[0]
    assert "models.csv" in report.problems[0]


def test_a_release_made_before_croissant_is_skipped_not_failed(release: Path, tmp_path) -> None:
    old = tmp_path / "v0.0.1"
    shutil.copytree(release, old)
    (old / CROISSANT_FILE).unlink()
    manifest = _manifest(old)
    del manifest["artifacts"][CROISSANT_FILE]
    report = ReleaseReport(str(old))
    check_croissant(old, manifest, report)
    assert not report.problems
    assert report.skipped == [f"{CROISSANT_FILE}: none (the release predates it)"]
