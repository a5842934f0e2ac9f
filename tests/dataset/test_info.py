"""``filterdb info`` on a damaged dataset: one line naming the file and what is wrong, exit 2."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import xarray as xr

from tests.conftest_stats import LayerSpec, ModelSpec, make_dataset, write_dataset


def _base() -> xr.Dataset:
    return make_dataset(
        [ModelSpec("a", [LayerSpec(4, 2), LayerSpec(4, 4)]), ModelSpec("b", [LayerSpec(2, 2)])]
    )


def _set(name: str, index: int, value: int) -> Callable[[xr.Dataset], xr.Dataset]:
    def edit(ds: xr.Dataset) -> xr.Dataset:
        ds[name].values[index] = value
        return ds

    return edit


def _drop_attr(name: str, attr: str) -> Callable[[xr.Dataset], xr.Dataset]:
    def edit(ds: xr.Dataset) -> xr.Dataset:
        del ds[name].attrs[attr]
        return ds

    return edit


def _info(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["filterdb", "info", str(path)], env=env, capture_output=True, text=True)


def test_info_summarises_an_intact_dataset(tmp_path, cli_env) -> None:
    r = _info(write_dataset(_base(), tmp_path / "ok.nc"), cli_env)
    assert r.returncode == 0, r.stderr
    assert "2 models, 3 layers with 3x3 convs" in r.stdout


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("task", 0, 7), "variable 'task' has code 7, not among its flag_values [0]"),
        (_set("depth_method", 2, 99), "variable 'depth_method' has code 99"),
        (_drop_attr("family", "flag_values"), "variable 'family' has no flag_values attribute"),
        (_set("layer_model", 1, 9), "layer_model of layer 1 is 9, outside the 2 models (0..1)"),
        (_set("layer_model", 2, -1), "layer_model of layer 2 is -1, outside the 2 models"),
        (lambda ds: ds.drop_vars("n_parameters"), "variable 'n_parameters' is missing"),
        (lambda ds: ds.drop_vars("conv_depth"), "variable 'conv_depth' is missing"),
        (lambda ds: ds.drop_vars("depth_method"), "variable 'depth_method' is missing"),
    ],
    ids=[
        "flag-code",
        "layer-flag-code",
        "no-flag-values",
        "layer-model-too-big",
        "layer-model-negative",
        "missing-model-var",
        "missing-layer-var",
        "missing-coded-var",
    ],
)
def test_a_damaged_dataset_is_a_one_line_error_naming_file_and_value(
    tmp_path, cli_env, edit, message
) -> None:
    path = write_dataset(edit(_base().copy(deep=True)), tmp_path / "bad.nc")
    r = _info(path, cli_env)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr.startswith(f"filterdb: error: {path}: {message}")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
