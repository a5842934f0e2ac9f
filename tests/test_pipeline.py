"""The real DVC pipeline in a temp git repo: builds, is a no-op when nothing changed, and
re-extracts only the model whose entry changed."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr

from tests.conftest import MNIST_ENTRY, PNET_ENTRY, copy_repo_files, random_entry, sh, write_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory, cli_env_module) -> Path:
    env = cli_env_module
    root = tmp_path_factory.mktemp("pipeline")
    copy_repo_files(root)
    zoo = {
        "mnist": MNIST_ENTRY,
        "pnet": PNET_ENTRY,
        "tiny": random_entry("mobilenetv3_small_050", "mobilenet"),
    }
    write_params(root / "params.yaml", zoo)
    sh(["git", "init", "-q"], root, env)
    sh(["dvc", "init", "-q"], root, env)
    sh(["dvc", "config", "core.analytics", "false"], root, env)
    sh(["dvc", "repro"], root, env)
    return root


def test_repro_builds_a_valid_dataset_of_the_zoo(repo: Path) -> None:
    with xr.open_dataset(repo / "data" / "filters.nc") as ds:
        assert list(ds["model"].values) == ["mnist", "pnet", "tiny"]
    assert "3 models" in (repo / "data" / "filters.txt").read_text()


def test_second_repro_is_a_no_op_and_status_is_clean(repo: Path, cli_env_module) -> None:
    out = sh(["dvc", "repro"], repo, cli_env_module)
    assert "Running stage" not in out
    status = sh(["dvc", "status"], repo, cli_env_module)
    assert "up to date" in status


def test_changing_one_model_re_extracts_only_that_model(repo: Path, cli_env_module) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in (repo / "data" / "shards").iterdir()}
    zoo = {
        "mnist": MNIST_ENTRY,
        "pnet": PNET_ENTRY,
        "tiny": random_entry("mobilenetv3_small_050", "mobilenet", seed=1),
    }
    write_params(repo / "params.yaml", zoo)
    out = sh(["dvc", "repro"], repo, cli_env_module)
    assert "Running stage 'extract@tiny'" in out
    assert "Running stage 'extract@mnist'" not in out
    after = {p.name: p.stat().st_mtime_ns for p in (repo / "data" / "shards").iterdir()}
    assert after["mnist.nc"] == before["mnist.nc"]
    assert after["tiny.nc"] != before["tiny.nc"]
    assert "up to date" in sh(["dvc", "status"], repo, cli_env_module)


def test_push_and_pull_round_trip_through_a_local_remote(
    repo: Path, tmp_path, cli_env_module
) -> None:
    env = cli_env_module
    remote = tmp_path / "remote"
    sh(["dvc", "remote", "add", "-f", "-d", "local", str(remote)], repo, env)
    sh(["dvc", "push"], repo, env)
    original = (repo / "data" / "filters.nc").read_bytes()
    (repo / "data" / "filters.nc").unlink()
    sh(["dvc", "pull"], repo, env)
    assert (repo / "data" / "filters.nc").read_bytes() == original


def test_release_stage_params_are_the_sections_the_manifest_records() -> None:
    import yaml

    from filterdb.release.publish import RELEASE_PARAMS

    stages = yaml.safe_load((Path(__file__).parents[1] / "dvc.yaml").read_text())["stages"]
    assert set(stages["release"]["params"]) == set(RELEASE_PARAMS)
