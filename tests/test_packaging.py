"""The wheel: schemas are package data, and a base install (no extras) reads and validates a
release from outside the repository without the build stack (no torch, timm, dvc, dask)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import filterdb
from filterdb.validate import schema_files
from tests.small_release import build_small_release

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILES = ("dataset.yaml", "layers.yaml", "models.yaml", "vocabularies.yaml")
#: what the base install must not bring (each belongs to an extra)
NOT_IN_BASE = (
    "torch", "torchvision", "timm", "dvc", "dask", "distributed", "onnx", "mlxtend",
    "scikit-image", "scikit-learn", "matplotlib", "mlcroissant", "zarr", "tables",
)


def test_schemas_are_package_data_read_through_importlib_resources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(schema_files.SCHEMA_DIR_ENV, raising=False)
    package = resources.files("filterdb.validate").joinpath("schemas")
    for name in SCHEMA_FILES:
        assert package.joinpath(name).is_file(), name
    assert str(schema_files.schema_dir()) == str(package)
    package_dir = Path(filterdb.__file__).parent
    assert Path(str(schema_files.schema_dir())).parent == package_dir / "validate"
    assert not (REPO / "schema").exists()  # moved into the package, not copied


# ------------------------------------------------------------------ the wheel in a fresh venv


def _env() -> dict[str, str]:
    """The environment without this venv or the repository on any path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop(schema_files.SCHEMA_DIR_ENV, None)
    return env


def _run(args: list[str | Path], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True
    )
    if check:
        assert r.returncode == 0, f"{args}:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv (no system site-packages) with the wheel and its base dependencies only."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"  # build from a copy: building in place would write build/ into the repo
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copyfile(REPO / name, src / name)
    shutil.copytree(
        REPO / "filterdb", src / "filterdb", ignore=shutil.ignore_patterns("__pycache__")
    )
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", src], work)
    (wheel,) = (work / "dist").glob("filterdb-*.whl")
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], work)
    # this venv's pip installs into the new one: the wheel plus what its metadata requires
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
          wheel], work)
    return venv


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:
    """A folder outside the repository holding ``releases/v0.0.1``."""
    root = tmp_path_factory.mktemp("outside")
    build_small_release(root, tiny_dataset)
    return root


slow = pytest.mark.slow


@slow
def test_base_install_has_no_build_stack_and_ships_schemas_and_licence(base_venv: Path) -> None:
    r = _run([sys.executable, "-m", "pip", "--python", base_venv / "bin" / "python", "list",
              "--format=json"], base_venv)
    installed = {p["name"].lower() for p in json.loads(r.stdout)}
    assert {"filterdb", "numpy", "pandas", "xarray", "netcdf4", "pandera", "pyyaml"} <= installed
    assert not installed & set(NOT_IN_BASE)
    site = next((base_venv / "lib").glob("python3*/site-packages"))
    for name in SCHEMA_FILES:
        assert (site / "filterdb" / "validate" / "schemas" / name).is_file(), name
    assert (site / "filterdb" / "zoo" / "labels.yaml").is_file()  # the zoo's label table
    script = "from filterdb.zoo import labels; print(labels.load_label_table()['version'])"
    assert _run([base_venv / "bin" / "python", "-c", script], base_venv).stdout.strip() == "1"
    assert (site / f"filterdb-{filterdb.__version__}.dist-info" / "licenses" / "LICENSE").is_file()


@slow
def test_base_install_validates_a_release_from_outside_the_repository(
    base_venv: Path, outside: Path
) -> None:
    filterdb_cli = base_venv / "bin" / "filterdb"
    r = _run([filterdb_cli, "validate", "releases/v0.0.1"], outside)
    assert r.stdout.startswith("releases/v0.0.1: valid"), r.stdout
    assert "FAIL" not in r.stdout
    assert "ok   filters.nc, models.csv and layers.csv pass the schemas" in r.stdout
    assert "ok   statistics recomputed on a sample of layers and groups" in r.stdout
    # croissant.json is checked against the manifest; its mlcroissant check needs the extra
    assert "ok   croissant.json lists every artifact with the manifest's sha256" in r.stdout
    assert "mlcroissant is not installed (pip install 'filterdb[croissant]')" in r.stdout

    r = _run([filterdb_cli, "validate", "releases/v0.0.1/filters.nc"], outside)
    assert r.stdout.strip() == "releases/v0.0.1/filters.nc: valid"
    r = _run([filterdb_cli, "info", "releases/v0.0.1/filters.nc"], outside)
    assert "mnist-cnn" in r.stdout


@slow
def test_base_install_reads_filters_through_the_accessor(base_venv: Path, outside: Path) -> None:
    script = (
        "import hashlib, sys, xarray as xr, filterdb\n"
        "assert 'torch' not in sys.modules\n"
        "ds = xr.open_dataset('releases/v0.0.1/filters.nc')\n"
        "w = ds.filterdb.filters(model='mnist-cnn', depth=(0.5, 1.0))\n"
        "print(filterdb.__file__)\n"
        "print(w.shape, w.dtype, hashlib.sha256(w.tobytes()).hexdigest())\n"
    )
    r = _run([base_venv / "bin" / "python", "-c", script], outside)
    where, got = r.stdout.strip().splitlines()
    assert Path(where).is_relative_to(base_venv)  # the installed wheel, not the repository
    with xr.open_dataset(outside / "releases" / "v0.0.1" / "filters.nc") as ds:
        w = np.asarray(ds.filterdb.filters(model="mnist-cnn", depth=(0.5, 1.0)))
    assert w.shape[0] > 0
    assert got == f"{w.shape} {w.dtype} {hashlib.sha256(w.tobytes()).hexdigest()}"


@slow
def test_base_install_names_the_extra_open_release_needs(base_venv: Path, outside: Path) -> None:
    r = _run(
        [base_venv / "bin" / "python", "-c", "import filterdb; filterdb.open_release('0.0.1')"],
        outside,
        check=False,
    )
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last == (
        "filterdb.optional.MissingExtraError: open_release needs the optional package "
        "'dvc', which is not installed: pip install 'filterdb[dvc]'"
    )
