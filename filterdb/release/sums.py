"""``SHA256SUMS``: written when a release is sealed, checked against the manifest, the files
and the copy committed at the version's git tag.

:func:`write_checksums` is called by :func:`filterdb.release.publish.build_release`;
:func:`check_sums` by :func:`filterdb.release.check.validate_release`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any

from filterdb.atomic import write_atomic_text
from filterdb.hashes import sha256_file
from filterdb.release.manifest import (
    CARD_FILE,
    CHECKSUMS_FILE,
    IGNORED,
    MANIFEST_FILE,
    NOTES_FILE,
    SEALED_FORMAT,
    is_int,
)
from filterdb.release.report import ReleaseReport, show_name

__all__ = ["check_sums", "write_checksums"]

#: A line of ``sha256sum``'s output: digest, space, space or ``*``, file name.
_SUM_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")


def _read_sums(path: Path, report: ReleaseReport) -> dict[str, str] | None:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        report.problems.append(f"{path}: not UTF-8 text")
        return None
    sums: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        match = _SUM_LINE.fullmatch(line)
        if not match:
            report.problems.append(f"{path}: line {i} is not '<sha256>  <file>'")
            return None
        digest, name = match.groups()
        if name in sums:
            report.problems.append(f"{path}: {name!r} is listed twice")
            return None
        sums[name] = digest
    if not text.endswith("\n"):
        report.problems.append(f"{path}: does not end with a newline (truncated?)")
        return None
    return sums


def check_sums(folder: Path, m: Mapping[str, Any], files: Set[str], report: ReleaseReport) -> None:
    """``SHA256SUMS`` names every file but itself and agrees with the manifest and the files.

    ``files`` are the regular files found in ``folder`` (relative names).
    """
    path = folder / CHECKSUMS_FILE
    if CHECKSUMS_FILE not in files:
        if m["manifest_format"] < SEALED_FORMAT:
            report.skipped.append(
                f"{CHECKSUMS_FILE}: none (manifest format {m['manifest_format']} predates it; "
                f"{MANIFEST_FILE} and {NOTES_FILE} are covered by git alone)"
            )
        return  # else reported missing with the release's other files
    sums = _read_sums(path, report)
    if sums is None:
        return
    artifacts = m["artifacts"]
    expected = set(artifacts) | {MANIFEST_FILE, NOTES_FILE}
    if CARD_FILE in files or m["manifest_format"] >= SEALED_FORMAT:
        expected.add(CARD_FILE)
    unlisted, unknown = sorted(expected - set(sums)), sorted(set(sums) - expected)
    if unlisted:
        report.problems.append(f"{path}: does not name {', '.join(map(show_name, unlisted))}")
    if unknown:
        report.problems.append(
            f"{path}: names {', '.join(map(show_name, unknown))}, which the release does not hold"
        )
    bad = []
    for name in sorted(set(sums) & expected):
        if name in artifacts:
            if sums[name] != artifacts[name]["sha256"]:
                bad.append(f"{name} (its sha256 differs from the manifest's)")
        elif name in files and sha256_file(folder / name) != sums[name]:
            bad.append(f"{name} (edited after the release was made)")
    if bad:
        report.problems.append(f"{path}: does not match {', '.join(bad)}")
    if not (unlisted or unknown or bad):
        report.checked.append(
            f"{CHECKSUMS_FILE} covers {MANIFEST_FILE}, {NOTES_FILE}, {CARD_FILE} and the "
            f"{len(artifacts)} artifacts"
        )
        _check_tag(folder, report)


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except OSError:
        return None


def _check_tag(folder: Path, report: ReleaseReport) -> None:
    """Compare ``SHA256SUMS`` with the one committed at the version's git tag, if there is one."""
    tag = folder.name
    top = _git(["rev-parse", "--show-toplevel"], folder)
    if top is None or top.returncode:
        report.skipped.append(f"{CHECKSUMS_FILE} not compared with git tag {tag} (no git here)")
        return
    root = Path(top.stdout.decode("utf-8", "surrogateescape").strip()).resolve()
    try:
        rel = (folder.resolve() / CHECKSUMS_FILE).relative_to(root).as_posix()
    except ValueError:  # git found a repository, but not one this folder is inside of
        report.skipped.append(f"{CHECKSUMS_FILE} not compared with git tag {tag} (not in git)")
        return
    has_tag = _git(["rev-parse", "-q", "--verify", f"refs/tags/{tag}^{{commit}}"], folder)
    if has_tag is None or has_tag.returncode:
        report.skipped.append(f"{CHECKSUMS_FILE} not compared with git tag {tag} (no such tag)")
        return
    tagged = _git(["show", f"refs/tags/{tag}:{rel}"], folder)
    path = folder / CHECKSUMS_FILE
    if tagged is None or tagged.returncode:
        report.problems.append(f"{path}: not in the tree of git tag {tag} (added after tagging)")
    elif tagged.stdout != path.read_bytes():
        report.problems.append(f"{path}: differs from the one of git tag {tag}")
    else:
        report.checked.append(f"{CHECKSUMS_FILE} is the one of git tag {tag}")


def write_checksums(folder: str | os.PathLike[str]) -> Path | None:
    """Write ``SHA256SUMS`` into a release folder being built, if its manifest format has one.

    The file names every file of the folder but itself and DVC's ``.gitignore``, sorted, in the
    format of ``sha256sum`` (so ``cd releases/vX.Y.Z && sha256sum -c SHA256SUMS`` checks a pulled
    release). Artifacts take the sha256 the manifest records for them (computed moments before
    from the same bytes); the release's own files are hashed here.

    Parameters
    ----------
    folder : path-like
        The (temporary) release folder, with its ``manifest.json`` written.

    Returns
    -------
    Path or None
        The file, or None for a manifest format before :data:`SEALED_FORMAT` (a published
        release of that format is never given one).
    """
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    fmt = manifest.get("manifest_format")
    if not (is_int(fmt) and fmt >= SEALED_FORMAT):
        return None
    recorded = {n: a["sha256"] for n, a in manifest["artifacts"].items()}
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    lines = [
        f"{recorded.get(rel) or sha256_file(path)}  {rel}\n"
        for rel, path in sorted(files.items())
        if rel not in (CHECKSUMS_FILE, IGNORED)
    ]
    return write_atomic_text("".join(lines), folder / CHECKSUMS_FILE)
