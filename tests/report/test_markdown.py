"""Specification of the Markdown report (made from the statistics files only)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from filterdb.report.markdown import (
    REPLICATION_COLUMNS,
    iid_normal_entropy,
    load_reference,
    replication_table,
    shift_extremes,
    write_report,
)
from filterdb.stats.compute import compute_stats
from filterdb.stats.degeneracy import randomness_threshold
from tests.conftest_stats import make_dataset, simple_zoo, write_dataset


def test_report_lists_degenerated_models_shift_extremes_and_pca_ratios(tmp_path):
    src = write_dataset(make_dataset(simple_zoo(5, 5), seed=4), tmp_path / "f.nc", chunk=500)
    with xr.open_dataset(src) as ds:
        deg, sh = compute_stats(ds)
    deg.to_netcdf(tmp_path / "d.nc")
    sh.to_netcdf(tmp_path / "s.nc")
    out = write_report(tmp_path / "d.nc", tmp_path / "s.nc", tmp_path / "report" / "r.md")
    text = out.read_text()
    assert "## Degeneracy" in text and "## Distribution shifts" in text
    worst = int(np.nanargmax(deg["share_layers_degenerated"].values))
    assert str(deg["model"].values[worst]) in text.split("### Most degenerated models")[1]
    assert f"{sh['explained_variance_ratio'].values[0]:.3f}" in text
    big, small = shift_extremes(sh, "task")
    assert big[0][2] >= small[0][2]
    assert f"{big[0][2]:.3f}" in text.split("### task")[1]
    for axis in sh.attrs["axes"].split():
        assert f"### {axis}" in text


def test_shift_extremes_skip_empty_groups():
    sh = xr.Dataset(
        {"shift_x": (("x", "x_b"), np.array([[0, 1.0, np.nan], [1.0, 0, np.nan],
                                             [np.nan] * 3]))},
        coords={"x": ["a", "b", "c"], "x_b": ["a", "b", "c"]},
    )
    big, small = shift_extremes(sh, "x")
    assert big == [("a", "b", 1.0)] and small == [("a", "b", 1.0)]


# ---- replication table -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stats_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    src = write_dataset(make_dataset(simple_zoo(6, 4), seed=4), d / "f.nc", chunk=500)
    with xr.open_dataset(src) as ds:
        deg, sh = compute_stats(ds)
    deg.to_netcdf(d / "degeneracy.nc")
    sh.to_netcdf(d / "shifts.nc")
    return d, deg, sh


def test_reference_numbers_live_in_the_packaged_yaml():
    ref = load_reference()
    assert ref["explained_variance_ratio"] == [0.398, 0.183, 0.117, 0.0985, 0.0658, 0.0552,
                                               0.0301, 0.0282, 0.0237]
    assert ref["randomness_threshold"] == {9: 0.552, 64: 0.906, 576: 0.949}
    assert ref["iid_normal_entropy"][9] == 0.699 and ref["iid_normal_entropy"][576] == 0.950
    assert ref["pca_mean_per_tap"] == {"low": -0.045, "high": -0.03}
    assert ref["shift_task_offdiagonal"] == {"low": 0.01, "high": 2.0}


def test_replication_csv_has_study_values_ours_and_differences(stats_files):
    d, _, sh = stats_files
    write_report(d / "degeneracy.nc", d / "shifts.nc", d / "report.md")
    table = pd.read_csv(d / "replication.csv")
    assert list(table.columns) == REPLICATION_COLUMNS
    ref = load_reference()

    def rows(quantity):
        return table[table["quantity"] == quantity].reset_index(drop=True)

    eta = rows("explained_variance_ratio")
    np.testing.assert_allclose(eta["study"], ref["explained_variance_ratio"])
    np.testing.assert_allclose(eta["ours"], sh["explained_variance_ratio"].values, rtol=1e-9)
    np.testing.assert_allclose(eta["difference"], eta["ours"] - eta["study"], atol=1e-12)
    assert list(eta["key"]) == [f"v{i}" for i in range(1, 10)]
    assert set(eta["filters"]) == {"raw"} and set(eta["population"]) == {"trained"}
    # the mean per tap against the study's range: the distance outside it, 0 inside
    mean = rows("pca_mean")
    np.testing.assert_allclose(mean["ours"], sh["pca_mean"].values, rtol=1e-9)
    assert mean["study"].isna().all()
    assert (mean["study_low"] == -0.045).all() and (mean["study_high"] == -0.03).all()
    want = np.where(mean["ours"] > -0.03, mean["ours"] + 0.03,
                    np.where(mean["ours"] < -0.045, mean["ours"] + 0.045, 0.0))
    np.testing.assert_allclose(mean["difference"], want, atol=1e-12)
    th = rows("randomness_threshold")
    np.testing.assert_allclose(th["study"], [0.552, 0.906, 0.949])
    np.testing.assert_allclose(th["ours"], randomness_threshold(np.array([9, 64, 576])),
                               rtol=1e-9)
    assert (th["difference"].abs() < 1e-3).all() and set(th["filters"]) == {"none"}
    h = rows("iid_normal_entropy")
    assert list(h["key"]) == ["n=9", "n=64", "n=576", "n=4096"]
    np.testing.assert_allclose(h["difference"], h["ours"] - h["study"], atol=1e-12)
    assert (h["difference"].abs() < 0.01).all()  # the study's values, by simulation
    assert h["ours"].iloc[0] == pytest.approx(iid_normal_entropy(9)[0], abs=1e-9)  # seeded
    d_task = sh["shift_task"].values
    off = d_task[~np.eye(len(d_task), dtype=bool)]
    shift = rows("shift_task")
    assert list(shift["key"]) == ["min off-diagonal", "max off-diagonal"]
    np.testing.assert_allclose(shift["study"], [0.01, 2.0])
    np.testing.assert_allclose(shift["ours"], [np.nanmin(off), np.nanmax(off)], rtol=1e-9)
    np.testing.assert_allclose(shift["difference"], shift["ours"] - shift["study"], atol=1e-12)
    assert set(shift["sign_rule"]) == {"v-based"} and set(shift["population"]) == {"trained"}


def test_report_renders_replication_population_and_sign_rule(stats_files):
    d, _, sh = stats_files
    text = write_report(d / "degeneracy.nc", d / "shifts.nc", d / "report.md").read_text()
    assert "## Replication of the study's published numbers" in text
    assert "### What this release can and cannot show" in text
    assert f"{int(sh.attrs['n_filters_pca']):,} filters of {int(sh.attrs['n_models_pca'])} " \
           "models" in text
    assert "sign rule `v-based`" in text and "u-based" in text
    task_section = text.split("### task")[1].split("###")[0]
    assert "Population `trained` (PCA basis and range: `trained`), sign rule `v-based`" in \
        task_section
    trained_section = text.split("### trained")[1].split("###")[0]
    assert "Population `trained+random-init`" in trained_section
    assert "clipped into the end bins" in trained_section


def test_folded_statistics_hook_adds_rows_with_their_filters_value(stats_files, tmp_path):
    d, _, _ = stats_files
    write_report(d / "degeneracy.nc", d / "shifts.nc", tmp_path / "r.md",
                 folded=(d / "degeneracy.nc", d / "shifts.nc"))
    table = pd.read_csv(tmp_path / "replication.csv")
    raw, folded = table[table["filters"] == "raw"], table[table["filters"] == "folded"]
    assert len(raw) == len(folded) > 0
    np.testing.assert_array_equal(raw["ours"].values, folded["ours"].values)
    assert (table["quantity"] == "randomness_threshold").sum() == 3  # data-free rows once


def test_range_difference_is_zero_inside_and_the_distance_outside():
    sh = xr.Dataset(
        {"explained_variance_ratio": ("component", np.full(9, 1 / 9)),
         "pca_mean": ("tap", np.array([-0.04, -0.03, -0.045, -0.02, -0.05, 0, 0, 0, 0]))},
        attrs={"population": "all"},
    )
    table = replication_table(sh, include_reference_rows=False)
    mean = table[table["quantity"] == "pca_mean"]["difference"].to_numpy()
    np.testing.assert_allclose(mean[:5], [0, 0, 0, 0.01, -0.005], atol=1e-15)
    shift = table[table["quantity"] == "shift_task"]
    assert shift["ours"].isna().all() and shift["difference"].isna().all()
