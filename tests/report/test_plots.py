"""Specification of the figures and the DVC-plots table (made from the statistics files only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from filterdb.report.plots import DEPTH_CSV, DEPTH_CSV_COLUMNS, make_plots, sort_by_column_mean
from filterdb.stats.compute import compute_stats
from tests.conftest_stats import make_dataset, simple_zoo, write_dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stats_files(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("plots")
    src = write_dataset(make_dataset(simple_zoo(5, 5), seed=2), d / "filters.nc", chunk=400)
    with xr.open_dataset(src) as ds:
        deg, sh = compute_stats(ds)
    deg.to_netcdf(d / "degeneracy.nc")
    sh.to_netcdf(d / "shifts.nc")
    return d / "degeneracy.nc", d / "shifts.nc"


def test_make_plots_writes_every_figure_as_png(stats_files, tmp_path):
    deg_nc, sh_nc = stats_files
    files = make_plots(deg_nc, sh_nc, tmp_path / "plots")
    names = {f.name for f in files}
    with xr.open_dataset(sh_nc) as sh:
        axes = sh.attrs["axes"].split()
    expected = {f"shift_{a}.png" for a in axes} | {f"coefficients_{a}.png" for a in axes}
    expected |= {"pca_components.png", "degeneracy_by_depth.png", DEPTH_CSV}
    assert names == expected
    for f in files:
        assert f.exists() and f.stat().st_size > 0
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == PNG_MAGIC
    assert not list((tmp_path / "plots").glob("*.tmp"))


def test_depth_csv_has_one_row_per_layer_with_documented_columns(stats_files, tmp_path):
    deg_nc, _ = stats_files
    make_plots(deg_nc, None, tmp_path)
    table = pd.read_csv(tmp_path / DEPTH_CSV)
    assert tuple(table.columns) == DEPTH_CSV_COLUMNS
    with xr.open_dataset(deg_nc) as deg:
        assert len(table) == deg.sizes["layer"]
        np.testing.assert_allclose(table["entropy_norm"], deg["entropy_norm"].values, rtol=1e-5)
        fam = deg["family"].attrs["flag_meanings"].split()
        expect = [fam[deg["family"].values[m]] for m in deg["layer_model"].values]
    assert table["family"].tolist() == expect


def test_heatmap_order_is_ascending_column_mean_with_empty_groups_last():
    d = np.array([[0, 3, np.nan, 1], [3, 0, np.nan, 2], [np.nan] * 4, [1, 2, np.nan, 0]])
    assert sort_by_column_mean(d).tolist() == [3, 0, 1, 2]
