"""A release's manifest: its file names, its known formats and keys, and its own fields.

:func:`read_manifest` reads ``manifest.json`` strictly (UTF-8 JSON, no duplicate keys, every
field of its type, artifact paths inside the folder) and raises one line naming the file and
the key; :func:`check_consistency` checks what a well-typed manifest must agree with itself on
(the params hash and the count sums).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from filterdb.release.report import ReleaseReport, show_name
from filterdb.release.versions import SEMVER, ReleaseError

__all__ = [
    "BOOKKEEPING",
    "CARD_FILE",
    "CHECKSUMS_FILE",
    "IGNORED",
    "KNOWN_FORMATS",
    "MANIFEST_FILE",
    "NOTES_FILE",
    "SEALED_FORMAT",
    "check_consistency",
    "is_int",
    "read_manifest",
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
#: what :func:`filterdb.release.publish.build_release` records when the root is not a git repository
_NO_GIT = "unknown"


def _error(message: str) -> Exception:
    return ReleaseError(message)


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


def is_int(x: Any) -> bool:
    """True for an ``int`` that is not a ``bool`` (JSON's integers)."""
    return isinstance(x, int) and not isinstance(x, bool)


def _is_count(x: Any) -> bool:
    return is_int(x) and x >= 0


def _str_matching(x: Any, pattern: re.Pattern[str]) -> bool:
    return isinstance(x, str) and pattern.fullmatch(x) is not None


def _field_problems(folder: Path, m: Any) -> list[str]:
    """Every missing key and wrongly typed field of a parsed manifest, as short phrases."""
    if not isinstance(m, dict):
        return [f"expected a JSON object, got {type(m).__name__}"]
    fmt = m.get("manifest_format")
    if not (is_int(fmt) and fmt in KNOWN_FORMATS):
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
        out.append(f"version {version!r} does not match the folder {show_name(folder.name)!r}")
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


def check_consistency(folder: Path, m: Mapping[str, Any], report: ReleaseReport) -> None:
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
