"""The command line: real processes, exit codes, messages, and no partial outputs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import xarray as xr

from tests.conftest import MNIST_ENTRY, PNET_ENTRY, random_entry, write_params


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["filterdb", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("command", ["extract", "assemble", "validate", "info", "train"])
def test_every_command_has_help(command: str, tmp_path, cli_env) -> None:
    out = run([command, "--help"], tmp_path, cli_env)
    assert out.returncode == 0
    assert "usage: filterdb " + command in out.stdout


def test_extract_assemble_validate_info(tmp_path, cli_env) -> None:
    write_params(
        tmp_path / "params.yaml",
        {
            "mnist": MNIST_ENTRY,
            "pnet": PNET_ENTRY,
            "nox3": random_entry("convnext_atto", "convnext"),
        },
    )
    for model in ("mnist", "pnet", "nox3"):
        r = run(["extract", model], tmp_path, cli_env)
        assert r.returncode == 0, r.stderr
    assert "no 3x3 conv: kept with 0 layers" in r.stdout
    r = run(["assemble"], tmp_path, cli_env)
    assert r.returncode == 0, r.stderr
    r = run(["validate", "data/filters.nc"], tmp_path, cli_env)
    assert r.returncode == 0, r.stderr
    r = run(["info", "data/filters.nc"], tmp_path, cli_env)
    assert r.returncode == 0
    for model in ("mnist", "pnet", "nox3"):
        assert model in r.stdout
    assert "3 models, 6 layers with 3x3 convs, 10,974 filters" in r.stdout
    with xr.open_dataset(tmp_path / "data" / "filters.nc") as ds:
        assert list(ds["model"].values) == ["mnist", "pnet", "nox3"]


def _fails(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("filterdb: error:"), r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr


def test_bad_inputs_exit_2_with_a_message_and_leave_no_output(tmp_path, cli_env) -> None:
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00garbage")
    nan_net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    with torch.no_grad():
        nan_net[0].weight[1, 0, 0, 0] = float("nan")
    torch.save(nan_net.state_dict(), tmp_path / "nan.pt")
    meta = MNIST_ENTRY["meta"]
    zoo = {
        "missing": {"source": "checkpoint", "path": "nope.pt", "meta": meta},
        "corrupt": {"source": "checkpoint", "path": str(corrupt), "meta": meta},
        "unknown-arch": {"source": "timm", "arch": "resnet1888", "meta": meta},
        "nan": {"source": "checkpoint", "path": str(tmp_path / "nan.pt"), "meta": meta},
    }
    write_params(tmp_path / "params.yaml", zoo)
    _fails(
        run(["extract", "missing"], tmp_path, cli_env),
        "'missing'",
        "checkpoint not found",
        "nope.pt",
    )
    _fails(run(["extract", "corrupt"], tmp_path, cli_env), "'corrupt'", "cannot read checkpoint")
    _fails(
        run(["extract", "unknown-arch"], tmp_path, cli_env),
        "unknown timm architecture 'resnet1888'",
    )
    _fails(run(["extract", "nan"], tmp_path, cli_env), "model 'nan', layer '0'", "NaN or Inf")
    _fails(run(["extract", "not-in-zoo"], tmp_path, cli_env), "'not-in-zoo' is not in the zoo")
    _fails(run(["assemble"], tmp_path, cli_env), "missing shard(s)")
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.nc"))


def test_params_errors_exit_2(tmp_path, cli_env) -> None:
    bad_label = {**MNIST_ENTRY, "meta": {**MNIST_ENTRY["meta"], "visual_category": "handwritting"}}
    write_params(tmp_path / "params.yaml", {"m": bad_label})
    _fails(
        run(["extract", "m"], tmp_path, cli_env),
        "visual_category",
        "'handwritting'",
        "did you mean",
    )
    (tmp_path / "params.yaml").write_text(
        "zoo:\n  a: {source: timm, arch: resnet18}\n  a: {source: timm}\n"
    )
    _fails(run(["extract", "a"], tmp_path, cli_env), "duplicate key 'a'")
    write_params(tmp_path / "params.yaml", {"m": MNIST_ENTRY}, bogus={"x": 1})
    _fails(run(["extract", "m"], tmp_path, cli_env), "unknown top-level key(s) ['bogus']")


def test_validate_reports_a_broken_dataset(tmp_path, cli_env, tiny_dataset) -> None:
    import shutil

    import netCDF4

    broken = tmp_path / "broken.nc"
    shutil.copy(tiny_dataset, broken)
    with netCDF4.Dataset(broken, "a") as nc:
        nc.variables["in_channels"][0] = -3
        nc.variables["task"][1] = 99
    _fails(
        run(["validate", str(broken)], tmp_path, cli_env),
        "broken.nc",
        "in_channels",
        "-3",
        "task",
        "99",
    )
    _fails(run(["validate", str(tmp_path / "none.nc")], tmp_path, cli_env), "none.nc: no such file")
    (tmp_path / "text.nc").write_text("not netCDF")
    for command in ("validate", "info"):
        _fails(run([command, "text.nc"], tmp_path, cli_env), "text.nc: not a netCDF dataset")


def test_import_upstream_converts_and_reports(tmp_path, cli_env) -> None:
    from tests.zoo.test_upstream import write_upstream

    write_upstream(tmp_path / "dataset.h5")
    r = run(["import-upstream", "dataset.h5", "--out", "up.nc"], tmp_path, cli_env)
    assert r.returncode == 0, r.stderr
    assert "up.nc.import-report.json" in r.stdout
    assert run(["validate", "up.nc"], tmp_path, cli_env).returncode == 0
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    _fails(run(["import-upstream", "bad.h5", "--out", "bad.nc"], tmp_path, cli_env), "bad.h5")
    assert not (tmp_path / "bad.nc").exists()


def test_generated_timm_zoo_builds_offline_from_local_weights(tmp_path, cli_env) -> None:
    import timm
    from safetensors.torch import save_file

    names = ["mobilenetv3_small_050.lamb_in1k", "resnet10t.c3_in1k"]
    wdir = tmp_path / "weights"
    wdir.mkdir()
    for seed, name in enumerate(names[:1]):  # weights for the first only: the second is skipped
        torch.manual_seed(seed)
        donor = timm.create_model(name.split(".")[0])
        state = {k: v.contiguous() for k, v in donor.state_dict().items()}
        save_file(state, wdir / f"{name}.safetensors")
    env = {**cli_env, "HF_HUB_CACHE": str(tmp_path / "empty-hub"), "TORCH_HOME": str(tmp_path)}
    args = ["zoo", "timm", "--out", "zoo.yaml", "--weights-dir", str(wdir), "--only-available"]
    for name in names:
        args += ["--include", name]
    r = run(args, tmp_path, env)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "zoo.yaml").read_text()
    assert "resnet10t.c3_in1k" in text  # listed as skipped, in a comment
    r = run(["extract", names[0], "--params", "zoo.yaml"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    r = run(["assemble", "--params", "zoo.yaml"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    assert run(["validate", "data/filters.nc"], tmp_path, env).returncode == 0
    with xr.open_dataset(tmp_path / "data" / "filters.nc") as ds:
        import filterdb  # noqa: F401

        models = ds.filterdb.models()
        assert list(models.index) == [names[0]]
        assert models.loc[names[0], "training_dataset"] == "imagenet-1k"
        first = ds.filterdb.filters(model=names[0], layer=0)
        conv = donor.conv_stem.weight.detach().numpy().reshape(-1, 3, 3)
        assert first.tobytes() == conv.tobytes()  # the local file's weights, bit for bit
