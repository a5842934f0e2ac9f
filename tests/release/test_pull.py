"""Specification of ``filterdb pull``: which folder a version given as a path names.

(Pulling itself, from a real DVC remote, is specified in ``test_publish.py``.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from filterdb.release.pull import PullError, pull_release


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path / "repo"


def test_a_path_outside_the_repository_is_refused_not_pulled_into_it(repo, tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere" / "v0.2.0"
    expected = repo / "releases" / "v0.2.0"
    with pytest.raises(PullError) as exc:
        pull_release(str(elsewhere), repo)
    assert str(exc.value) == f"{elsewhere} is not a release folder of {repo} (expected {expected})"
    assert not (repo / "releases").exists() and not elsewhere.exists()


def test_a_relative_path_is_taken_from_the_current_directory(repo, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # releases/v0.2.0 here is not the repository's
    with pytest.raises(PullError, match=r"^releases/v0\.2\.0 is not a release folder of "):
        pull_release("releases/v0.2.0", repo)
    monkeypatch.chdir(repo)  # the repository's own folder: the version is looked up
    for given in (
        "releases/v0.2.0",
        "releases/v0.2.0/",
        "./releases/v0.2.0",
        str(repo / "releases/v0.2.0"),
    ):
        with pytest.raises(PullError, match=r"^no git tag v0\.2\.0 in "):
            pull_release(given, repo)
    assert not (repo / "releases").exists()


def test_the_command_refuses_a_foreign_path_in_one_line_exit_2(repo, tmp_path, cli_env) -> None:
    elsewhere = tmp_path / "elsewhere" / "v0.2.0"
    r = subprocess.run(
        ["filterdb", "pull", str(elsewhere), "--repo", str(repo)],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr == (
        f"filterdb: error: {elsewhere} is not a release folder of {repo} "
        f"(expected {repo / 'releases' / 'v0.2.0'})\n"
    )
    assert not (repo / "releases").exists()
