"""Specification of the Markdown report (made from the statistics files only)."""

from __future__ import annotations

import numpy as np
import xarray as xr
from conftest_stats import make_dataset, simple_zoo, write_dataset

from filterdb.report import shift_extremes, write_report
from filterdb.shifts import compute_stats


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
