"""Releases with real DVC: build, push, fresh clone, pull, validate; corruption is caught;
older tags restore older bytes; ``dvc get`` fetches one artifact."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import xarray as xr

from filterdb.atomic import DIR_MODE
from filterdb.release.check import validate_release
from filterdb.release.publish import ReleaseError, normalize_version, open_release
from filterdb.release.sums import write_checksums
from tests.conftest import MNIST_ENTRY, PNET_ENTRY, copy_repo_files, random_entry, sh, write_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def origin(tmp_path_factory, cli_env_module) -> Path:
    """A repo with two releases, v0.1.0 and v0.2.0 (one more model), pushed to a local remote."""
    env = cli_env_module
    root = tmp_path_factory.mktemp("origin")
    remote = tmp_path_factory.mktemp("remote")
    copy_repo_files(root)
    zoo = {"mnist": MNIST_ENTRY, "pnet": PNET_ENTRY}
    write_params(root / "params.yaml", zoo, release={"version": "0.1.0"})
    sh(["git", "init", "-q", "-b", "main"], root, env)
    sh(["git", "config", "user.email", "ci@example.org"], root, env)
    sh(["git", "config", "user.name", "ci"], root, env)
    sh(["dvc", "init", "-q"], root, env)
    sh(["dvc", "config", "core.analytics", "false"], root, env)
    sh(["dvc", "remote", "add", "-d", "storage", str(remote)], root, env)
    for version, extra in (
        ("0.1.0", {}),
        ("0.2.0", {"tiny": random_entry("mobilenetv3_small_050", "mobilenet")}),
    ):
        write_params(root / "params.yaml", {**zoo, **extra}, release={"version": version})
        sh(["dvc", "repro"], root, env)
        sh(["git", "add", "-A"], root, env)
        sh(["git", "commit", "-qm", f"Release v{version}"], root, env)
        sh(["git", "tag", f"v{version}"], root, env)
        sh(["dvc", "push"], root, env)
    return root


def test_release_folder_has_manifest_notes_and_artifacts(origin: Path) -> None:
    folder = origin / "releases" / "v0.2.0"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["version"] == "0.2.0"
    assert manifest["counts"]["model_ids"] == ["mnist", "pnet", "tiny"]
    for name in (
        "filters.nc",
        "degeneracy.nc",
        "shifts.nc",
        "models.csv",
        "layers.csv",
        "report.md",
    ):
        assert name in manifest["artifacts"]
    assert any(n.startswith("plots/") for n in manifest["artifacts"])
    notes = (folder / "RELEASE.md").read_text()
    assert "Since v0.1.0" in notes and "models added (1): tiny" in notes
    assert validate_release(folder).ok


def test_fresh_clone_pulls_and_validates_and_catches_a_flipped_byte(
    origin, tmp_path, cli_env_module
) -> None:
    env = cli_env_module
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", "--branch", "v0.1.0", str(origin), str(clone)], tmp_path, env)
    skipped = validate_release(clone / "releases" / "v0.1.0")
    assert skipped.ok and skipped.skipped  # nothing pulled yet: manifest only
    sh(["dvc", "pull", "-q"], clone, env)
    out = sh(["filterdb", "validate", "releases/v0.1.0"], clone, env)
    assert "valid" in out and "FAIL" not in out

    target = clone / "releases" / "v0.1.0" / "filters.nc"
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    r = subprocess.run(
        ["filterdb", "validate", "releases/v0.1.0"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2  # a release that does not validate is bad input: exit 2
    assert "filters.nc: sha256" in r.stdout and "does not match the manifest" in r.stdout


def test_missing_file_and_stale_manifest_fail_naming_what_is_wrong(origin, tmp_path) -> None:
    folder = tmp_path / "v0.2.0"
    shutil.copytree(origin / "releases" / "v0.2.0", folder)
    (folder / "models.csv").unlink()
    report = validate_release(folder)
    assert not report.ok and any("models.csv: missing" in p for p in report.problems)

    shutil.rmtree(folder)
    shutil.copytree(origin / "releases" / "v0.2.0", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["counts"]["filters"] += 1
    manifest["counts"]["by"] = {}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    write_checksums(folder)  # SHA256SUMS rewritten too: the counts are still checked on the data
    report = validate_release(folder)
    assert any("stale counts" in p and "filters" in p for p in report.problems)


def test_checking_out_the_older_tag_restores_its_bytes(origin, tmp_path, cli_env_module) -> None:
    env = cli_env_module
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    sh(["dvc", "pull", "-q"], clone, env)
    new = (clone / "data" / "filters.nc").read_bytes()
    sh(["git", "checkout", "-q", "v0.1.0"], clone, env)
    sh(["dvc", "pull", "-q"], clone, env)
    old = (clone / "releases" / "v0.1.0" / "filters.nc").read_bytes()
    assert old == (origin / "releases" / "v0.1.0" / "filters.nc").read_bytes()
    assert old != new
    with xr.open_dataset(clone / "releases" / "v0.1.0" / "filters.nc") as ds:
        assert list(ds["model"].values) == ["mnist", "pnet"]


def test_dvc_get_and_open_release_fetch_one_artifact(origin, tmp_path, cli_env_module) -> None:
    env = cli_env_module
    sh(
        [
            "dvc",
            "get",
            str(origin),
            "releases/v0.1.0/filters.nc",
            "--rev",
            "v0.1.0",
            "-o",
            str(tmp_path / "got.nc"),
        ],
        tmp_path,
        env,
    )
    assert (tmp_path / "got.nc").read_bytes() == (
        origin / "releases" / "v0.1.0" / "filters.nc"
    ).read_bytes()
    with open_release("v0.1.0", repo=str(origin), cache_dir=tmp_path / "cache") as ds:
        assert list(ds["model"].values) == ["mnist", "pnet"]


def test_dvc_import_tracks_a_release_artifact_in_another_project(
    origin, tmp_path, cli_env_module
) -> None:
    # the README's `dvc import REPO_URL releases/vX/filters.nc --rev vX`, in a user's own project
    env = cli_env_module
    user = tmp_path / "user"
    user.mkdir()
    sh(["git", "init", "-q"], user, env)
    sh(["dvc", "init", "-q"], user, env)
    sh(["dvc", "import", str(origin), "releases/v0.1.0/filters.nc", "--rev", "v0.1.0"], user, env)
    got = user / "filters.nc"
    assert got.read_bytes() == (origin / "releases" / "v0.1.0" / "filters.nc").read_bytes()
    record = (user / "filters.nc.dvc").read_text()
    assert "rev: v0.1.0" in record and "releases/v0.1.0/filters.nc" in record
    with xr.open_dataset(got) as ds:
        assert list(ds["model"].values) == ["mnist", "pnet"]


def test_versions_must_be_semantic() -> None:
    assert normalize_version("v0.1.0") == "0.1.0"
    with pytest.raises(ReleaseError, match="not a semantic version"):
        normalize_version("latest")


def test_published_version_is_immutable_and_identical_rebuild_is_a_no_op(
    origin, tmp_path, cli_env_module
) -> None:
    env = cli_env_module
    repo = tmp_path / "repo"
    shutil.copytree(origin, repo, symlinks=True)
    folder = repo / "releases" / "v0.2.0"
    assert folder.stat().st_mode & 0o777 == DIR_MODE  # not the 0700 of a temporary folder
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    # the same inputs: the manifest (with its git revision) and the notes stay byte for byte
    sh(["filterdb", "release", "0.2.0"], repo, env)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    # other bytes under a published version: refused, nothing changes
    report = repo / "stats" / "report.md"
    report.chmod(0o644)
    report.write_text(report.read_text() + "\nedited\n")
    r = subprocess.run(["filterdb", "release", "0.2.0"], cwd=repo, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "v0.2.0 is published" in r.stderr and "report.md" in r.stderr
    assert "bump release.version" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert not list((repo / "releases").glob(".v0.2.0*"))  # no temporary folder left behind
    # the published folder lost on disk: still refused (compared with the committed manifest)
    shutil.rmtree(folder)
    r = subprocess.run(["filterdb", "release", "0.2.0"], cwd=repo, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "v0.2.0 is published" in r.stderr
    # ... and with the original inputs back, rebuilt exactly as committed
    report.write_text(report.read_text().removesuffix("\nedited\n"))
    sh(["filterdb", "release", "0.2.0"], repo, env)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def test_filterdb_pull_gets_a_tagged_version_from_the_remote_verified(
    origin, tmp_path, cli_env_module
) -> None:
    env = cli_env_module
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)  # main: v0.2.0 checked out
    manifest = json.loads((origin / "releases" / "v0.1.0" / "manifest.json").read_text())
    out = sh(["filterdb", "pull", "0.1.0"], clone, env)
    assert "every artifact matches the manifest of v0.1.0" in out
    folder = clone / "releases" / "v0.1.0"
    for name, entry in manifest["artifacts"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"]
    assert validate_release(folder).ok
    assert sh(["git", "status", "--porcelain"], clone, env) == ""  # tracked files untouched
    # the folder's path names the version too (plain `dvc pull FOLDER` cannot take it)
    (folder / "filters.nc").unlink()
    out = sh(["filterdb", "pull", "releases/v0.1.0/"], clone, env)
    assert "every artifact matches the manifest of v0.1.0" in out
    assert validate_release(folder).ok
    r = subprocess.run(["filterdb", "pull", "9.9.9"], cwd=clone, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "no git tag v9.9.9" in r.stderr


def test_filterdb_pull_says_what_the_remote_lacks(origin, tmp_path, cli_env_module) -> None:
    env = cli_env_module
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    sh(["dvc", "remote", "modify", "storage", "url", str(tmp_path / "empty-remote")], clone, env)
    r = subprocess.run(["filterdb", "pull", "0.1.0"], cwd=clone, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "the DVC remote lacks" in r.stderr and "--rebuild" in r.stderr
    assert not (clone / "releases" / "v0.1.0" / "filters.nc").exists()
    assert not list((clone / "releases").glob(".v0.1.0*"))
