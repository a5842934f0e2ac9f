"""Optional extras: a missing package is named with the extra that installs it, in one line."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from filterdb import optional
from filterdb.cli import main
from filterdb.errors import FilterDBError
from filterdb.optional import EXTRAS, MissingExtraError, is_available, missing_extra, require

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


def test_require_returns_the_module() -> None:
    assert require("json").dumps([1]) == "[1]"


def test_a_missing_package_names_its_extra_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(MissingExtraError) as info:
        require("torch", purpose="filterdb extract")
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        "filterdb extract needs the optional package 'torch', which is not installed: "
        "pip install 'filterdb[build]'"
    )
    assert isinstance(info.value, FilterDBError) and isinstance(info.value, ImportError)


def test_an_explicit_extra_wins_over_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError, match=r"filterdb\[build\]"):
        require("matplotlib", extra="build")
    with pytest.raises(MissingExtraError, match=r"filterdb\[plots\]"):
        require("matplotlib")


def test_missing_extra_maps_import_errors_of_optional_packages_only() -> None:
    torch_missing = ModuleNotFoundError("No module named 'torch'", name="torch")
    error = missing_extra(torch_missing, purpose="filterdb train")
    assert isinstance(error, MissingExtraError) and error.__cause__ is torch_missing
    assert str(error).endswith("pip install 'filterdb[build]'")
    dvc_missing = ModuleNotFoundError("No module named 'dvc.api'", name="dvc.api")
    assert str(missing_extra(dvc_missing)).endswith("pip install 'filterdb[dvc]'")
    # a module that is no optional dependency is a bug, not a missing extra
    assert missing_extra(ModuleNotFoundError("x", name="filterdb.nope")) is None
    assert missing_extra(ModuleNotFoundError("x", name="numpy")) is None


def test_is_available_does_not_import() -> None:
    assert is_available("json")
    assert not is_available("no_such_module_xyz")
    assert not is_available("no_such_module_xyz.sub")


def test_every_extra_named_in_the_table_exists_in_pyproject() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(EXTRAS.values()) <= set(extras)
    # [all] installs every extra but the test tools
    (everything,) = extras["all"]
    assert everything.startswith("filterdb[") and everything.endswith("]")
    assert set(everything[len("filterdb[") : -1].split(",")) == set(extras) - {"all", "test"}


def test_base_dependencies_hold_no_build_stack() -> None:
    base = " ".join(PYPROJECT["project"]["dependencies"]).lower()
    for heavy in ("torch", "timm", "dvc", "onnx", "mlxtend", "scikit-image", "dask", "matplotlib"):
        assert heavy not in base, heavy
    build = " ".join(PYPROJECT["project"]["optional-dependencies"]["build"])
    for package in ("torch", "torchvision", "timm", "safetensors", "onnx", "mlxtend"):
        assert package in build


def test_open_release_without_dvc_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from filterdb.release.publish import open_release

    monkeypatch.setitem(sys.modules, "dvc.api", None)
    with pytest.raises(MissingExtraError, match=r"open_release needs .*filterdb\[dvc\]"):
        open_release("0.0.1")


def test_cli_prints_a_missing_extra_as_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # any command whose code calls require(): the error is a FilterDBError
    def validate_release(*args: object, **kwargs: object) -> None:
        optional.require("no_such_module_xyz", extra="croissant", purpose="the check")

    monkeypatch.setattr("filterdb.release.check.validate_release", validate_release)
    assert main(["validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "filterdb: error: the check needs the optional package 'no_such_module_xyz', which is "
        "not installed: pip install 'filterdb[croissant]'\n"
    )


def test_cli_names_the_extra_when_a_command_imports_a_missing_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `filterdb plots` imports matplotlib at the top of filterdb.report.plots: as on a base install
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "filterdb.report.plots", raising=False)
    assert main(["plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("filterdb: error: filterdb plots needs the optional package 'matplotlib'")
    assert "pip install 'filterdb[plots]'" in err and len(err.splitlines()) == 1


def test_cli_lets_a_missing_module_that_is_no_extra_raise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'filterdb.nope'", name="filterdb.nope")

    monkeypatch.setattr("filterdb.release.check.validate_release", broken)
    with pytest.raises(ModuleNotFoundError):  # a bug, not a missing extra: traceback
        main(["validate", "releases/v0.2.0"])
