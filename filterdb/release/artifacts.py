"""A release folder's files against its manifest: a closed world.

:func:`walk_folder` lists the folder (a symbolic link leaving it, a broken one or anything but a
regular file is a problem); :func:`check_closed_world` checks that it holds exactly the
manifest's artifacts, the release's own files (:data:`~filterdb.release.manifest.BOOKKEEPING`)
and DVC's ``.gitignore``; :func:`check_artifacts` checks every present artifact's sha256, md5,
size and, for a ``.nc`` file, content hash; :func:`dvc_tracked` says which artifacts DVC keeps
(absent until ``dvc pull``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filterdb.hashes import file_digests
from filterdb.release.manifest import (
    BOOKKEEPING,
    CARD_FILE,
    CHECKSUMS_FILE,
    IGNORED,
    MANIFEST_FILE,
    NOTES_FILE,
    SEALED_FORMAT,
)
from filterdb.release.report import ReleaseReport, show_name

__all__ = ["Listing", "check_artifacts", "check_closed_world", "dvc_tracked", "walk_folder"]


@dataclass
class Listing:
    """What :func:`walk_folder` found: files, folders, and entries that are not files."""

    files: set[str] = field(default_factory=set)  # regular files, or links to one inside
    dirs: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)  # present but not readable as a file


def walk_folder(folder: Path, report: ReleaseReport) -> Listing:
    """Every file and folder under ``folder``; links out of it and special files are problems."""
    root = folder.resolve()
    out = Listing()

    def unreadable(exc: OSError) -> None:
        report.problems.append(f"{show_name(exc.filename)}: cannot be listed ({exc.strerror})")

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        here = Path(dirpath)
        rel_dir = here.relative_to(folder)
        for d in list(dirnames):
            rel = (rel_dir / d).as_posix()
            if (here / d).is_symlink():
                dirnames.remove(d)
                out.rejected.add(rel)
                report.problems.append(
                    f"{show_name(here / d)}: a symbolic link to a folder (a release holds files)"
                )
            else:
                out.dirs.add(rel)
        for f in filenames:
            path, rel = here / f, (rel_dir / f).as_posix()
            if path.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):  # dangling, or a loop (x -> x)
                    out.rejected.add(rel)
                    report.problems.append(f"{show_name(path)}: a broken symbolic link")
                    continue
                if not target.is_relative_to(root):
                    out.rejected.add(rel)
                    report.problems.append(
                        f"{show_name(path)}: a symbolic link out of the release folder "
                        f"(to {show_name(target)})"
                    )
                    continue
            if not path.is_file():
                out.rejected.add(rel)
                report.problems.append(f"{show_name(path)}: not a regular file")
                continue
            out.files.add(rel)
    return out


def check_closed_world(
    folder: Path, m: Mapping[str, Any], listing: Listing, report: ReleaseReport
) -> None:
    """The folder holds the manifest's artifacts, the release's own files and nothing else."""
    artifacts = m["artifacts"]
    required = [MANIFEST_FILE, NOTES_FILE]
    if m["manifest_format"] >= SEALED_FORMAT:
        required += [CARD_FILE, CHECKSUMS_FILE]
    for name in required:
        if name not in listing.files and name not in listing.rejected:
            report.problems.append(f"{folder / name}: missing (every release has one)")
    allowed = set(artifacts) | set(BOOKKEEPING) | {IGNORED}
    extra = sorted(listing.files - allowed)
    for name in extra:
        report.problems.append(
            f"{folder / show_name(name)}: not in the manifest (a release folder holds exactly its "
            f"artifacts, {', '.join(BOOKKEEPING)} and DVC's .gitignore)"
        )
    parents = {"/".join(n.split("/")[:i]) for n in artifacts for i in range(1, n.count("/") + 1)}
    for d in sorted(listing.dirs - parents):
        if not any(e.startswith(d + "/") for e in extra):
            report.problems.append(f"{folder / show_name(d)}: a folder the manifest does not name")
    if not extra:
        report.checked.append(
            f"the folder holds only the manifest's {len(artifacts)} artifacts and the release's "
            "files"
        )


def dvc_tracked(folder: Path, artifacts: Mapping[str, Any]) -> set[str]:
    """The artifacts DVC keeps (named in DVC's ``.gitignore``); all of them without one."""
    try:
        lines = (folder / IGNORED).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    ignored = {ln.strip().strip("/") for ln in lines if ln.strip().startswith("/")}
    tracked = {n for n in artifacts if n.split("/", 1)[0] in ignored}
    return tracked or set(artifacts)


def check_artifacts(
    folder: Path, artifacts: Mapping[str, Any], present: set[str], report: ReleaseReport
) -> None:
    """sha256, md5 and size of every present artifact, and the content hash of ``.nc`` files."""
    from filterdb.dataset.content_hash import content_hash

    before = len(report.problems)
    for name in sorted(present):
        path, want = folder / name, artifacts[name]
        got = file_digests(path)
        wrong = [k for k in ("sha256", "md5", "size") if got[k] != want[k]]
        for key in wrong:
            short = 16 if key != "size" else None
            report.problems.append(
                f"{path}: {key} {str(got[key])[:short]}{'…' if short else ''} does not match "
                f"the manifest's {str(want[key])[:short]}{'…' if short else ''} "
                "(changed or corrupt)"
            )
        if wrong or not name.endswith(".nc"):
            continue
        try:
            got_content = content_hash(path)
        except (OSError, RuntimeError, ValueError) as exc:
            report.problems.append(f"{path}: content hash not computable: {exc}")
            continue
        if got_content != want["content_hash"]:
            report.problems.append(
                f"{path}: content_hash {got_content[:23]}… does not match the manifest's "
                f"{want['content_hash'][:23]}…"
            )
    if len(report.problems) == before:
        report.checked.append(
            f"sha256, md5 and size of {len(present)} artifacts, content hash of the .nc files"
        )
