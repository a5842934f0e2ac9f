"""The training recipe: schedule, learning, bit-for-bit reproducibility, the files it writes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from filterdb.train.data import load_dataset
from filterdb.train.recipe import (
    TrainConfig,
    build_entry_net,
    lr_factor,
    recalibrate_batchnorm,
    train_entry,
)

DIGITS = {"arch": "vgg", "dataset": "digits", "epochs": 3, "n_train": 512, "seed": 0}
DENOISER = {
    "arch": "conv-ae",
    "dataset": "natural-patches",
    "width": 8,
    "epochs": 4,
    "n_train": 512,
    "n_test": 256,
    "batch_size": 32,
    "lr": 0.1,
}


def variance_entropy(w: np.ndarray) -> float:
    """H of METHODS.md section 2, computed independently of the package."""
    f = w.reshape(-1, 9).astype(np.float64)
    f = f - f.mean(axis=0)
    s = np.linalg.svd(f, compute_uv=False)
    lam = s**2 / (len(f) - 1)
    p = lam / lam.sum()
    p = p[p > 0]
    return float(-(p * np.log10(p)).sum())


def conv3x3(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in state.items() if v.ndim == 4 and v.shape[-2:] == (3, 3)}


def initial_state(entry: dict) -> dict[str, torch.Tensor]:
    torch.manual_seed(entry.get("seed", 0))
    return build_entry_net("init", entry).state_dict()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("digits")
    return train_entry("vgg-digits", DIGITS, out, progress=False), out


def test_schedule_warms_up_linearly_for_30_percent_then_decays_by_cosine():
    total = 100
    f = [lr_factor(s, total, 0.3) for s in range(total)]
    assert f[0] == pytest.approx(1 / 30)
    assert f[29] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(f[:30]), 1 / 30)
    assert all(a >= b for a, b in itertools.pairwise(f[29:]))
    assert f[65] == pytest.approx(0.5, abs=0.03)  # half-way through the decay
    assert 0 < f[-1] < 0.01
    assert lr_factor(total, total) == pytest.approx(0.0)


def test_default_config_is_the_studys_recipe():
    c = TrainConfig()
    assert (c.batch_size, c.lr, c.momentum, c.weight_decay, c.warmup, c.seed) == (
        256,
        1e-2,
        0.9,
        1e-2,
        0.3,
        0,
    )


def test_short_training_beats_chance_by_a_clear_margin(digits_run):
    metrics, _ = digits_run
    assert metrics["n_train"] == 512 and metrics["n_test"] == 364
    assert metrics["accuracy"] > 0.5  # chance is 0.1 on ten balanced digit classes


def test_train_entry_writes_a_weights_only_state_dict_and_metrics(digits_run):
    metrics, out = digits_run
    state = torch.load(out / "vgg-digits.pt", weights_only=True)
    assert set(state) == set(initial_state(DIGITS))
    saved = json.loads((out / "vgg-digits.json").read_text())
    timing = json.loads((out / "vgg-digits.timing.json").read_text())
    # the run's times are kept apart, so that a rebuild reproduces the metrics file byte for byte
    assert set(timing) == {"seconds", "cpu_seconds"} and not set(timing) & set(saved)
    assert {**saved, **timing} == json.loads(json.dumps(metrics))
    for key in ("accuracy", "epochs", "n_train", "n_test", "dataset", "arch", "seed"):
        assert key in saved
    assert (saved["dataset"], saved["arch"], saved["epochs"]) == ("digits", "vgg", 3)
    assert not list(out.glob("*.tmp"))  # atomic writes leave no temp files


def test_same_seed_gives_bit_identical_weights(digits_run, tmp_path):
    _, out = digits_run
    first = torch.load(out / "vgg-digits.pt", weights_only=True)
    train_entry("again", DIGITS, tmp_path, progress=False)
    second = torch.load(tmp_path / "again.pt", weights_only=True)
    assert all(torch.equal(first[k], second[k]) for k in first)
    train_entry("seed1", {**DIGITS, "seed": 1, "epochs": 1}, tmp_path, progress=False)
    other = torch.load(tmp_path / "seed1.pt", weights_only=True)
    assert not torch.equal(first["features.0.0.weight"], other["features.0.0.weight"])


def test_training_moves_every_conv_away_from_its_initialisation(digits_run):
    _, out = digits_run
    trained = conv3x3(torch.load(out / "vgg-digits.pt", weights_only=True))
    init = conv3x3(initial_state(DIGITS))
    for k, w in trained.items():
        change = np.linalg.norm(w - init[k]) / np.linalg.norm(init[k])
        assert change > 0.01, k


def test_trained_filters_have_lower_variance_entropy_than_at_initialisation(tmp_path):
    train_entry("dae", DENOISER, tmp_path, progress=False)
    trained = conv3x3(torch.load(tmp_path / "dae.pt", weights_only=True))
    init = conv3x3(initial_state(DENOISER))
    drops = {k: variance_entropy(init[k]) - variance_entropy(w) for k, w in trained.items()}
    assert max(drops.values()) > 0.05, drops


def test_denoising_autoencoder_reports_reconstruction_error(tmp_path):
    m = train_entry("dae", {**DENOISER, "epochs": 1, "n_train": 128}, tmp_path, progress=False)
    assert m["task"] == "auto-encoder" and "accuracy" not in m
    assert 0 < m["reconstruction_mse"] < 1
    assert m["noisy_input_mse"] == pytest.approx(0.1**2, rel=0.05)


def test_progress_prints_one_line_per_epoch_to_stderr(tmp_path, capsys):
    train_entry("p", {**DIGITS, "epochs": 2, "n_train": 64}, tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err


def test_global_torch_state_is_restored(tmp_path):
    threads = torch.get_num_threads()
    train_entry("s", {**DIGITS, "epochs": 1, "n_train": 64, "threads": 1}, tmp_path, False)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_batchnorm_recalibration_sets_exact_training_statistics():
    d = load_dataset("digits", n_train=300)
    net = build_entry_net("bn", {"arch": "vgg", "dataset": "digits"})
    recalibrate_batchnorm(net, d.x_train, batch_size=100)
    first_bn = net.features[0][1]
    torch.testing.assert_close(first_bn.running_mean, net.features[0][0](d.x_train).mean((0, 2, 3)))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({**DIGITS, "epoch": 3}, "unknown training key"),
        ({"dataset": "digits"}, "missing required key 'arch'"),
        ({"arch": "conv-ae", "dataset": "digits"}, "auto-encoder"),
    ],
)
def test_bad_entries_are_rejected_before_training(tmp_path, entry, message):
    with pytest.raises(ValueError, match=message):
        train_entry("bad", entry, tmp_path, progress=False)
    assert not list(tmp_path.iterdir())
