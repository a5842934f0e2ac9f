"""Source ``trained``: rebuilds the net and loads the checkpoint ``filterdb train`` wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import filterdb.sources as sources
from filterdb.sources import LoadedModel, ModelLoadError
from filterdb.sources.trained import load_trained
from filterdb.train.recipe import train_entry

ENTRY = {"arch": "resnet9", "dataset": "lfw-faces", "epochs": 1, "seed": 0, "width": 8}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models")
    train_entry("resnet9-lfw", ENTRY, out, progress=False)
    return out


def test_trained_is_a_registered_source_accepting_the_training_keys():
    assert sources.get_source("trained") is load_trained
    keys = sources.source_keys("trained")
    assert {"arch", "dataset", "epochs", "seed", "n_train", "models_dir"} <= keys


def test_loaded_module_carries_the_checkpoint_weights(models_dir):
    loaded = load_trained("resnet9-lfw", {**ENTRY, "models_dir": str(models_dir)})
    assert isinstance(loaded, LoadedModel) and loaded.state_dict is None
    state = torch.load(models_dir / "resnet9-lfw.pt", weights_only=True)
    convs = {k: v for k, v in loaded.module.state_dict().items() if v.ndim == 4}
    assert len(convs) == 8
    for k, v in convs.items():
        assert torch.equal(v, state[k]), k
    assert not loaded.module.training


def test_loaded_model_reports_provenance_input_size_and_accuracy(models_dir):
    loaded = load_trained("resnet9-lfw", {**ENTRY, "models_dir": str(models_dir)})
    assert loaded.weights == f"trained:{(models_dir / 'resnet9-lfw.pt').as_posix()}"
    assert loaded.input_size == (1, 25, 25)
    metrics = json.loads((models_dir / "resnet9-lfw.json").read_text())
    assert loaded.extra_meta["accuracy"] == metrics["accuracy"]
    with torch.no_grad():
        assert loaded.module(torch.zeros(1, *loaded.input_size)).shape == (1, 2)


def test_default_models_dir_is_models_relative_to_the_working_directory(models_dir, monkeypatch):
    monkeypatch.chdir(models_dir.parent)
    (models_dir.parent / "models").mkdir(exist_ok=True)
    (models_dir.parent / "models" / "m.pt").write_bytes(
        (models_dir / "resnet9-lfw.pt").read_bytes()
    )
    assert load_trained("m", ENTRY).weights == "trained:models/m.pt"


def test_missing_checkpoint_says_which_model_where_and_what_to_run(tmp_path):
    with pytest.raises(ModelLoadError) as err:
        load_trained("resnet9-lfw", {**ENTRY, "models_dir": str(tmp_path)})
    msg = str(err.value)
    assert "resnet9-lfw" in msg
    assert str(tmp_path / "resnet9-lfw.pt") in msg
    assert "filterdb train resnet9-lfw" in msg


def test_checkpoint_of_another_architecture_is_a_clear_error(models_dir):
    with pytest.raises(ModelLoadError, match="does not fit arch 'resnet9'"):
        load_trained("resnet9-lfw", {**ENTRY, "width": 16, "models_dir": str(models_dir)})


def test_unknown_architecture_is_a_model_load_error(models_dir):
    with pytest.raises(ModelLoadError, match="unknown architecture"):
        load_trained("x", {**ENTRY, "arch": "alexnet", "models_dir": str(models_dir)})
