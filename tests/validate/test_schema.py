"""Tests of the schema checks: tables, entry meta, the dataset layout, one lazy report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from filterdb.dataset.contract import CATEGORICAL, SCHEMA_VERSION
from filterdb.validate import schema_files
from filterdb.validate.entry_meta import validate_entry_meta
from filterdb.validate.failures import SchemaValidationError
from filterdb.validate.layout import validate_dataset
from filterdb.validate.schema_files import load_vocabularies, schema_version
from filterdb.validate.tables import validate_layers, validate_models

# --------------------------------------------------------------------------------------------
# fixtures: a tiny contract-conforming database (2 models, 3 layers, 18 filters)
# --------------------------------------------------------------------------------------------

MODEL_CODED = list(CATEGORICAL)


def make_models() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["tiny_a", "tiny_b"],
            "task": ["classification", "auto-encoder"],
            "visual_category": ["natural", "handwriting"],
            "training_dataset": ["imagenet-1k", "mnist"],
            "pretraining_dataset": ["none", "none"],
            "architecture": ["resnet18", "simple_cnn"],
            "family": ["resnet", "simple-cnn"],
            "source": ["timm", "trained"],
            "training": ["normal", "random-init"],
            "weight_precision": ["float32", "float16"],
            "bn_folded": ["no", "unknown"],
            "license": ["Apache-2.0", "none"],
            "weights": ["timm:resnet18", "random-init:seed=0"],
            "package": ["none", "pkg==1.0:m.onnx"],
            "upstream": ["none", "some upstream model"],
            "n_train_samples": [np.nan, 500.0],
            "n_parameters": [1000, 20],
            "accuracy": [0.7, np.nan],
            "n_filters_3x3": [16, 2],
            "total_filters": [20, 2],
            "share_3x3": [0.8, 1.0],
            "model_first_layer": [0, 2],
            "model_layer_count": [2, 1],
        }
    )


def make_layers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "layer": [0, 1, 2],
            "layer_model": [0, 0, 1],
            "model": ["tiny_a", "tiny_a", "tiny_b"],
            "layer_name": ["conv1", "layer1.0.conv2", "enc.0"],
            "layer_first_filter": [0, 12, 16],
            "layer_filter_count": [12, 4, 2],
            "conv_depth": [0, 1, 0],
            "conv_depth_norm": [0.0, 1.0, 0.0],
            "in_channels": [3, 4, 1],
            "out_channels": [4, 4, 2],
            "groups": [1, 4, 1],
            "stride_y": [2, 1, 1],
            "stride_x": [2, 1, 1],
            "dilation_y": [1, 1, 1],
            "dilation_x": [1, 1, 1],
            "depth_method": ["fx", "fx", "execution-order"],
        }
    )


def _coded(values: list[str], dim: str, dtype: str, name: str) -> xr.Variable:
    meanings = sorted(set(values))
    codes = np.array([meanings.index(v) for v in values], dtype=dtype)
    attrs = {
        "long_name": name.replace("_", " "),
        "flag_values": np.arange(len(meanings), dtype=dtype),
        "flag_meanings": " ".join(meanings),
    }
    return xr.Variable((dim,), codes, attrs)


def make_dataset() -> xr.Dataset:
    """The two tables above, laid out as in docs/data-layout.md."""
    models, layers = make_models(), make_layers()
    n = int(layers["layer_filter_count"].sum())
    rng = np.random.default_rng(0)
    data: dict[str, xr.Variable] = {
        "weight": xr.Variable(
            ("filter", "ky", "kx"), rng.standard_normal((n, 3, 3)).astype("float32")
        ),
        "filter_layer": xr.Variable(
            ("filter",), np.repeat(layers["layer"], layers["layer_filter_count"]).astype("int32")
        ),
        "layer_name": xr.Variable(("layer",), layers["layer_name"].to_numpy(dtype=object)),
        "depth_method": _coded(list(layers["depth_method"]), "layer", "int8", "depth_method"),
        **{
            col: xr.Variable(("model",), models[col].to_numpy(dtype=object))
            for col in ("weights", "package", "upstream")
        },
        "kernel_count": xr.Variable(
            ("model", "kernel_shape"), np.array([[8, 16, 4], [0, 2, 0]], dtype="int64")
        ),
    }
    int32 = ["layer_model", "conv_depth", "in_channels", "out_channels", "groups"]
    int32 += ["stride_y", "stride_x", "dilation_y", "dilation_x"]
    for col in int32:
        data[col] = xr.Variable(("layer",), layers[col].to_numpy("int32"))
    data["layer_first_filter"] = xr.Variable(("layer",), layers["layer_first_filter"].to_numpy())
    data["layer_filter_count"] = xr.Variable(
        ("layer",), layers["layer_filter_count"].to_numpy("int64"), {"sample_dimension": "filter"}
    )
    data["conv_depth_norm"] = xr.Variable(("layer",), layers["conv_depth_norm"].to_numpy())
    data["out_channels"].attrs["sample_dimension"] = "channel"
    out_channels = layers["out_channels"].to_numpy("int64")
    data["layer_first_channel"] = xr.Variable(
        ("layer",), np.concatenate([[0], np.cumsum(out_channels)[:-1]]).astype("int64")
    )
    data["bn_follows"] = xr.Variable(
        ("layer",),
        np.array([1, 0, 0], dtype="int8"),
        {"flag_values": np.arange(2, dtype="int8"), "flag_meanings": "no yes"},
    )
    data["fold_scale"] = xr.Variable(
        ("channel",), np.linspace(-1.0, 2.0, int(out_channels.sum())).astype("float32")
    )
    for col in MODEL_CODED:
        data[col] = _coded(list(models[col]), "model", "int16", col)
    for col in ["n_parameters", "n_filters_3x3", "total_filters"]:
        data[col] = xr.Variable(("model",), models[col].to_numpy("int64"))
    for col in ["model_first_layer", "model_layer_count"]:
        data[col] = xr.Variable(("model",), models[col].to_numpy("int64"))
    for col in ["accuracy", "share_3x3", "n_train_samples"]:
        data[col] = xr.Variable(("model",), models[col].to_numpy("float64"))
    for name, var in data.items():
        var.attrs.setdefault("long_name", name.replace("_", " "))
    ds = xr.Dataset(
        data,
        coords={
            "model": ("model", models["model"].to_numpy(dtype=object), {"long_name": "model id"}),
            "kernel_shape": ("kernel_shape", np.array(["1x1", "3x3", "7x7"], dtype=object)),
        },
        attrs={
            "Conventions": "CF-1.10",
            "title": "filterdb test",
            "institution": "nowhere",
            "source": "tests/validate/test_schema.py",
            "references": "arXiv:2203.15331",
            "history": "built by a test",
            "comment": "float32 weights, no BatchNorm folding",
            "filterdb_schema_version": np.int32(SCHEMA_VERSION),
            "filterdb_version": "0.1.0",
        },
    )
    return ds.set_coords(["filter_layer", "layer_model"])


def roundtrip(ds: xr.Dataset, tmp_path: Path, name: str = "filters.nc") -> xr.Dataset:
    """Write a real netCDF4 file and read it back."""
    path = tmp_path / name
    ds.to_netcdf(path, engine="netcdf4")
    return xr.open_dataset(path, engine="netcdf4")


def report_of(excinfo: pytest.ExceptionInfo[SchemaValidationError]) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------------------------
# schema files
# --------------------------------------------------------------------------------------------


def test_vocabularies_match_methods_section_4() -> None:
    vocab = load_vocabularies()
    assert vocab["task"] == [
        "classification",
        "segmentation",
        "object-detection",
        "gan-generator",
        "gan-discriminator",
        "style-transfer",
        "super-resolution",
        "face-detection",
        "depth-estimation",
        "face-recognition",
        "auto-encoder",
        # version 2 (issue 10): tasks of the packaged production models
        "text-detection",
        "text-recognition",
        "edge-detection",
        "pose-estimation",
        "hand-tracking",
        "face-landmarks",
        "face-attributes",
        "unknown",
    ]
    # METHODS.md section 4, plus the reviewed extension "none" (random-init models)
    assert vocab["visual_category"] == [
        "natural",
        "handwriting",
        "faces",
        "medical-xray",
        "medical-ct",
        "medical-mri",
        "art",
        "seismic",
        "depth",
        "map",
        "astronomy",
        "fractals",
        "textures",
        "thermal",
        "cars",
        "plants",
        "synthetic",
        "text",
        "captcha",
        "people",
        "hands",
        "none",
        "unknown",
    ]
    assert {"timm", "checkpoint", "package", "trained", "upstream", "onnx", "tfjs", "keras"} == set(
        vocab["source"]
    )
    assert {"normal", "adversarial", "random-init"} <= set(vocab["training"])
    assert {"none", "imagenet-1k", "wider-face", "unknown"} <= set(vocab["training_dataset"])


def test_vocabulary_values_are_unique_and_have_no_whitespace() -> None:
    for name, values in load_vocabularies().items():
        assert len(values) == len(set(values)), name
        for value in values:
            assert value and not any(c.isspace() for c in value), (name, value)


def test_all_schema_files_share_one_version() -> None:
    assert schema_version() == str(SCHEMA_VERSION) == "2"


def test_schema_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ["vocabularies.yaml", "models.yaml", "layers.yaml", "dataset.yaml"]:
        (tmp_path / name).write_text((schema_files.schema_dir() / name).read_text())
    text = (tmp_path / "vocabularies.yaml").read_text()
    (tmp_path / "vocabularies.yaml").write_text(text.replace("  task:\n", "  task:\n    - dance\n"))
    monkeypatch.setenv(schema_files.SCHEMA_DIR_ENV, str(tmp_path))
    assert schema_files.schema_dir() == tmp_path.resolve()
    assert "dance" in load_vocabularies()["task"]


def test_missing_schema_dir_names_the_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(schema_files.SCHEMA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=schema_files.SCHEMA_DIR_ENV):
        load_vocabularies()


# --------------------------------------------------------------------------------------------
# model table
# --------------------------------------------------------------------------------------------


def test_valid_model_table_passes_and_is_widened() -> None:
    df = make_models().astype({"n_parameters": "int32", "model_layer_count": "int16"})
    out = validate_models(df, "models.csv", n_layers=3)
    assert out["n_parameters"].dtype == np.int64
    assert out["model_layer_count"].dtype == np.int64
    assert list(out["model"]) == ["tiny_a", "tiny_b"]


def test_model_id_as_index_is_accepted() -> None:
    df = make_models().set_index("model")
    out = validate_models(df)
    assert out.index.name == "model"


def test_several_bad_model_rows_give_one_report_naming_each() -> None:
    df = make_models()
    df = pd.concat([df, df.iloc[[1]].assign(model="tiny_c")], ignore_index=True)
    df.loc[2, "model_first_layer"] = 3
    df.loc[0, "task"] = "clasification"
    df.loc[1, "visual_category"] = "underwater"
    df.loc[1, "accuracy"] = 1.5
    df.loc[2, "n_parameters"] = -5
    df.loc[2, "architecture"] = "simple cnn"
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_models(df, "params.yaml")
    err = excinfo.value
    report = report_of(excinfo)
    assert report.startswith("params.yaml:")
    expected = [
        ("tiny_a", "task", "clasification"),
        ("tiny_b", "visual_category", "underwater"),
        ("tiny_b", "accuracy", "1.5"),
        ("tiny_c", "n_parameters", "-5"),
        ("tiny_c", "architecture", "simple cnn"),
    ]
    for model, column, value in expected:
        lines = [
            line
            for line in report.splitlines()
            if f"'{model}'" in line and f"| {column} |" in line and value in line
        ]
        assert lines, (model, column, value, report)
    by_column = {f.column: f for f in err.failures}
    assert by_column["task"].row == 0
    assert "vocabulary 'task'" in by_column["task"].check
    assert all(f.source == "params.yaml" for f in err.failures)


def test_unknown_vocabulary_value_is_named() -> None:
    df = make_models()
    df.loc[1, "family"] = "transformer"
    with pytest.raises(SchemaValidationError, match="transformer") as excinfo:
        validate_models(df)
    (failure,) = excinfo.value.failures
    assert (failure.column, failure.value, failure.row) == ("family", "'transformer'", 1)
    assert "vocabulary 'family'" in failure.check


def test_duplicate_model_ids_are_reported() -> None:
    df = make_models()
    df.loc[1, "model"] = "tiny_a"
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_models(df)
    dupes = [f for f in excinfo.value.failures if f.check == "unique"]
    assert {f.row for f in dupes} == {0, 1}
    assert all(f.column == "model" and f.value == "'tiny_a'" for f in dupes)


def test_missing_model_column_and_wrong_dtype_are_reported() -> None:
    df = make_models().drop(columns="training").astype({"n_parameters": "float64"})
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_models(df)
    report = report_of(excinfo)
    assert "training | <missing> | column present" in report
    assert "n_parameters | float64 | dtype('int64')" in report


def test_model_layer_counts_must_sum_to_the_layer_count() -> None:
    with pytest.raises(SchemaValidationError, match="sum=3") as excinfo:
        validate_models(make_models(), n_layers=4)
    assert "model_layer_count" in report_of(excinfo)


def test_share_3x3_must_match_the_counts() -> None:
    df = make_models()
    df.loc[0, "share_3x3"] = 0.5
    with pytest.raises(SchemaValidationError, match=r"share_3x3 \| 0.5") as excinfo:
        validate_models(df)
    assert excinfo.value.failures[0].label == "model 'tiny_a'"


# --------------------------------------------------------------------------------------------
# layer table
# --------------------------------------------------------------------------------------------


def test_valid_layer_table_passes() -> None:
    df = make_layers().astype({"in_channels": "int32", "conv_depth_norm": "float32"})
    out = validate_layers(df, n_filters=18, n_models=2)
    assert out["in_channels"].dtype == np.int64
    assert out["conv_depth_norm"].dtype == np.float64


def test_filter_count_mismatch_is_reported() -> None:
    df = make_layers()
    df.loc[1, "layer_filter_count"] = 5
    df.loc[2, "layer_first_filter"] = 17
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_layers(df, n_filters=19, source="layers.parquet")
    (failure,) = [f for f in excinfo.value.failures if "out_channels" in f.check]
    assert (failure.row, failure.label, failure.column, failure.value) == (
        1,
        "layer 1",
        "layer_filter_count",
        "5",
    )
    assert "(4*4/4)" in failure.check


def test_filter_counts_must_sum_to_the_dataset_filter_count() -> None:
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_layers(make_layers(), n_filters=20)
    (failure,) = excinfo.value.failures
    assert failure.column == "layer_filter_count"
    assert failure.value == "sum=18"
    assert "20" in failure.check


def test_non_contiguous_first_filter_is_reported() -> None:
    df = make_layers()
    df.loc[2, "layer_first_filter"] = 17
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_layers(df, n_filters=18)
    (failure,) = excinfo.value.failures
    assert (failure.row, failure.column, failure.value) == (2, "layer_first_filter", "17")
    assert "contiguous" in failure.check and "(12+4)" in failure.check


def test_several_bad_layer_rows_give_one_report_naming_each() -> None:
    df = make_layers()
    df.loc[0, "conv_depth_norm"] = 1.2
    df.loc[1, "groups"] = 3  # 4 in_channels not divisible by 3, and 4*4/3 != 4
    df.loc[2, "depth_method"] = "guess"
    df.loc[2, "layer_model"] = 7
    df.loc[2, "stride_x"] = 0
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_layers(df, n_filters=18, source="layers.csv", n_models=2)
    report = report_of(excinfo)
    for row, column, value in [
        (0, "conv_depth_norm", "1.2"),
        (1, "in_channels", "4"),
        (1, "layer_filter_count", "4"),
        (2, "depth_method", "guess"),
        (2, "layer_model", "7"),
        (2, "stride_x", "0"),
    ]:
        prefix = f"layers.csv | row {row} (layer {row}) | {column} | "
        assert any(line.startswith(prefix) and value in line for line in report.splitlines()), (
            row,
            column,
            report,
        )


def test_layers_out_of_order_are_reported() -> None:
    df = make_layers()
    df.loc[1, "conv_depth"] = 0
    df.loc[0, "conv_depth"] = 1
    with pytest.raises(SchemaValidationError, match="sorted by"):
        validate_layers(df)


# --------------------------------------------------------------------------------------------
# zoo entry meta-parameters
# --------------------------------------------------------------------------------------------


def test_entry_meta_accepts_known_values() -> None:
    validate_entry_meta(
        "resnet18",
        {"task": "classification", "family": "resnet", "accuracy": 0.69, "n_parameters": 11},
    )


def test_entry_meta_names_model_key_and_value() -> None:
    meta = {"task": "clasification", "visual_categroy": "natural", "accuracy": 69.8}
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_entry_meta("resnet18", meta, source="params.yaml")
    report = report_of(excinfo)
    assert "params.yaml | model 'resnet18' | task | 'clasification'" in report
    assert "did you mean 'classification'" in report
    assert "visual_categroy" in report and "did you mean 'visual_category'" in report
    assert "accuracy | 69.8" in report
    assert len(excinfo.value.failures) == 3


# --------------------------------------------------------------------------------------------
# dataset layout
# --------------------------------------------------------------------------------------------


def test_contract_dataset_passes(tmp_path: Path) -> None:
    ds = roundtrip(make_dataset(), tmp_path)
    validate_dataset(ds, "filters.nc")


def test_missing_dimension_is_named(tmp_path: Path) -> None:
    ds = make_dataset().drop_vars(["kernel_count", "kernel_shape"])
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_dataset(roundtrip(ds, tmp_path), "broken.nc")
    report = report_of(excinfo)
    assert "broken.nc | - | kernel_shape | <missing> | dimension present" in report
    assert "kernel_count" in report


def test_wrong_kernel_size_is_named(tmp_path: Path) -> None:
    ds = make_dataset().drop_vars("weight")
    ds["weight"] = (("filter", "ky", "kx"), np.zeros((18, 3, 4), "float32"), {"long_name": "w"})
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_dataset(roundtrip(ds, tmp_path), "broken.nc")
    assert "| kx | 4 | dimension of size 3" in report_of(excinfo)


def test_wrong_dtype_is_named(tmp_path: Path) -> None:
    ds = make_dataset()
    ds["weight"] = ds["weight"].astype("float64")
    ds["conv_depth"] = ds["conv_depth"].astype("float32")
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_dataset(roundtrip(ds, tmp_path), "broken.nc")
    report = report_of(excinfo)
    assert "| weight | float64 | expected dtype float32, got float64" in report
    assert "| conv_depth | float32 | expected dtype int32, got float32" in report
    # the table check does not report the same column a second time
    assert len([f for f in excinfo.value.failures if f.column == "conv_depth"]) == 1


def test_missing_attributes_are_named(tmp_path: Path) -> None:
    ds = make_dataset()
    del ds.attrs["history"]
    ds.attrs["Conventions"] = "CF-1.6"
    del ds["layer_filter_count"].attrs["sample_dimension"]
    del ds["n_parameters"].attrs["long_name"]
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_dataset(roundtrip(ds, tmp_path), "broken.nc")
    report = report_of(excinfo)
    assert "| global attribute history | <missing> | attribute 'history' present" in report
    assert (
        "| global attribute Conventions | CF-1.6 | attribute 'Conventions' == 'CF-1.10'" in report
    )
    assert "| layer_filter_count | <missing> | attribute 'sample_dimension' == 'filter'" in report
    assert "| n_parameters | <missing> | attribute 'long_name' present, non-blank" in report
    assert len(excinfo.value.failures) == 4


def test_missing_variable_is_named(tmp_path: Path) -> None:
    ds = make_dataset().drop_vars("groups")
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_dataset(roundtrip(ds, tmp_path), "broken.nc")
    (failure,) = excinfo.value.failures
    assert failure.column == "groups"
    assert (failure.value, failure.check) == ("<missing>", "variable present")


def test_bad_flag_code_is_named(tmp_path: Path) -> None:
    ds = make_dataset()
    codes = ds["task"].values.copy()
    codes[1] = 7
    ds["task"] = ds["task"].copy(data=codes)
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_dataset(roundtrip(ds, tmp_path), "broken.nc")
    report = report_of(excinfo)
    assert "broken.nc | row 1 (model 'tiny_b') | task | 7 | a code in flag_values (0..1)" in report
    assert "flag_meanings only the values present" in report  # 'classification' now unused


def test_flag_meaning_outside_vocabulary_is_named(tmp_path: Path) -> None:
    ds = make_dataset()
    ds["family"].attrs["flag_meanings"] = "resnet transformer"
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_dataset(roundtrip(ds, tmp_path), "broken.nc")
    (failure,) = excinfo.value.failures
    assert (failure.row, failure.label, failure.column, failure.value) == (
        1,
        "model 'tiny_b'",
        "family",
        "'transformer'",
    )


def test_inconsistent_ragged_arrays_are_named(tmp_path: Path) -> None:
    ds = make_dataset()
    counts = ds["layer_filter_count"].values.copy()
    counts[2] = 3  # 19 filters claimed, 18 stored; 1*2/1 != 3
    ds["layer_filter_count"] = ds["layer_filter_count"].copy(data=counts)
    n3 = ds["n_filters_3x3"].values.copy()
    n3[0] = 15
    ds["n_filters_3x3"] = ds["n_filters_3x3"].copy(data=n3)
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_dataset(roundtrip(ds, tmp_path), "broken.nc")
    report = report_of(excinfo)
    assert "| layer_filter_count | sum=19 | sum of layer_filter_count == 18" in report
    assert "row 2 (layer 2) | layer_filter_count | 3 |" in report
    assert "row 0 (model 'tiny_a') | n_filters_3x3 | 15 |" in report


def test_every_failure_kind_lands_in_one_report(tmp_path: Path) -> None:
    ds = make_dataset()
    del ds.attrs["title"]
    ds["in_channels"] = ds["in_channels"].astype("int64")
    acc = ds["accuracy"].values.copy()
    acc[0] = 2.0
    ds["accuracy"] = ds["accuracy"].copy(data=acc)
    with pytest.raises(SchemaValidationError) as excinfo:
        validate_dataset(roundtrip(ds, tmp_path), "broken.nc")
    columns = {f.column for f in excinfo.value.failures}
    assert columns == {"global attribute title", "in_channels", "accuracy"}


# --------------------------------------------------------------------------------------------
# a dataset with zero layers (its models have no 3x3 conv, which the README says is kept)
# --------------------------------------------------------------------------------------------


def test_a_dataset_whose_models_have_no_3x3_conv_validates(tmp_path: Path, cli_env) -> None:
    import subprocess

    from filterdb.dataset.write import write_model
    from filterdb.extract.filters import ModelFilters
    from tests.conftest import MNIST_ENTRY

    path = tmp_path / "no3x3.nc"
    write_model(path, ModelFilters("no3x3", [], {"1x1": 8}, n_parameters=8), MNIST_ENTRY["meta"],
                "package", "pkg==1:file")
    with xr.open_dataset(path) as ds:
        assert (ds.sizes["layer"], ds.sizes["filter"]) == (0, 0)
        validate_dataset(ds, str(path))  # no spurious dtype failures of the empty layer table
    r = subprocess.run(["filterdb", "validate", str(path)], env=cli_env, capture_output=True,
                       text=True)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.strip() == f"{path}: valid"


def test_an_empty_layer_table_is_valid_whatever_dtype_its_columns_were_read_with() -> None:
    layers = make_layers().iloc[:0].astype(object)  # as pd.read_csv reads a header-only CSV
    validate_layers(layers, n_filters=0)
