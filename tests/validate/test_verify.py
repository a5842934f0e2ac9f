"""Release spot checks: stored statistics recompute independently to the stored values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from filterdb.stats.write import write_degeneracy, write_shifts, write_stats
from filterdb.validate.verify import (
    recheck_degeneracy,
    recheck_shifts,
    sample_groups,
    sample_layers,
)
from tests.conftest_stats import LayerSpec, ModelSpec, make_dataset, simple_zoo, write_dataset

ALL = 10**6  # more layers / groups than any test dataset has: check everything


def zoo() -> list[ModelSpec]:
    """simple_zoo plus edge cases: zero, constant, single-output-channel and depthwise layers."""
    models = simple_zoo(n_models=4, layers_per_model=4, width=8)
    edge = [
        LayerSpec(4, 4, 1, "zero"),
        LayerSpec(4, 2, 1, "constant"),
        LayerSpec(1, 6, 1, "normal"),
        LayerSpec(12, 12, 12, "structured"),
        LayerSpec(6, 6, 1, "lowrank"),
        LayerSpec(8, 8, 1, "sparse"),
    ]
    models.append(ModelSpec("edge", edge, {"task": "segmentation", "family": "edge"}))
    return models


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("verify")
    data = write_dataset(make_dataset(zoo(), seed=3), d / "filters.nc", chunk=100)
    write_stats(data, d / "degeneracy.nc", None, d / "shifts.nc", {"chunk_size": 64})
    other = write_dataset(
        make_dataset(simple_zoo(n_models=3, layers_per_model=3), seed=5), d / "other.nc"
    )
    write_degeneracy(other, d / "other_degeneracy.nc", None)
    write_shifts(other, d / "other_shifts.nc")
    reseeded = write_dataset(make_dataset(zoo(), seed=4), d / "reseeded.nc", chunk=100)
    return {"data": data, "other": other, "reseeded": reseeded, "dir": d}


def tampered(src: Path, dst: Path, edit) -> Path:
    with xr.open_dataset(src) as ds:
        out = ds.load()
    edit(out)
    out.to_netcdf(dst)
    return dst


def test_stored_statistics_recompute_for_every_layer_and_group(files):
    d = files["dir"]
    assert recheck_degeneracy(files["data"], d / "degeneracy.nc", n_layers=ALL) == []
    assert recheck_shifts(files["data"], d / "shifts.nc", n_groups=ALL) == []


def test_default_samples_agree(files):
    d = files["dir"]
    assert recheck_degeneracy(files["data"], d / "degeneracy.nc") == []
    assert recheck_shifts(files["data"], d / "shifts.nc") == []


def test_separately_written_statistics_also_agree(files, tmp_path):
    write_degeneracy(files["data"], tmp_path / "deg.nc", None)
    write_shifts(files["data"], tmp_path / "sh.nc", {"n_components": 5, "bins": 17})
    assert recheck_degeneracy(files["data"], tmp_path / "deg.nc", n_layers=ALL) == []
    assert recheck_shifts(files["data"], tmp_path / "sh.nc", n_groups=ALL) == []


@pytest.mark.parametrize(
    "params", [{"population": "all"}, {"sign_rule": "u-based"}, {"population": "all",
                                                                 "sign_rule": "u-based"}]
)
def test_every_population_and_sign_rule_recomputes(files, tmp_path, params):
    write_shifts(files["data"], tmp_path / "sh.nc", params)
    assert recheck_shifts(files["data"], tmp_path / "sh.nc", n_groups=ALL) == []


def test_random_init_outside_the_trained_range_is_checked_against_its_clipped_count(tmp_path):
    models = [ModelSpec(f"t{m}", [LayerSpec(8, 8)], {"training": "normal"}) for m in range(2)]
    models.append(ModelSpec("r", [LayerSpec(8, 8, 1, "normal")], {"training": "random-init"}))
    rng = np.random.default_rng(1)
    narrow = {li: (np.linspace(0.5, 1, 9) + 0.05 * rng.standard_normal((64, 9))) for li in (0, 1)}
    data = write_dataset(make_dataset(models, seed=1, weights=narrow), tmp_path / "f.nc")
    write_shifts(data, tmp_path / "sh.nc")
    with xr.open_dataset(tmp_path / "sh.nc") as st:
        assert int(st["n_coef_outside"].sum()) > 0
    assert recheck_shifts(data, tmp_path / "sh.nc", n_groups=ALL) == []

    def edit(ds):
        ds["n_coef_outside"].values[0, 0] += 3

    bad = tampered(tmp_path / "sh.nc", tmp_path / "bad.nc", edit)
    problems = recheck_shifts(data, bad, n_groups=ALL)
    assert any("n_coef_outside[component 0, below]" in p for p in problems)


def test_tampered_entropy_is_reported_with_layer_model_and_values(files, tmp_path):
    def edit(ds):
        ds["entropy"].values[:] += 0.01

    bad = tampered(files["dir"] / "degeneracy.nc", tmp_path / "deg.nc", edit)
    problems = recheck_degeneracy(files["data"], bad, n_layers=4, seed=1)
    with xr.open_dataset(files["data"]) as ds:
        counts = ds["layer_filter_count"].values
        names = ds["layer_name"].values
    sample = sample_layers(counts, 4, 1)
    # every sampled layer with a defined entropy is named, with its stored and recomputed value
    with xr.open_dataset(bad) as st:
        defined = [int(i) for i in sample if np.isfinite(st["entropy"].values[i])]
    entropy_lines = [p for p in problems if ": entropy stored " in p]
    assert len(entropy_lines) == len(defined) > 0
    for li, line in zip(defined, entropy_lines, strict=True):
        assert str(bad) in line and f"layer {li} " in line and repr(str(names[li])) in line
        assert "of model '" in line and "recomputed" in line


def test_one_tampered_layer_is_the_only_one_reported(files, tmp_path):
    li = 7

    def edit(ds):
        ds["orthogonality"].values[li] = 0.5
        ds["degenerated"].values[li] = 1 - ds["degenerated"].values[li]

    bad = tampered(files["dir"] / "degeneracy.nc", tmp_path / "deg.nc", edit)
    problems = recheck_degeneracy(files["data"], bad, n_layers=ALL)
    assert len(problems) == 2
    assert all(f"layer {li} " in p for p in problems)
    assert any(": orthogonality stored 0.5," in p for p in problems)
    assert any(": degenerated stored " in p for p in problems)


def test_nan_where_a_value_is_defined_is_reported(files, tmp_path):
    def edit(ds):
        ds["sparsity"].values[:] = np.nan

    bad = tampered(files["dir"] / "degeneracy.nc", tmp_path / "deg.nc", edit)
    problems = recheck_degeneracy(files["data"], bad, n_layers=ALL)
    assert problems and all(": sparsity stored nan, recomputed " in p for p in problems)


def test_misaligned_degeneracy_file_is_reported(files):
    problems = recheck_degeneracy(files["data"], files["dir"] / "other_degeneracy.nc")
    assert any("model ids differ" in p for p in problems)
    assert any("layers but" in p for p in problems)


def test_statistics_of_a_different_dataset_with_the_same_shape_are_reported(files):
    d = files["dir"]
    problems = recheck_degeneracy(files["reseeded"], d / "degeneracy.nc", n_layers=ALL)
    assert any(": entropy stored " in p for p in problems)
    problems = recheck_shifts(files["reseeded"], d / "shifts.nc", n_groups=ALL)
    assert any("n_filters_used" in p or "count_" in p for p in problems)


def test_misaligned_shifts_file_is_reported(files):
    problems = recheck_shifts(files["data"], files["dir"] / "other_shifts.nc")
    assert any("n_filters_used + n_filters_nonfinite" in p for p in problems)
    assert any("model ids differ" in p for p in problems)


def sampled(path: Path, n_groups: int = 3, seed: int = 0) -> list[tuple[str, int]]:
    with xr.open_dataset(path) as st:
        return sample_groups(st, n_groups, seed)


def test_tampered_histogram_bin_is_reported_with_axis_and_group(files, tmp_path):
    src = files["dir"] / "shifts.nc"
    axis, gi = sampled(src)[-1]

    def edit(ds):
        counts = ds[f"count_{axis}"].values
        b = int(np.argmax(counts[gi, 2]))
        counts[gi, 2, b] -= 1
        counts[gi, 2, (b + 1) % counts.shape[-1]] += 1

    bad = tampered(src, tmp_path / "sh.nc", edit)
    problems = recheck_shifts(files["data"], bad)
    with xr.open_dataset(src) as st:
        label = str(st[axis].values[gi])
    lines = [p for p in problems if f"count_{axis}[component 2, bin" in p]
    assert len(lines) == 1
    assert f"axis {axis!r} group {label!r}" in lines[0] and str(bad) in lines[0]
    assert "stored" in lines[0] and "recomputed" in lines[0]


def test_tampered_probability_and_shift_entries_are_reported(files, tmp_path):
    src = files["dir"] / "shifts.nc"
    axis, gi = sampled(src)[0]

    def edit(ds):
        ds[f"prob_{axis}"].values[gi, 0, 0] *= 1.5
        d = ds[f"shift_{axis}"].values
        other = next(b for b in range(d.shape[0]) if b != gi and np.isfinite(d[gi, b]))
        d[gi, other] += 0.1
        d[other, gi] += 0.1

    bad = tampered(src, tmp_path / "sh.nc", edit)
    problems = recheck_shifts(files["data"], bad)
    assert any(f"prob_{axis}[component 0, bin 0]" in p for p in problems)
    shift_lines = [p for p in problems if f": shift_{axis} stored " in p]
    # the tampered probability changes the recomputed D of the whole row; the tampered D differs
    assert shift_lines and all(f"axis {axis!r}" in p for p in shift_lines)


def test_one_tampered_d_entry_is_reported(files, tmp_path):
    src = files["dir"] / "shifts.nc"

    def edit(ds):
        ds["shift_family"].values[0, 1] *= 1.01

    bad = tampered(src, tmp_path / "sh.nc", edit)
    problems = recheck_shifts(files["data"], bad, n_groups=ALL)
    assert len(problems) == 2  # found from both groups' rows
    assert all(": shift_family stored " in p for p in problems)


def test_eta_and_basis_are_checked(files, tmp_path):
    def edit(ds):
        ds["explained_variance_ratio"].values[0] += 0.05
        ds["pca_components"].values[1] *= 1.1

    bad = tampered(files["dir"] / "shifts.nc", tmp_path / "sh.nc", edit)
    problems = recheck_shifts(files["data"], bad)
    assert any("explained_variance_ratio sums to" in p for p in problems)
    assert any("pca_components not orthonormal" in p for p in problems)


def test_samples_are_deterministic_and_include_extremes(files):
    counts = np.array([5, 90, 3, 40, 40, 7, 12])
    s = sample_layers(counts, 4, seed=2)
    assert s.tolist() == sample_layers(counts, 4, seed=2).tolist()
    assert {1, 2} <= set(s.tolist()) and len(s) == 4
    src = files["dir"] / "shifts.nc"
    groups = sampled(src, 4)
    assert groups == sampled(src, 4)
    with xr.open_dataset(src) as st:
        sizes = {
            (a, i): int(st[f"n_filters_{a}"].values[i])
            for a in st.attrs["axes"].split()
            for i in range(st.sizes[a])
        }
    assert all(sizes[g] > 0 for g in groups)
    assert min(v for v in sizes.values() if v > 0) in [sizes[g] for g in groups]


def test_verify_imports_neither_torch_nor_extraction_code():
    code = (
        "import sys, filterdb.validate.verify; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith("
        "('filterdb.extract.filters', 'filterdb.zoo.entries', 'filterdb.sources'))]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
