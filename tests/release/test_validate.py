"""``filterdb validate`` on a release: the manifest is a closed world that cannot be fooled.

A small but real release (the session's tiny dataset, real statistics, built by
``build_release`` in a git repository) is tampered with in every way a careless or hostile user
might; each must fail with exit 2 and a message naming the file or key, never a traceback.
Where a test edits the manifest it usually also rewrites ``SHA256SUMS`` to match, as a forger
would, so that the check under test, not the checksum file, is what catches the edit.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from filterdb.cli import main
from filterdb.release.check import validate_release
from filterdb.release.manifest import CHECKSUMS_FILE
from filterdb.release.publish import MANIFEST_FORMAT, ReleaseError
from filterdb.release.sums import write_checksums
from tests.conftest import sh
from tests.small_release import build_small_release

VERSION = "0.0.1"


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_dataset, cli_env_module) -> Path:
    """A release folder built from a committed git checkout (so its git_revision is real).

    Its dataset is the tiny dataset's two small models (a few thousand filters), so that the
    byte-flip tests can validate hundreds of times in seconds.
    """
    from filterdb.dataset.assemble import assemble
    from filterdb.dataset.write import StoreParams

    root = tmp_path_factory.mktemp("repo")
    shards = [tiny_dataset.parent / f"{m}.nc" for m in ("mnist-cnn", "mtcnn-pnet")]
    small = assemble(shards, root.parent / "small.nc", StoreParams(chunk_filters=4096))
    env = cli_env_module
    sh(["git", "init", "-q", "-b", "main"], root, env)
    (root / "README.md").write_text("a repository\n")
    sh(["git", "add", "README.md"], root, env)
    sh(["git", "-c", "user.name=ci", "-c", "user.email=ci@example.org", "commit", "-qm", "init"],
       root, env)
    return build_small_release(root, small, VERSION)


@pytest.fixture
def release(built: Path, tmp_path: Path) -> Path:
    """A fresh copy of the built release (outside git), free to damage."""
    folder = tmp_path / "releases" / f"v{VERSION}"
    shutil.copytree(built, folder, symlinks=True)
    return folder


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _reseal(folder: Path) -> None:
    """Rewrite the manifest.json line of SHA256SUMS, as a forger without the git tag would."""
    digest = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    lines = (folder / CHECKSUMS_FILE).read_text().splitlines(keepends=True)
    mine = "  manifest.json\n"
    (folder / CHECKSUMS_FILE).write_text(
        "".join(f"{digest}{mine}" if ln.endswith(mine) else ln for ln in lines)
    )


def _write_manifest(folder: Path, manifest: dict, reseal: bool = True) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    if reseal:
        _reseal(folder)


def _validate_cli(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``filterdb validate FOLDER`` in this process: exit code and everything it printed."""
    code = main(["validate", str(folder)])
    out = capsys.readouterr()
    return code, out.out + out.err


# --------------------------------------------------------------------------- a sound release


def test_a_fresh_release_is_valid_and_sealed_by_sha256sums(built: Path, cli_env) -> None:
    manifest = _manifest(built)
    assert manifest["manifest_format"] == MANIFEST_FORMAT == 2
    assert len(manifest["git_revision"]) == 40 and manifest["git_dirty"] is False
    report = validate_release(built, recheck=False)
    assert report.ok, str(report)
    assert any("holds only the manifest's" in c for c in report.checked)
    # SHA256SUMS names every file but itself, and sha256sum itself agrees
    files = sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file())
    listed = [ln.split("  ", 1)[1] for ln in (built / CHECKSUMS_FILE).read_text().splitlines()]
    assert listed == [f for f in files if f not in (CHECKSUMS_FILE, ".gitignore")]
    assert {"manifest.json", "RELEASE.md", "README.md", "filters.nc"} <= set(listed)
    if shutil.which("sha256sum"):
        sh(["sha256sum", "--quiet", "-c", CHECKSUMS_FILE], built, cli_env)
    r = subprocess.run(["filterdb", "validate", str(built)], env=cli_env, capture_output=True,
                       text=True)
    assert r.returncode == 0 and f"{built}: valid" in r.stdout, r.stdout + r.stderr


def test_dvc_gitignore_is_the_one_file_outside_the_manifest_that_is_allowed(release) -> None:
    (release / ".gitignore").write_text("/filters.nc\n")
    assert validate_release(release, recheck=False).ok
    (release / "plots" / ".gitignore").write_text("/x\n")  # only the top-level one
    report = validate_release(release, recheck=False)
    assert any("plots/.gitignore: not in the manifest" in p for p in report.problems)


def test_before_dvc_pull_the_files_kept_in_git_are_checked_and_the_rest_skipped(release) -> None:
    manifest = _manifest(release)
    in_dvc = ["filters.nc", "degeneracy.nc", "shifts.nc", "models.csv", "layers.csv",
              "report.md", "replication.csv", "plots"]
    (release / ".gitignore").write_text("".join(f"/{n}\n" for n in in_dvc))  # as DVC writes it
    for name in in_dvc:
        shutil.rmtree(release / name) if name == "plots" else (release / name).unlink()
    report = validate_release(release)
    assert report.ok, str(report)
    kept = sorted(n for n in manifest["artifacts"] if n.split("/")[0] not in in_dvc)
    assert kept == ["croissant.json"]
    assert any(f"sha256, md5 and size of {len(kept)} artifacts" in c for c in report.checked)
    assert any("data not pulled" in s for s in report.skipped)
    (release / "croissant.json").write_text("{}")  # a file kept in git is still checked
    assert any("croissant.json: sha256" in p for p in validate_release(release).problems)
    (release / "croissant.json").unlink()
    assert any("croissant.json: missing" in p for p in validate_release(release).problems)


# --------------------------------------------------------------------------- tampering


def _empty_artifacts(folder: Path) -> None:
    m = _manifest(folder)
    m["artifacts"] = {}
    _write_manifest(folder, m)


def _drop_entry_and_flip_a_weight(folder: Path) -> None:
    m = _manifest(folder)
    del m["artifacts"]["filters.nc"]
    _write_manifest(folder, m)
    data = bytearray((folder / "filters.nc").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "filters.nc").write_bytes(bytes(data))


def _extra_file(folder: Path) -> None:
    (folder / "notes.txt").write_text("not part of the release\n")


def _extra_empty_folder(folder: Path) -> None:
    (folder / "junk").mkdir()


def _edit_notes(folder: Path) -> None:
    with (folder / "RELEASE.md").open("a") as f:
        f.write("\nAll models are MIT licensed.\n")


def _delete_sums(folder: Path) -> None:
    (folder / CHECKSUMS_FILE).unlink()


def _wrong(key: str, name: str, value: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        m = _manifest(folder)
        m["artifacts"][name][key] = value
        _write_manifest(folder, m)

    return edit


def _outside(name: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        outside = folder.parent.parent / "outside.txt"
        outside.write_text("secret\n")
        m = _manifest(folder)
        m["artifacts"][name] = {"md5": "0" * 32, "sha256": "0" * 64, "size": 7}
        _write_manifest(folder, m)

    return edit


def _symlink_out(folder: Path) -> None:
    # same bytes as the artifact, so every digest matches: only the link itself is wrong
    outside = folder.parent.parent / "report.md"
    shutil.copyfile(folder / "report.md", outside)
    (folder / "report.md").unlink()
    (folder / "report.md").symlink_to(outside)


def _symlink_loop(folder: Path) -> None:
    (folder / "loop").symlink_to(folder / "loop")  # resolving it never ends


def _set(path: str | tuple[str, ...], value: object) -> Callable[[Path], None]:
    """Set (or, with ``KeyError``, delete) a manifest field; ``a.b`` is a path of keys."""

    def edit(folder: Path) -> None:
        m = _manifest(folder)
        *parents, last = path.split(".") if isinstance(path, str) else path
        target = m
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
        _write_manifest(folder, m)

    return edit


def _edit_sums(folder: Path) -> None:
    sums = (folder / CHECKSUMS_FILE).read_text().replace("  RELEASE.md\n", "  RELEASE.txt\n")
    (folder / CHECKSUMS_FILE).write_text(sums)


CASES = {
    # name: (edit, the message (a part of it) naming the file or key)
    "empty-artifacts": (_empty_artifacts, "artifacts must be a non-empty object"),
    "dropped-entry": (_drop_entry_and_flip_a_weight, "filters.nc: not in the manifest"),
    "extra-file": (_extra_file, "notes.txt: not in the manifest"),
    "extra-folder": (_extra_empty_folder, "junk: a folder the manifest does not name"),
    "edited-notes": (_edit_notes, "SHA256SUMS: does not match RELEASE.md (edited after"),
    "no-sha256sums": (_delete_sums, "SHA256SUMS: missing"),
    "sha256sums-names": (_edit_sums, "SHA256SUMS: does not name RELEASE.md"),
    "wrong-md5": (
        _wrong("md5", "models.csv", "0" * 32),
        "models.csv: md5 ",  # then the file's md5, which does not match the manifest's 0000…
    ),
    "wrong-size": (_wrong("size", "layers.csv", 3), "layers.csv: size"),
    "wrong-content-hash": (
        _wrong("content_hash", "filters.nc", "sha256:" + "0" * 64),
        "filters.nc: content_hash",
    ),
    "dotdot-path": (_outside("../../outside.txt"), "artifact path '../../outside.txt'"),
    "absolute-path": (_outside("/etc/hostname"), "artifact path '/etc/hostname' is an absolute"),
    "symlink-out": (_symlink_out, "report.md: a symbolic link out of the release folder"),
    "symlink-loop": (_symlink_loop, "loop: a broken symbolic link"),
    "artifact-a-string": (_set(("artifacts", "models.csv"), "x"), "artifacts.models.csv is str"),
    "size-a-string": (
        _set(("artifacts", "layers.csv", "size"), "12"),
        "artifacts.layers.csv.size '12' is not a byte count",
    ),
    "counts-a-string": (_set("counts", "3 models"), "counts is str"),
    "counts-by-lacks-a-key": (_set("counts.by.task", {"x": {"models": 1}}), "counts.by.task.x"),
    "counts-models-a-float": (_set("counts.models", 4.0), "counts.models 4.0 is not a count"),
    "format-a-string": (_set("manifest_format", "2"), "manifest_format '2' is not a known"),
    "format-unknown": (_set("manifest_format", 7), "manifest_format 7 is not a known"),
    "git-dirty-a-string": (_set("git_dirty", "no"), "git_dirty 'no' is not true or false"),
    "git-revision-an-int": (_set("git_revision", 1234), "git_revision 1234 is not a 40-digit"),
    "schema-version-an-int": (_set("schema_version", 2), "schema_version 2 is not a version"),
    "schema-version-other": (_set("schema_version", "1"), "schema_version '1' is not the data"),
    "version-other": (_set("version", "0.0.2"), "version '0.0.2' does not match the folder"),
    "no-params-hash": (_set("params_sha256", KeyError), "missing key(s) params_sha256"),
    "unknown-key": (_set("signed_by", "me"), "unknown key(s) 'signed_by'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_fails_validation_with_exit_2_naming_what_is_wrong(
    release: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, message = CASES[case]
    edit(release)
    code, out = _validate_cli(release, capsys)
    assert code == 2, out
    assert message in out, out
    assert "Traceback" not in out


def test_a_malformed_manifest_is_one_line_on_stderr(release, capsys) -> None:
    _set("counts", "3 models")(release)
    code = main(["validate", str(release)])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert out.err.count("\n") == 1
    assert out.err.startswith(f"filterdb: error: {release / 'manifest.json'}: counts is str")


def test_validate_all_reports_a_malformed_release_and_checks_the_others(release, capsys) -> None:
    other = release.parent / "v0.0.2"
    shutil.copytree(release, other)
    _set("artifacts", [])(release)
    _set("version", "0.0.2")(other)
    code = main(["validate", "--all", "--releases", str(release.parent)])
    out = capsys.readouterr().out
    assert code == 2
    assert "artifacts must be a non-empty object of file -> digests, not list" in out
    assert f"{other}: valid" in out


def test_sha256sums_is_compared_with_the_version_tag(built, tmp_path, cli_env) -> None:
    root = tmp_path / "repo"
    shutil.copytree(built.parents[1], root, symlinks=True)
    folder = root / "releases" / f"v{VERSION}"
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.org"]
    sh(["git", "add", "-A"], root, cli_env)
    sh([*git, "commit", "-qm", f"Release v{VERSION}"], root, cli_env)
    sh([*git, "tag", f"v{VERSION}"], root, cli_env)
    report = validate_release(folder, recheck=False)
    assert report.ok and f"{CHECKSUMS_FILE} is the one of git tag v{VERSION}" in report.checked
    # notes and SHA256SUMS edited together: consistent with each other, not with the tag
    _edit_notes(folder)
    digest = hashlib.sha256((folder / "RELEASE.md").read_bytes()).hexdigest()
    sums = [
        f"{digest}  RELEASE.md" if ln.endswith("  RELEASE.md") else ln
        for ln in (folder / CHECKSUMS_FILE).read_text().splitlines()
    ]
    (folder / CHECKSUMS_FILE).write_text("\n".join(sums) + "\n")
    report = validate_release(folder, recheck=False)
    assert report.problems == [f"{folder / CHECKSUMS_FILE}: differs from the one of git tag "
                               f"v{VERSION}"]


def test_write_checksums_leaves_a_format_1_release_as_it_is(release) -> None:
    _set("manifest_format", 1)(release)
    (release / CHECKSUMS_FILE).unlink()
    assert write_checksums(release) is None and not (release / CHECKSUMS_FILE).exists()
    report = validate_release(release, recheck=False)
    assert report.ok, str(report)  # format 1: SHA256SUMS is optional
    assert any("SHA256SUMS: none (manifest format 1 predates it" in s for s in report.skipped)


# --------------------------------------------------------------------------- byte flips


def _flips(text: bytes, n: int, seed: int = 12) -> list[tuple[int, int]]:
    """``n`` (position, bit) pairs, spread over the whole manifest."""
    rng = random.Random(seed)
    return [(rng.randrange(len(text)), 1 << rng.randrange(8)) for _ in range(n)]


def _flip(path: Path, original: bytes, pos: int, bit: int) -> None:
    data = bytearray(original)
    data[pos] ^= bit
    path.write_bytes(bytes(data))


def _fails(folder: Path) -> bool:
    try:
        report = validate_release(folder, recheck=False)
    except ReleaseError as exc:
        assert "\n" not in str(exc)
        return True
    return not report.ok


def test_every_flipped_manifest_byte_fails_validation(release: Path) -> None:
    path = release / "manifest.json"
    original = path.read_bytes()
    flips = _flips(original, 200)
    passed = []
    for pos, bit in flips:
        _flip(path, original, pos, bit)
        if not _fails(release):
            passed.append((pos, bit))
    assert passed == []


def _unprovable_spans(text: bytes) -> list[range]:
    """Byte ranges of values only git can vouch for: git_revision, license and checkpoints."""
    manifest = json.loads(text)
    spans = []
    for key in ("git_revision", "license", "checkpoints"):
        if key in manifest:
            value = json.dumps(manifest[key], indent=1, sort_keys=True).replace("\n", "\n ")
            start = text.index(f'\n "{key}": '.encode()) + len(key) + 6  # top level
            spans.append(range(start, start + len(value.encode())))
    return spans


def test_every_flipped_byte_fails_even_with_sha256sums_rewritten(release: Path) -> None:
    # a forger without the git tag rewrites SHA256SUMS too: the manifest's own checks (types,
    # digests, names, counts against the data) must still catch every flip
    path = release / "manifest.json"
    original = path.read_bytes()
    spans = _unprovable_spans(original)
    flips = [(p, b) for p, b in _flips(original, 300, seed=34) if not any(p in s for s in spans)]
    assert len(flips) >= 200
    passed = []
    for pos, bit in flips:
        _flip(path, original, pos, bit)
        _reseal(release)
        if not _fails(release):
            passed.append((pos, bit, original[max(0, pos - 30) : pos + 10]))
    assert passed == []


def test_flipped_manifests_through_the_command_line(release: Path, cli_env) -> None:
    path = release / "manifest.json"
    original = path.read_bytes()
    for pos, bit in _flips(original, 3, seed=56):
        _flip(path, original, pos, bit)
        r = subprocess.run(["filterdb", "validate", str(release)], env=cli_env,
                           capture_output=True, text=True)
        assert r.returncode == 2, (pos, bit, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
