"""Training-set size: stratified, deterministic, nested subsets; the held-out split never moves."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import yaml

from filterdb.sources.trained import load_trained
from filterdb.train import data as D
from filterdb.train.nets import default_width, list_archs
from filterdb.train.recipe import ENTRY_KEYS, train_entry
from tests.conftest import REPO

SIZES = (500, 1000, 2000, 4000)


@pytest.fixture(scope="module")
def mnist() -> dict:
    return {n: D.load_dataset("mnist-5k", n_train=n) for n in (*SIZES[:-1], None)}


def test_mnist_subsets_are_exactly_stratified(mnist):
    for n in SIZES[:-1]:
        counts = np.bincount(mnist[n].y_train.numpy(), minlength=10)
        assert mnist[n].n_train == n
        assert counts.tolist() == [n // 10] * 10, n


def test_held_out_split_is_the_same_1000_digits_for_every_training_size(mnist):
    full = mnist[None]
    assert full.n_test == 1000
    for n in SIZES[:-1]:
        assert torch.equal(mnist[n].x_test, full.x_test)
        assert torch.equal(mnist[n].y_test, full.y_test)


def test_subsets_are_nested_prefixes_and_drawn_from_the_training_split(mnist):
    full = mnist[None]
    train_rows = {row.tobytes() for row in full.x_train.numpy().reshape(len(full.x_train), -1)}
    test_rows = {row.tobytes() for row in full.x_test.numpy().reshape(len(full.x_test), -1)}
    for small, big in itertools.pairwise(SIZES[:-1]):
        assert torch.equal(mnist[small].x_train, mnist[big].x_train[:small])
        assert torch.equal(mnist[small].y_train, mnist[big].y_train[:small])
    rows = {r.tobytes() for r in mnist[2000].x_train.numpy().reshape(2000, -1)}
    assert len(rows) == 2000  # no image twice
    assert rows <= train_rows and not rows & test_rows


def test_subsets_are_deterministic(mnist):
    again = D.load_dataset("mnist-5k", n_train=500)
    assert torch.equal(again.x_train, mnist[500].x_train)
    assert torch.equal(again.y_train, mnist[500].y_train)


def test_full_size_or_more_keeps_the_whole_split_in_file_order(mnist):
    big = D.load_dataset("mnist-5k", n_train=4000)
    assert torch.equal(big.x_train, mnist[None].x_train)


def test_every_prefix_of_the_order_is_proportional_on_unbalanced_labels():
    rng = np.random.default_rng(3)
    y = rng.choice(4, size=997, p=[0.55, 0.25, 0.15, 0.05])
    order = D.stratified_order(y)
    assert sorted(order.tolist()) == list(range(len(y)))
    share = np.bincount(y, minlength=4) / len(y)
    for k in range(1, len(y) + 1):
        counts = np.bincount(y[order[:k]], minlength=4)
        assert np.all(np.abs(counts - k * share) <= 1.0 + 1e-9), k


def test_unlabelled_split_uses_the_seeded_permutation():
    order = D.stratified_order(None, 10)
    assert sorted(order.tolist()) == list(range(10))
    np.testing.assert_array_equal(order, np.random.default_rng(D.SUBSET_SEED).permutation(10))


def test_default_width_is_the_constructors():
    assert {a: default_width(a) for a in list_archs()} == dict.fromkeys(list_archs(), 16)


def test_the_zoo_trains_every_sweep_entry_with_an_explicit_size():
    trained = yaml.safe_load((REPO / "params.yaml").read_text())["trained"]
    for model_id, entry in trained.items():
        assert set(entry) - {"meta"} <= set(ENTRY_KEYS), model_id
    sweep = {k: e for k, e in trained.items() if e["dataset"] == "mnist-5k"}
    widths = {e.get("width", 16) for e in sweep.values()}
    sizes = {e.get("n_train", 4000) for e in sweep.values()}
    assert len(widths) >= 4 and min(widths) <= 16 / 8 and max(widths) == 16
    assert min(sizes) <= 500 and max(sizes) == 4000
    assert any(e["arch"] == "conv-ae" for e in trained.values())


def test_short_training_on_500_digits_records_the_training_set_size(tmp_path):
    entry = {"arch": "resnet9", "dataset": "mnist-5k", "width": 2, "n_train": 500, "epochs": 1}
    metrics = train_entry("tiny", entry, tmp_path, progress=False)
    assert metrics["n_train_samples"] == 500 and metrics["n_test"] == 1000
    assert metrics["width"] == 2 and metrics["steps"] == 2
    assert metrics["cpu_seconds"] > 0 and 0.0 <= metrics["accuracy"] <= 1.0
    on_disk = json.loads((tmp_path / "tiny.json").read_text())
    assert on_disk["n_train_samples"] == 500
    loaded = load_trained("tiny", {**entry, "models_dir": str(tmp_path)})
    assert loaded.extra_meta["n_train_samples"] == 500
    n_params = sum(p.numel() for p in loaded.module.parameters())
    assert n_params == metrics["n_params"] < 10_000


def test_old_metrics_without_n_train_samples_fall_back_to_n_train(tmp_path):
    entry = {"arch": "resnet9", "dataset": "digits", "width": 2, "n_train": 64, "epochs": 1}
    train_entry("old", entry, tmp_path, progress=False)
    path = tmp_path / "old.json"
    metrics = json.loads(path.read_text())
    del metrics["n_train_samples"]
    path.write_text(json.dumps(metrics))
    loaded = load_trained("old", {**entry, "models_dir": str(tmp_path)})
    assert loaded.extra_meta["n_train_samples"] == 64
