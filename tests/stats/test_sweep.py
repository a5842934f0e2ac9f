"""filterdb.stats.sweep on a small synthetic degeneracy dataset built with xarray."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from filterdb.stats import sweep
from filterdb.stats.degeneracy import layer_stats

MODELS = ["w2-n4000", "w8-n4000", "w4-n500", "other-arch", "random", "ae", "w4-n1000-half"]


def coded(values: list[str]) -> xr.Variable:
    """A categorical model variable stored as int16 codes, as in the dataset."""
    meanings = sorted(set(values))
    codes = np.array([meanings.index(v) for v in values], np.int16)
    return xr.Variable(
        "model",
        codes,
        {
            "flag_values": np.arange(len(meanings), dtype=np.int16),
            "flag_meanings": " ".join(meanings),
        },
    )


# (model index, H/TH, random_like, degenerated) per layer, in depth order
LAYERS = [
    (0, 0.0, 1, 1), (0, 1.3, 1, 1), (0, 0.96, 0, 0), (0, 0.99, 1, 1),  # w2-n4000
    (1, 1.05, 1, 1), (1, 0.7, 0, 0), (1, 0.8, 0, 0), (1, 0.97, 0, 0),  # w8-n4000
    (2, 1.4, 1, 1), (2, 0.6, 0, 0), (2, 0.9, 0, 0), (2, 0.96, 0, 0),  # w4-n500
    (3, 1.0, 1, 1), (3, 1.0, 1, 1),  # other-arch: alone in its group
    (4, 1.01, 1, 1), (4, 1.0, 1, 1), (4, 1.0, 1, 1),  # random-init
    (5, 0.5, 0, 1),  # ae: sparse-collapsed, not random-like
    (6, 1.0, 1, 1), (6, math.nan, -1, -1),  # same group as the sweep, one undefined layer
]  # fmt: skip


@pytest.fixture
def stats() -> xr.Dataset:
    lm, hth, rnd, deg = (np.array(c) for c in zip(*LAYERS, strict=True))
    return xr.Dataset(
        {
            "entropy_norm": ("layer", hth.astype(np.float64)),
            "random_like": ("layer", rnd.astype(np.int8)),
            "degenerated": ("layer", deg.astype(np.int8)),
            "n_filters": ("layer", np.full(len(lm), 64, np.int64)),
            "architecture": coded(
                ["resnet9", "resnet9", "resnet9", "vgg", "resnet18", "conv-ae", "resnet9"]
            ),
            "training_dataset": coded(
                [
                    "mnist-5k",
                    "mnist-5k",
                    "mnist-500",
                    "mnist-5k",
                    "none",
                    "skimage-natural",
                    "mnist-5k",
                ]
            ),
        },
        coords={"model": MODELS, "layer_model": ("layer", lm.astype(np.int32))},
    )


@pytest.fixture
def models() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "architecture": ["resnet9", "resnet9", "resnet9", "vgg", "resnet18", "conv-ae",
                             "resnet9"],
            "training_dataset": ["mnist-5k", "mnist-5k", "mnist-500", "mnist-5k", "none",
                                 "skimage-natural", "mnist-5k"],
            "training": ["normal"] * 4 + ["random-init", "normal", "normal"],
            "n_parameters": [6736, 103810, 26278, 72666, 11_689_512, 116675, 26278],
            "n_train_samples": [4000, 4000, 500, 4000, 0, 4397, 1000],
            "accuracy": [0.98, 0.985, 0.942, 0.95, math.nan, math.nan, 0.965],
        },
        index=pd.Index(MODELS, name="model"),
    )  # fmt: skip


TRAINED = {
    "w2-n4000": {"arch": "resnet9", "dataset": "mnist-5k", "width": 2},
    "w8-n4000": {"arch": "resnet9", "dataset": "mnist-5k", "width": 8},
    "w4-n500": {"arch": "resnet9", "dataset": "mnist-5k", "width": 4, "n_train": 500},
    "w4-n1000-half": {"arch": "resnet9", "dataset": "mnist-5k", "width": 4, "n_train": 1000},
    "ae": {"arch": "conv-ae", "dataset": "natural-patches"},
}


def test_sweep_rows_are_one_architecture_on_one_dataset_family_sorted_by_params_per_sample(
    stats, models
):
    table = sweep.sweep_table(stats, models, TRAINED)
    assert list(table.columns) == list(sweep.SWEEP_COLUMNS)
    assert table["model"].tolist() == ["w2-n4000", "w8-n4000", "w4-n1000-half", "w4-n500"]
    np.testing.assert_allclose(
        table["params_per_sample"], [6736 / 4000, 103810 / 4000, 26278 / 1000, 26278 / 500]
    )
    assert table["width"].tolist() == [2.0, 8.0, 4.0, 4.0]
    assert table["n_train_samples"].tolist() == [4000.0, 4000.0, 1000.0, 500.0]
    assert table["accuracy"].tolist() == [0.98, 0.985, 0.965, 0.942]


def test_sweep_outcomes_per_model(stats, models):
    table = sweep.sweep_table(stats, models).set_index("model")
    w2 = table.loc["w2-n4000"]
    assert w2["share_degenerated"] == pytest.approx(0.75)
    assert w2["mean_h_th"] == pytest.approx((0.0 + 1.3 + 0.96 + 0.99) / 4)
    assert (w2["h_th_first"], w2["h_th_last"]) == (0.0, 0.99)
    assert not w2["all_random_like"]
    half = table.loc["w4-n1000-half"]  # one layer undefined: shares over defined layers only
    assert half["share_degenerated"] == 1.0 and half["mean_h_th"] == 1.0
    assert half["all_random_like"] is pd.NA and math.isnan(half["h_th_last"])
    assert math.isnan(table.loc["w2-n4000", "width"])  # no table column, no trained section
    assert w2["mean_h_th_fw"] == pytest.approx(w2["mean_h_th"])  # 64 filters in every layer


def test_filter_weighted_mean_weights_layers_by_their_filters(stats, models):
    nf = stats["n_filters"].values.copy()
    nf[:4] = [2, 8, 16, 256]  # the w2 model: tiny first layers, wide last one
    stats["n_filters"] = ("layer", nf)
    row = sweep.sweep_table(stats, models).set_index("model").loc["w2-n4000"]
    expected = (2 * 0.0 + 8 * 1.3 + 16 * 0.96 + 256 * 0.99) / (2 + 8 + 16 + 256)
    assert row["mean_h_th_fw"] == pytest.approx(expected)
    assert math.isnan(sweep.model_degeneracy(stats.drop_vars("n_filters"))["mean_h_th_fw"].iloc[0])


def test_models_csv_layout_and_min_models(stats, models):
    csv_like = models.reset_index()  # a release's models.csv has a 'model' column
    by_column = sweep.sweep_table(stats, csv_like)["model"].tolist()
    assert by_column == sweep.sweep_table(stats, models)["model"].tolist()
    assert len(sweep.sweep_table(stats, models, min_models=5)) == 0


def test_n_train_falls_back_to_the_trained_entry(stats, models):
    table = sweep.sweep_table(stats, models.drop(columns="n_train_samples"), TRAINED)
    # only entries with an explicit n_train are known without the column
    assert table["model"].tolist() == ["w4-n1000-half", "w4-n500"]


def test_no_sweep_gives_an_empty_table_with_the_columns(stats, models):
    table = sweep.sweep_table(stats, models.iloc[[3, 4, 5]])
    assert len(table) == 0 and list(table.columns) == list(sweep.SWEEP_COLUMNS)
    assert sweep.sweep_markdown(table)[0].startswith("No sweep models")


def test_all_random_like_marks_any_model(stats):
    marks = sweep.all_random_like(stats)
    assert marks.index.tolist() == MODELS
    assert marks.tolist() == [False, False, False, True, True, False, pd.NA]
    per_model = sweep.model_degeneracy(stats)
    assert per_model["all_random_like"].tolist() == marks.tolist()
    assert per_model.loc["ae", "share_degenerated"] == 1.0
    assert per_model["n_layers"].tolist() == [4, 4, 4, 2, 3, 1, 2]


def test_all_random_like_on_real_layer_statistics():
    rng = np.random.default_rng(0)
    rand = layer_stats(rng.normal(size=(64 * 16, 3, 3)).astype("f4"), 64, 16)
    scale = rng.normal(size=(64 * 16, 1, 1))  # one pattern at random amplitudes: low entropy
    smooth = scale * np.outer([1, 2, 1], [1, 2, 1]) + 0.01 * rng.normal(size=(64 * 16, 3, 3))
    smooth = smooth.astype("f4")
    struct = layer_stats(smooth, 64, 16)
    ds = xr.Dataset(
        {
            "random_like": ("layer", np.int8([rand["random_like"], struct["random_like"]])),
            "layer_model": ("layer", [0, 1]),
        },
        coords={"model": ["random", "trained"]},
    )
    assert sweep.all_random_like(ds).tolist() == [True, False]


def test_markdown_rows_and_mark(stats, models):
    table = sweep.sweep_table(stats, models, TRAINED)
    lines = sweep.sweep_markdown(table)
    assert len(lines) == 2 + len(table)
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "| w4-n500 | resnet9 | 4 | 26,278 | 500 | 52.6 | 94.2% | 25% |" in lines[-1]
    assert lines[-2].endswith("| - |")  # undefined all_random_like


def test_trend_and_plot(stats, models, tmp_path):
    table = sweep.sweep_table(stats, models, TRAINED)
    trend = sweep.sweep_trend(table)
    assert set(trend) == {
        "share_degenerated",
        "mean_h_th",
        "mean_h_th_fw",
        "h_th_first",
        "h_th_last",
    }
    assert -1.0 <= trend["share_degenerated"] <= 1.0
    png = sweep.plot_sweep(table, tmp_path / "plots" / "sweep.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = sweep.plot_sweep(table.iloc[:0], tmp_path / "empty.png")
    assert empty.stat().st_size > 0


@pytest.mark.parametrize(
    ("name", "family"),
    [("mnist-5k", "mnist"), ("mnist-500", "mnist"), ("mnist", "mnist"), ("cifar-100", "cifar"),
     ("lfw-subset", "lfw-subset"), ("instagram-3.6b", "instagram-3.6b")],
)  # fmt: skip
def test_dataset_family_strips_a_trailing_size(name, family):
    assert sweep.dataset_family(name) == family


def test_report_sections_read_everything_from_the_degeneracy_file(stats, models):
    """The report's sweep, random-like and licence sections need only stats/degeneracy.nc."""
    from filterdb.report.markdown import model_table, render_licences, render_sweep

    deg = stats.copy()
    for col in ("n_parameters", "n_train_samples", "accuracy"):
        deg[col] = ("model", models[col].to_numpy(np.float64))
    deg["n_filters_3x3"] = ("model", np.array([256, 256, 256, 128, 192, 64, 128]))
    deg["training"] = coded(list(models["training"]))
    deg["license"] = coded(["CC-BY-4.0"] * 4 + ["none", "CC-BY-4.0", "CC-BY-4.0"])
    table = model_table(deg)
    assert list(table["architecture"]) == list(models["architecture"])  # flags decoded
    lines = "\n".join(render_sweep(deg, TRAINED))
    for m in ("w2-n4000", "w8-n4000", "w4-n500"):
        assert f"| {m} |" in lines
    # independently: the models whose every layer in LAYERS has random_like == 1
    expect = sorted(
        MODELS[i] for i in range(len(MODELS))
        if [r for m, _, r, _ in LAYERS if m == i] and all(r == 1 for m, _, r, _ in LAYERS if m == i)
    )
    assert expect  # the fixture has such models (e.g. the random-init one)
    assert f"{len(expect)} of {len(MODELS)} models" in lines and ", ".join(expect) in lines
    lic = render_licences(deg)
    assert "| CC-BY-4.0 | 6 | 1088 |" in lic and "| none | 1 | 192 |" in lic
