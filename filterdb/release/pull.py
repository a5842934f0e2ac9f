"""Get a published release's artifacts: from the DVC remote, or by rebuilding its tag.

``filterdb pull VERSION`` reads the manifest committed at the tag ``vVERSION``, fetches every
artifact the manifest names with ``dvc get`` at that revision (from the repository's default
remote), and checks each file's sha256 against the manifest before anything is written to
``releases/vVERSION/``. Where the remote lacks the data, ``--rebuild`` checks the tag out into a
temporary git worktree, runs the main job there (``make release``, its own environment), and
accepts the result only when every sha256 equals the manifest's: a machine that cannot reproduce
the build says so, naming the differing artifacts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filterdb.atomic import DIR_MODE
from filterdb.errors import FilterDBError
from filterdb.hashes import sha256_file

__all__ = ["PullError", "pull_release"]

#: Files of a release folder that live in git, not on the DVC remote.
IN_GIT = ("manifest.json", "RELEASE.md", "README.md", "SHA256SUMS", ".gitignore")


class PullError(FilterDBError):
    """A version cannot be had: no tag, no data on the remote, or a rebuild that differs."""


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise PullError(f"`{' '.join(cmd)}` failed: {last}")
    return proc


def tagged_manifest(repo: Path, version: str) -> dict[str, Any]:
    """The manifest committed at tag ``vVERSION``."""
    tag = f"v{version}"
    if _run(["git", "rev-parse", "-q", "--verify", f"refs/tags/{tag}"], repo, False).returncode:
        raise PullError(f"no git tag {tag} in {repo} (git tag lists the published versions)")
    proc = _run(["git", "show", f"{tag}:releases/{tag}/manifest.json"], repo, False)
    if proc.returncode:
        raise PullError(f"tag {tag} has no releases/{tag}/manifest.json")
    return json.loads(proc.stdout)


def _mismatches(folder: Path, artifacts: Mapping[str, Any]) -> list[str]:
    bad = []
    for name, entry in sorted(artifacts.items()):
        path = folder / name
        if not path.is_file():
            bad.append(f"{name} (missing)")
        elif sha256_file(path) != entry["sha256"]:
            bad.append(f"{name} (sha256 differs)")
    return bad


def _remote_url(repo: Path) -> str | None:
    """The URL of the clone's default DVC remote as configured now (local config included),
    relative paths resolved the way DVC does (against ``.dvc/``)."""
    name = _run(["dvc", "config", "core.remote"], repo, check=False).stdout.strip()
    if not name:
        return None
    url = _run(["dvc", "config", f"remote.{name}.url"], repo, check=False).stdout.strip()
    if url and "://" not in url and not Path(url).is_absolute():
        url = str((repo / ".dvc" / url).resolve())
    return url or None


def _from_remote(repo: Path, version: str, artifacts: Mapping[str, Any], out: Path) -> list[str]:
    """``dvc get`` every artifact at the tag into ``out`` from the clone's default remote (as
    configured now, not as committed at the tag); return what could not be had."""
    tag = f"v{version}"
    url = _remote_url(repo)
    extra = ["--remote-config", f"url={url}"] if url else []
    failed = []
    tops = sorted({name.split("/", 1)[0] for name in artifacts})
    for top in tops:
        proc = _run(
            [
                "dvc",
                "get",
                str(repo),
                f"releases/{tag}/{top}",
                "--rev",
                tag,
                "-o",
                str(out / top),
                *extra,
            ],
            repo,
            check=False,
        )
        if proc.returncode:
            failed.append(top)
    return failed


def _rebuild(repo: Path, version: str, out: Path) -> None:
    """Run the main job at the tag in a temporary worktree; copy its release folder to ``out``."""
    tag = f"v{version}"
    work = Path(tempfile.mkdtemp(prefix=f"filterdb-{tag}-"))
    try:
        _run(["git", "worktree", "add", "--detach", str(work / "src"), tag], repo)
        env_note = "make release (its own .venv; the full build time)"
        proc = subprocess.run(["make", "release"], cwd=work / "src", check=False)
        if proc.returncode:
            raise PullError(
                f"rebuilding {tag} with `{env_note}` failed (exit {proc.returncode}); a build "
                "whose bytes differ from the published ones is refused by the release stage, "
                "whose message above names the differing artifacts"
            )
        shutil.copytree(work / "src" / "releases" / tag, out, dirs_exist_ok=True)
    finally:
        _run(["git", "worktree", "remove", "--force", str(work / "src")], repo, check=False)
        shutil.rmtree(work, ignore_errors=True)


def pull_release(version: str, repo: str | os.PathLike[str] = ".", rebuild: bool = False) -> Path:
    """Put the artifacts of published ``version`` into ``releases/vVERSION``, verified.

    Parameters
    ----------
    version : str
        ``0.2.0``, ``v0.2.0`` or the release folder's path, ``releases/v0.2.0`` (what
        ``dvc pull`` cannot take: the folder holds several outputs and git-tracked files); a
        path, relative to the current directory, must be ``repo``'s ``releases/vVERSION``.
    repo : path-like
        The repository (a clone with the tags).
    rebuild : bool
        When the remote lacks artifacts, rebuild the tag and accept it only if every sha256
        equals the manifest's.

    Returns
    -------
    Path
        The release folder, whose every artifact matches the manifest.

    Raises
    ------
    PullError
        A path that is not ``repo``'s release folder, no tag, artifacts missing from the remote
        (without ``rebuild``), or a rebuild whose bytes differ (naming the artifacts).
    """
    from filterdb.release.publish import recover_release_folder
    from filterdb.release.versions import normalize_version

    given = Path(version) if "/" in str(version) else None
    version = normalize_version(version if given is None else given.name)
    repo = Path(repo).resolve()
    releases = repo / "releases"
    folder = releases / f"v{version}"
    if given is not None and given.resolve() != folder.resolve():
        raise PullError(f"{given} is not a release folder of {repo} (expected {folder})")
    manifest = tagged_manifest(repo, version)
    artifacts = manifest["artifacts"]
    releases.mkdir(exist_ok=True)
    recover_release_folder(folder)
    tmp = Path(tempfile.mkdtemp(dir=releases, prefix=f".v{version}.pull-{os.getpid()}-"))
    os.chmod(tmp, DIR_MODE)  # mkdtemp makes it private; a release folder is not
    try:
        failed = _from_remote(repo, version, artifacts, tmp)
        if failed:
            if not rebuild:
                raise PullError(
                    f"the DVC remote lacks {len(failed)} artifact(s) of v{version} "
                    f"({', '.join(failed)}); `filterdb pull {version} --rebuild` rebuilds the tag "
                    "and checks every sha256 against the manifest"
                )
            shutil.rmtree(tmp)
            tmp.mkdir()
            _rebuild(repo, version, tmp)
        bad = _mismatches(tmp, artifacts)
        if bad:
            raise PullError(
                f"v{version}: {len(bad)} artifact(s) differ from the published manifest: "
                f"{', '.join(bad[:6])}{' ...' if len(bad) > 6 else ''}; this machine cannot "
                "reproduce the published bytes"
            )
        for name in IN_GIT:
            proc = _run(["git", "show", f"v{version}:releases/v{version}/{name}"], repo, False)
            if proc.returncode == 0:
                (tmp / name).write_text(proc.stdout)
        from filterdb.release.publish import swap_in_folder

        swap_in_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
