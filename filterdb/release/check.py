"""Validation of a release folder: its manifest is a closed world.

:func:`validate_release` (importable from :mod:`filterdb.release.publish` as well) checks, in
this order:

1. ``manifest.json`` is UTF-8 JSON of the known shape: every field has its type (``artifacts`` a
   non-empty mapping of mappings with ``sha256``, ``md5``, ``size`` and, for a ``.nc`` file,
   ``content_hash``; ``counts`` with exactly its keys; ``git_revision`` 40 hex digits;
   ``git_dirty`` a bool; a known ``manifest_format``; ``version`` the folder's name; no unknown
   key), and every artifact path stays inside the folder (no absolute path, ``..``, ``.``, empty
   part or backslash). A malformed manifest raises :class:`~filterdb.release.versions.ReleaseError`:
   one line. (``git_revision`` may also be ``unknown``, what a build outside git records.)
2. The folder holds exactly the manifest's artifacts plus the release's own files
   (:data:`BOOKKEEPING`: ``manifest.json``, ``RELEASE.md``, the ``README.md`` dataset card and
   ``SHA256SUMS``) and DVC's top-level ``.gitignore``: a missing artifact, an extra file or
   folder, a symbolic link leaving the folder or anything but a regular file is a problem.
3. ``SHA256SUMS`` (required from manifest format 2 on) names every file of the folder but itself
   and ``.gitignore``, with the sha256 the manifest records for the artifacts and the actual
   sha256 of ``manifest.json``, ``RELEASE.md`` and ``README.md``. The file is in git: the tag
   ``vX.Y.Z`` of the version pins it, so once the version is tagged nobody can change the
   manifest or the notes and ``SHA256SUMS`` together unnoticed; where the folder is in a git
   repository that has the tag, ``SHA256SUMS`` is compared with the tagged one.
4. Every artifact's sha256, md5 and size, and the ``content_hash`` of every ``.nc`` file.
5. Only when all of that holds: the schemas, the Croissant metadata, the recorded counts and
   schema version against the data, and (``recheck``) the statistics on a sample.

When no artifact has been pulled, steps 1 to 3 still run and the report says what was skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from filterdb._atomic import write_atomic_text
from filterdb.hashes import file_digests, sha256_file
from filterdb.release.versions import SEMVER, ReleaseError, version_key

__all__ = [
    "BOOKKEEPING",
    "CHECKSUMS_FILE",
    "KNOWN_FORMATS",
    "SEALED_FORMAT",
    "ReleaseReport",
    "read_manifest",
    "validate_all",
    "validate_release",
    "write_checksums",
]

MANIFEST_FILE = "manifest.json"
NOTES_FILE = "RELEASE.md"
CARD_FILE = "README.md"
CHECKSUMS_FILE = "SHA256SUMS"
#: A release's own files, beside its artifacts.
BOOKKEEPING = (MANIFEST_FILE, NOTES_FILE, CARD_FILE, CHECKSUMS_FILE)
#: DVC's list of the artifacts git ignores (top level only): the one file nobody vouches for.
IGNORED = ".gitignore"
#: Manifest formats this code reads: 1 (v0.1.0 and v0.2.0), 2 (with ``SHA256SUMS``, the dataset
#: card and ``license`` required).
KNOWN_FORMATS = (1, 2)
#: From this manifest format on, a release carries ``SHA256SUMS``.
SEALED_FORMAT = 2

_REQUIRED_KEYS = (
    "manifest_format",
    "version",
    "git_revision",
    "git_dirty",
    "params_sha256",
    "params",
    "schema_version",
    "counts",
    "artifacts",
)
#: keys a manifest may have besides the required ones (``license`` is required from format 2)
_OPTIONAL_KEYS = ("license", "checkpoints")
_COUNT_KEYS = ("models", "layers", "filters", "model_ids", "by")
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_SUM_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")
#: what :func:`filterdb.release.publish.build_release` records when the root is not a git repository
_NO_GIT = "unknown"


@dataclass
class ReleaseReport:
    """What :func:`validate_release` checked, skipped and found wrong."""

    folder: str
    checked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (skips are not failures)."""
        return not self.problems

    def __str__(self) -> str:
        head = f"{self.folder}: " + ("valid" if self.ok else f"{len(self.problems)} problem(s)")
        lines = [head]
        lines += [f"  FAIL {p}" for p in self.problems]
        lines += [f"  ok   {c}" for c in self.checked]
        lines += [f"  skip {s}" for s in self.skipped]
        return "\n".join(lines)


def _error(message: str) -> Exception:
    return ReleaseError(message)


def _show(name: object) -> str:
    """A file name as printable text (names that are not UTF-8 keep their escapes)."""
    return str(name).encode("utf-8", "backslashreplace").decode("utf-8")


# --------------------------------------------------------------------------- the manifest


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and type-check a release folder's ``manifest.json``.

    Parameters
    ----------
    folder : path-like
        ``releases/vX.Y.Z``.

    Returns
    -------
    dict
        The manifest, every field of the expected type.

    Raises
    ------
    filterdb.release.versions.ReleaseError
        No manifest, not UTF-8 JSON, or a field missing or of the wrong type, in one line naming
        the file and the key (the first three problems).
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if path.is_symlink() or not path.is_file():
        raise _error(f"{path}: no manifest (not a release folder, or not a regular file)")
    try:
        text = path.read_bytes().decode("utf-8")
        manifest = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant
        )
    except UnicodeDecodeError as exc:
        raise _error(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise _error(
            f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise _error(f"{path}: not valid JSON: {exc}") from None
    problems = _field_problems(folder, manifest)
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise _error(f"{path}: " + "; ".join(problems[:3]) + more)
    return manifest


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_count(x: Any) -> bool:
    return _is_int(x) and x >= 0


def _str_matching(x: Any, pattern: re.Pattern[str]) -> bool:
    return isinstance(x, str) and pattern.fullmatch(x) is not None


def _field_problems(folder: Path, m: Any) -> list[str]:
    """Every missing key and wrongly typed field of a parsed manifest, as short phrases."""
    if not isinstance(m, dict):
        return [f"expected a JSON object, got {type(m).__name__}"]
    fmt = m.get("manifest_format")
    if not (_is_int(fmt) and fmt in KNOWN_FORMATS):
        known = ", ".join(map(str, KNOWN_FORMATS))
        return [f"manifest_format {fmt!r} is not a known format ({known})"]
    required = _REQUIRED_KEYS + (("license",) if fmt >= SEALED_FORMAT else ())
    missing = [k for k in required if k not in m]
    if missing:
        return [f"missing key(s) {', '.join(missing)}"]
    out: list[str] = []
    unknown = sorted(set(m) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
    if unknown:
        out.append(f"unknown key(s) {', '.join(map(repr, unknown))}")
    version = m["version"]
    if not (isinstance(version, str) and SEMVER.fullmatch(version) and version[0] != "v"):
        out.append(f"version {version!r} is not a version X.Y.Z")
    elif f"v{version}" != folder.name:
        out.append(f"version {version!r} does not match the folder {_show(folder.name)!r}")
    if not (_str_matching(m["git_revision"], _HEX40) or m["git_revision"] == _NO_GIT):
        out.append(f"git_revision {m['git_revision']!r} is not a 40-digit hex commit id")
    if not isinstance(m["git_dirty"], bool):
        out.append(f"git_dirty {m['git_dirty']!r} is not true or false")
    if not _str_matching(m["params_sha256"], _HEX64):
        out.append(f"params_sha256 {m['params_sha256']!r} is not 64 hex digits")
    if not isinstance(m["params"], dict):
        out.append(f"params is {type(m['params']).__name__}, not an object")
    if not _str_matching(m["schema_version"], re.compile(r"[0-9]+(\.[0-9]+)*")):
        out.append(f"schema_version {m['schema_version']!r} is not a version string")
    if "license" in m and not (isinstance(m["license"], str) and m["license"].strip()):
        out.append(f"license {m['license']!r} is not a text")
    checkpoints = m.get("checkpoints", {})
    if not (
        isinstance(checkpoints, dict)
        and all(
            isinstance(r, dict) and _str_matching(r.get("sha256"), _HEX64)
            for r in checkpoints.values()
        )
    ):
        out.append('checkpoints is not an object of model id -> {"sha256": ...}')
    out += _counts_problems(m["counts"])
    out += _artifacts_problems(m["artifacts"])
    return out


def _counts_problems(c: Any) -> list[str]:
    if not isinstance(c, dict):
        return [f"counts is {type(c).__name__}, not an object"]
    if set(c) != set(_COUNT_KEYS):
        missing = [k for k in _COUNT_KEYS if k not in c]
        extra = sorted(set(c) - set(_COUNT_KEYS))
        return [
            f"counts must have exactly the keys {', '.join(_COUNT_KEYS)} "
            f"(missing {missing or 'none'}, unknown {extra or 'none'})"
        ]
    out = [
        f"counts.{k} {c[k]!r} is not a count"
        for k in ("models", "layers", "filters")
        if not _is_count(c[k])
    ]
    ids = c["model_ids"]
    if not (isinstance(ids, list) and all(isinstance(i, str) and i for i in ids)):
        out.append("counts.model_ids is not a list of model ids")
    elif _is_count(c["models"]) and len(ids) != c["models"]:
        out.append(f"counts.model_ids has {len(ids)} ids for {c['models']} models")
    by = c["by"]
    if not isinstance(by, dict):
        return [*out, f"counts.by is {type(by).__name__}, not an object"]
    for col, values in by.items():
        if not isinstance(values, dict):
            out.append(f"counts.by.{col} is {type(values).__name__}, not an object")
            continue
        for value, d in values.items():
            if not (
                isinstance(d, dict)
                and set(d) == {"models", "filters"}
                and _is_count(d["models"])
                and _is_count(d["filters"])
            ):
                out.append(f'counts.by.{col}.{value} is not {{"models": N, "filters": N}}')
    return out


def _name_problem(name: str) -> str | None:
    """Why an artifact name is not a plain relative path inside the folder (None if it is)."""
    if not name:
        return "is empty"
    if any(ord(ch) < 32 or ch in "\\\x7f" for ch in name):
        return "has a backslash or a control character"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "is an absolute path"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "is not a plain relative path ('..', '.' or an empty part)"
    if name in BOOKKEEPING or name == IGNORED:
        return "is the name of one of the release's own files"
    return None


def _artifacts_problems(arts: Any) -> list[str]:
    if not isinstance(arts, dict) or not arts:
        what = "empty" if isinstance(arts, dict) else type(arts).__name__
        return [f"artifacts must be a non-empty object of file -> digests, not {what}"]
    out = []
    for name, a in arts.items():
        why = _name_problem(name)
        if why:
            out.append(f"artifact path {name!r} {why}: artifacts must stay inside the folder")
            continue
        if not isinstance(a, dict):
            out.append(f"artifacts.{name} is {type(a).__name__}, not an object")
            continue
        checks: list[tuple[str, Callable[[Any], bool], str]] = [
            ("sha256", lambda x: _str_matching(x, _HEX64), "64 hex digits"),
            ("md5", lambda x: _str_matching(x, _HEX32), "32 hex digits"),
            ("size", _is_count, "a byte count"),
        ]
        if name.endswith(".nc"):
            checks.append(
                (
                    "content_hash",
                    lambda x: (
                        isinstance(x, str)
                        and _str_matching(x.removeprefix("sha256:"), _HEX64)
                        and x.startswith("sha256:")
                    ),
                    "'sha256:' and 64 hex digits",
                )
            )
        for key, ok, what in checks:
            if key not in a:
                out.append(f"artifacts.{name} has no {key}")
            elif not ok(a[key]):
                out.append(f"artifacts.{name}.{key} {a[key]!r} is not {what}")
    return out


def _consistency(folder: Path, m: Mapping[str, Any], report: ReleaseReport) -> None:
    """What a well-typed manifest must agree with itself on: the params hash and count sums."""
    where = folder / MANIFEST_FILE
    params_json = json.dumps(m["params"], sort_keys=True, default=str)
    if hashlib.sha256(params_json.encode()).hexdigest() != m["params_sha256"]:
        report.problems.append(f"{where}: params_sha256 does not match the recorded params")
    c = m["counts"]
    for col, values in c["by"].items():
        for key in ("models", "filters"):
            if sum(v[key] for v in values.values()) != c[key]:
                report.problems.append(
                    f"{where}: counts.by.{col} {key} do not add up to counts.{key} ({c[key]})"
                )
    report.checked.append("manifest fields and types, version, params hash and count sums")


# --------------------------------------------------------------------------- the folder


@dataclass
class _Listing:
    files: set[str] = field(default_factory=set)  # regular files, or links to one inside
    dirs: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)  # present but not readable as a file


def _walk(folder: Path, report: ReleaseReport) -> _Listing:
    """Every file and folder under ``folder``; links out of it and special files are problems."""
    root = folder.resolve()
    out = _Listing()

    def unreadable(exc: OSError) -> None:
        report.problems.append(f"{_show(exc.filename)}: cannot be listed ({exc.strerror})")

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        here = Path(dirpath)
        rel_dir = here.relative_to(folder)
        for d in list(dirnames):
            rel = (rel_dir / d).as_posix()
            if (here / d).is_symlink():
                dirnames.remove(d)
                out.rejected.add(rel)
                report.problems.append(
                    f"{_show(here / d)}: a symbolic link to a folder (a release holds files)"
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
                    report.problems.append(f"{_show(path)}: a broken symbolic link")
                    continue
                if not target.is_relative_to(root):
                    out.rejected.add(rel)
                    report.problems.append(
                        f"{_show(path)}: a symbolic link out of the release folder "
                        f"(to {_show(target)})"
                    )
                    continue
            if not path.is_file():
                out.rejected.add(rel)
                report.problems.append(f"{_show(path)}: not a regular file")
                continue
            out.files.add(rel)
    return out


def _closed_world(
    folder: Path, m: Mapping[str, Any], listing: _Listing, report: ReleaseReport
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
            f"{folder / _show(name)}: not in the manifest (a release folder holds exactly its "
            f"artifacts, {', '.join(BOOKKEEPING)} and DVC's .gitignore)"
        )
    parents = {"/".join(n.split("/")[:i]) for n in artifacts for i in range(1, n.count("/") + 1)}
    for d in sorted(listing.dirs - parents):
        if not any(e.startswith(d + "/") for e in extra):
            report.problems.append(f"{folder / _show(d)}: a folder the manifest does not name")
    if not extra:
        report.checked.append(
            f"the folder holds only the manifest's {len(artifacts)} artifacts and the release's "
            "files"
        )


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


def _check_sums(
    folder: Path, m: Mapping[str, Any], listing: _Listing, report: ReleaseReport
) -> None:
    """``SHA256SUMS`` names every file but itself and agrees with the manifest and the files."""
    path = folder / CHECKSUMS_FILE
    if CHECKSUMS_FILE not in listing.files:
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
    if CARD_FILE in listing.files or m["manifest_format"] >= SEALED_FORMAT:
        expected.add(CARD_FILE)
    unlisted, unknown = sorted(expected - set(sums)), sorted(set(sums) - expected)
    if unlisted:
        report.problems.append(f"{path}: does not name {', '.join(map(_show, unlisted))}")
    if unknown:
        report.problems.append(
            f"{path}: names {', '.join(map(_show, unknown))}, which the release does not hold"
        )
    bad = []
    for name in sorted(set(sums) & expected):
        if name in artifacts:
            if sums[name] != artifacts[name]["sha256"]:
                bad.append(f"{name} (its sha256 differs from the manifest's)")
        elif name in listing.files and sha256_file(folder / name) != sums[name]:
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


def _dvc_tracked(folder: Path, artifacts: Mapping[str, Any]) -> set[str]:
    """The artifacts DVC keeps (named in DVC's ``.gitignore``); all of them without one."""
    try:
        lines = (folder / IGNORED).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    ignored = {ln.strip().strip("/") for ln in lines if ln.strip().startswith("/")}
    tracked = {n for n in artifacts if n.split("/", 1)[0] in ignored}
    return tracked or set(artifacts)


def _check_artifacts(
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


# --------------------------------------------------------------------------- validation


def validate_release(
    folder: str | os.PathLike[str], recheck: bool = True, sample_layers: int = 16
) -> ReleaseReport:
    """Check a release folder: manifest, files, checksums, schemas, counts and statistics.

    Parameters
    ----------
    folder : path-like
        ``releases/vX.Y.Z``.
    recheck : bool
        Recompute statistics on a sample of layers and groups and compare with the stored ones.
    sample_layers : int
        Layers in the degeneracy sample.

    Returns
    -------
    ReleaseReport
        ``report.ok`` is False when anything is wrong; when no artifact has been pulled, the
        manifest, the folder's other files and ``SHA256SUMS`` are checked and the report says
        what was skipped.

    Raises
    ------
    filterdb.release.versions.ReleaseError
        No manifest, or a malformed one (see :func:`read_manifest`).
    """
    from filterdb.dataset.info import dataset_counts
    from filterdb.release.croissant import check_croissant

    folder = Path(folder)
    report = ReleaseReport(str(folder))
    manifest = read_manifest(folder)
    _consistency(folder, manifest, report)
    listing = _walk(folder, report)
    _closed_world(folder, manifest, listing, report)
    _check_sums(folder, manifest, listing, report)

    artifacts = manifest["artifacts"]
    present = {n for n in artifacts if n in listing.files}
    in_dvc = _dvc_tracked(folder, artifacts)
    pulled = bool((present | listing.rejected) & in_dvc)
    # before `dvc pull`, the artifacts kept in git (e.g. croissant.json) are there all the same
    for name in sorted(
        (set(artifacts) if pulled else set(artifacts) - in_dvc) - present - listing.rejected
    ):
        report.problems.append(f"{folder / name}: missing (listed in the manifest)")
    if present:
        _check_artifacts(folder, artifacts, present, report)
    if not pulled:
        report.skipped.append(
            f"{len(in_dvc)} artifacts not present (data not pulled: `filterdb pull "
            f"{manifest['version']}`): "
            "their checksums, schemas, counts and statistics not checked"
        )
        return report
    if report.problems:
        return report  # schemas and statistics of changed files would only repeat the finding

    filters = folder / "filters.nc"
    _validate_tables(folder, report)
    check_croissant(folder, manifest, report)
    with xr.open_dataset(filters) as ds:
        data_schema = str(ds.attrs.get("filterdb_schema_version", ""))
    if data_schema != manifest["schema_version"]:
        report.problems.append(
            f"{folder / MANIFEST_FILE}: schema_version {manifest['schema_version']!r} is not "
            f"the dataset's ({data_schema!r})"
        )
    counts = dataset_counts(filters)
    if counts != manifest["counts"]:
        diff = [k for k in counts if counts[k] != manifest["counts"].get(k)]
        report.problems.append(
            f"{folder / MANIFEST_FILE}: stale counts ({', '.join(diff)} differ from the data)"
        )
    else:
        report.checked.append("manifest counts and schema version match the data")
    if recheck:
        from filterdb.validate.verify import recheck_degeneracy, recheck_shifts

        report.problems += recheck_degeneracy(
            filters, folder / "degeneracy.nc", n_layers=sample_layers
        )
        report.problems += recheck_shifts(filters, folder / "shifts.nc")
        report.checked.append("statistics recomputed on a sample of layers and groups")
    return report


def _validate_tables(folder: Path, report: ReleaseReport) -> None:
    import pandas as pd

    from filterdb.validate.failures import SchemaValidationError
    from filterdb.validate.layout import validate_dataset
    from filterdb.validate.tables import validate_layers, validate_models

    try:
        with xr.open_dataset(folder / "filters.nc") as ds:
            validate_dataset(ds, str(folder / "filters.nc"))
            from filterdb.validate.weights_check import check_weights

            check_weights(ds)  # finite weights, filter_layer, no duplicated models
            n_filters = int(ds.sizes["filter"])
        models = pd.read_csv(
            folder / "models.csv",
            index_col="model",
            keep_default_na=False,
            na_values={"accuracy": [""], "share_3x3": [""], "n_train_samples": [""]},
        )
        validate_models(models, source=str(folder / "models.csv"))
        # ids such as "NA" or "null" and empty layer names are strings, not missing values
        layers = pd.read_csv(
            folder / "layers.csv",
            index_col="layer",
            keep_default_na=False,
            na_values={"conv_depth_norm": [""]},
            dtype={"model": str, "layer_name": str},
        )
        validate_layers(layers, n_filters=n_filters, source=str(folder / "layers.csv"))
        report.checked.append("filters.nc, models.csv and layers.csv pass the schemas")
    except SchemaValidationError as exc:
        report.problems.append(str(exc))


def validate_all(
    releases_dir: str | os.PathLike[str] = "releases", **kwargs: Any
) -> list[ReleaseReport]:
    """:func:`validate_release` on every ``releases/v*`` folder, oldest first.

    A folder whose manifest is missing or malformed gets a report with that one problem, so the
    other versions are still checked.
    """
    folders = [p for p in Path(releases_dir).glob("v*") if p.is_dir() and SEMVER.fullmatch(p.name)]
    folders.sort(key=lambda p: version_key(p.name.removeprefix("v")))
    reports = []
    for f in folders:
        try:
            reports.append(validate_release(f, **kwargs))
        except (ReleaseError, OSError) as exc:  # malformed manifest, unreadable file
            reports.append(ReleaseReport(str(f), problems=[str(exc)]))
    return reports


# --------------------------------------------------------------------------- sealing


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
    if not (_is_int(fmt) and fmt >= SEALED_FORMAT):
        return None
    recorded = {n: a["sha256"] for n, a in manifest["artifacts"].items()}
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    lines = [
        f"{recorded.get(rel) or sha256_file(path)}  {rel}\n"
        for rel, path in sorted(files.items())
        if rel not in (CHECKSUMS_FILE, IGNORED)
    ]
    return write_atomic_text("".join(lines), folder / CHECKSUMS_FILE)
