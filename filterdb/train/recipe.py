"""The training recipe of the CNN Filter DB study's own models, made deterministic for a CPU.

SGD with Nesterov momentum 0.9, learning rate 1e-2, weight decay 1e-2 (on all parameters),
batch 256, a linear warm-up over the first 30 % of the optimizer steps followed by cosine decay
to zero (updated every step), cross-entropy for classification. Auto-encoders are trained as
denoising auto-encoders: Gaussian noise (std ``noise_std``) is added to the input and the MSE to
the clean image is minimised. Runs are reproducible bit for bit for a given seed and thread count:
the net is initialised after ``torch.manual_seed(seed)``, batches are drawn from a
``torch.Generator`` seeded with ``seed``, and ``torch.use_deterministic_algorithms`` is on for the
duration of the run (global torch state is restored afterwards). Across machines, the bytes also
need torch's CPU kernels pinned (:mod:`filterdb.numerics`, recorded with each checkpoint), and a
rebuild is checked against the published checkpoints (:mod:`filterdb.train.checkpoints`).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from filterdb import numerics as _numerics
from filterdb.atomic import atomic_path
from filterdb.errors import InputError
from filterdb.train.checkpoints import check_published, published_record, recipe_digest
from filterdb.train.data import DatasetSplits, get_dataset_spec, load_dataset
from filterdb.train.nets import build_net, default_width, get_arch

__all__ = [
    "ENTRY_KEYS",
    "TrainConfig",
    "atomic_save",
    "evaluate",
    "lr_factor",
    "recalibrate_batchnorm",
    "train",
    "train_entry",
]

TEST_NOISE_SEED = 12345
"""Seed of the fixed noise added to held-out images when evaluating a denoising auto-encoder."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (defaults: the study's recipe).

    Attributes
    ----------
    epochs : int
        Passes over the training set.
    batch_size : int
        Images per optimizer step (the last, smaller batch of an epoch is kept unless it has
        a single image, which BatchNorm cannot normalise).
    lr, momentum, weight_decay : float
        SGD with Nesterov momentum.
    warmup : float
        Share of all steps spent in linear warm-up before the cosine decay.
    seed : int
        Seeds initialisation, shuffling and training noise.
    threads : int
        ``torch.set_num_threads`` during the run.
    noise_std : float
        Input noise of denoising auto-encoders.
    bn_recalibrate : bool
        After the last step, recompute every BatchNorm's running statistics as the exact
        average over one pass of the (clean) training set in order, without touching any
        weight. Short runs (few optimizer steps) otherwise evaluate with running statistics
        that lag the weights, which can ruin held-out accuracy.
    """

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-2
    warmup: float = 0.3
    seed: int = 0
    threads: int = 2
    noise_std: float = 0.1
    bn_recalibrate: bool = True


ENTRY_KEYS: tuple[str, ...] = (
    "arch",
    "dataset",
    "width",
    "n_train",
    "n_test",
    "root",
    "models_dir",
    *(f.name for f in fields(TrainConfig)),
)
"""Keys a zoo entry of source ``trained`` may carry (besides ``source`` and ``meta``)."""


def lr_factor(step: int, total_steps: int, warmup: float = 0.3) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based).

    Linear warm-up from ``1/w`` to 1 over the first ``w = max(1, round(warmup * total))`` steps,
    then half a cosine from 1 (step ``w``) down to 0 (step ``total_steps``).

    Examples
    --------
    >>> [round(lr_factor(s, 10), 3) for s in (0, 2, 3, 9, 10)]
    [0.333, 1.0, 1.0, 0.05, 0.0]
    """
    w = max(1, round(warmup * total_steps))
    if step < w:
        return (step + 1) / w
    rest = max(1, total_steps - w)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - w, rest) / rest))


@contextmanager
def _torch_state(threads: int) -> Iterator[None]:
    """Set thread count and deterministic algorithms; restore both afterwards."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    out = list(perm.split(batch_size))
    if len(out) > 1 and len(out[-1]) == 1:
        out.pop()
    return out


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, x: torch.Tensor, batch_size: int = 256) -> None:
    """Reset BatchNorm running statistics to their cumulative average over ``x`` (in order).

    Parameters
    ----------
    net : torch.nn.Module
        Modified in place: only BatchNorm buffers change.
    x : torch.Tensor
        Inputs, typically the training images.
    batch_size : int
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    was_training = net.training
    net.train()
    try:
        for i in range(0, len(x), batch_size):
            if len(x[i : i + batch_size]) > 1:
                net(x[i : i + batch_size])
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
        net.train(was_training)


@torch.no_grad()
def evaluate(
    net: nn.Module, data: DatasetSplits, noise_std: float = 0.1, batch_size: int = 1024
) -> dict[str, float]:
    """Held-out metrics of a net (in eval mode).

    Parameters
    ----------
    net : torch.nn.Module
    data : DatasetSplits
    noise_std : float
        Auto-encoders only: std of the fixed noise (seed :data:`TEST_NOISE_SEED`) on the inputs.
    batch_size : int

    Returns
    -------
    dict
        Classification: ``accuracy`` (share of correct held-out predictions) and ``test_loss``.
        Auto-encoder: ``reconstruction_mse`` (reconstruction of noisy inputs vs clean images,
        per pixel) and ``noisy_input_mse`` (the same for the identity map, as a baseline).
    """
    was_training = net.training
    net.eval()
    try:
        if data.spec.task == "auto-encoder":
            gen = torch.Generator().manual_seed(TEST_NOISE_SEED)
            noise = torch.randn(data.x_test.shape, generator=gen) * noise_std
            sq = sq_in = 0.0
            for i in range(0, data.n_test, batch_size):
                clean = data.x_test[i : i + batch_size]
                noisy = clean + noise[i : i + batch_size]
                sq += float(((net(noisy) - clean) ** 2).sum())
                sq_in += float(((noisy - clean) ** 2).sum())
            n = data.x_test.numel()
            return {"reconstruction_mse": sq / n, "noisy_input_mse": sq_in / n}
        assert data.y_test is not None
        correct, loss = 0, 0.0
        for i in range(0, data.n_test, batch_size):
            logits = net(data.x_test[i : i + batch_size])
            y = data.y_test[i : i + batch_size]
            correct += int((logits.argmax(1) == y).sum())
            loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        return {"accuracy": correct / data.n_test, "test_loss": loss / data.n_test}
    finally:
        net.train(was_training)


def train(
    net: nn.Module, data: DatasetSplits, config: TrainConfig, progress: bool = False
) -> dict[str, Any]:
    """Train ``net`` in place with the study's recipe and return held-out metrics.

    Parameters
    ----------
    net : torch.nn.Module
        Freshly built net (seed it yourself, or use :func:`train_entry`).
    data : DatasetSplits
        Task ``classification`` uses ``y_train``; ``auto-encoder`` denoises ``x_train``.
    config : TrainConfig
    progress : bool
        Print one line per epoch to stderr.

    Returns
    -------
    dict
        The metrics of :func:`evaluate` plus ``train_loss`` (mean of the last epoch),
        ``epochs``, ``n_train``, ``n_test``, ``steps``, ``seconds`` (wall clock) and ``cpu_seconds``
        (process CPU time, all threads).
    """
    autoencoder = data.spec.task == "auto-encoder"
    steps_per_epoch = len(_batches(data.n_train, config.batch_size, torch.Generator()))
    total = max(1, steps_per_epoch * config.epochs)
    with _torch_state(config.threads):
        t0, c0 = time.perf_counter(), time.process_time()
        gen = torch.Generator().manual_seed(config.seed)
        opt = torch.optim.SGD(
            net.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=True,
            weight_decay=config.weight_decay,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, config.warmup))
        net.train()
        train_loss = float("nan")
        for epoch in range(config.epochs):
            running, seen = 0.0, 0
            for idx in _batches(data.n_train, config.batch_size, gen):
                x = data.x_train[idx]
                if autoencoder:
                    noisy = x + torch.randn(x.shape, generator=gen) * config.noise_std
                    loss = nn.functional.mse_loss(net(noisy), x)
                else:
                    assert data.y_train is not None
                    loss = nn.functional.cross_entropy(net(x), data.y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running += loss.item() * len(idx)
                seen += len(idx)
            train_loss = running / max(1, seen)
            if progress:
                print(
                    f"  epoch {epoch + 1}/{config.epochs}  train loss {train_loss:.4f}  "
                    f"lr {opt.param_groups[0]['lr']:.2e}  {time.perf_counter() - t0:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
        if config.bn_recalibrate:
            recalibrate_batchnorm(net, data.x_train, config.batch_size)
        metrics: dict[str, Any] = evaluate(net, data, noise_std=config.noise_std)
        seconds = time.perf_counter() - t0
        cpu_seconds = time.process_time() - c0
    metrics.update(
        train_loss=train_loss,
        epochs=config.epochs,
        n_train=data.n_train,
        n_test=data.n_test,
        steps=total,
        seconds=round(seconds, 3),
        cpu_seconds=round(cpu_seconds, 3),
    )
    return metrics


#: Keys of the training metrics that are measurements of this run (``MODEL.timing.json``).
TIMING_KEYS = ("seconds", "cpu_seconds")

#: Keys of the training metrics that are held-out results and sizes: ``metrics/train/MODEL.json``
#: holds only these (a narrow ``dvc metrics show`` table) and the checkpoint's sha256 (so that
#: the file, a dependency of the release stage, changes whenever the checkpoint does); the
#: provenance (settings, recipe digest, numerics) stays in ``models/MODEL.json``.
RESULT_KEYS = (
    "checkpoint_sha256",
    "accuracy",
    "test_loss",
    "reconstruction_mse",
    "noisy_input_mse",
    "train_loss",
    "n_train",
    "n_test",
    "epochs",
    "steps",
    "n_params",
)


def result_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The held-out results of :func:`train_entry`'s metrics (:data:`RESULT_KEYS` present).

    Examples
    --------
    >>> result_metrics({"accuracy": 0.98, "arch": "resnet9", "recipe_sha256": "ab"})
    {'accuracy': 0.98}
    """
    return {k: metrics[k] for k in RESULT_KEYS if k in metrics}


def atomic_save(obj: Any, path: Path) -> str:
    """Write a state dict (``torch.save``) or, for a ``.json`` path, a dict atomically.

    Returns
    -------
    str
        The sha256 of the bytes written.
    """
    if path.suffix == ".json":
        data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    else:
        buf = io.BytesIO()
        torch.save(obj, buf)
        data = buf.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _config_from_entry(model_id: str, entry: Mapping[str, Any]) -> TrainConfig:
    unknown = sorted(set(entry) - set(ENTRY_KEYS) - {"source", "meta"})
    if unknown:
        raise InputError(
            f"zoo entry {model_id!r}: unknown training key(s) {unknown}; allowed: "
            f"{sorted(ENTRY_KEYS)}"
        )
    for key in ("arch", "dataset"):
        if key not in entry:
            raise InputError(f"zoo entry {model_id!r}: missing required key {key!r}")
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in entry.items() if k in names})


def build_entry_net(model_id: str, entry: Mapping[str, Any]) -> nn.Module:
    """Build the (untrained) net a zoo entry describes, checking arch and dataset agree.

    Raises
    ------
    ValueError
        The architecture's task differs from the dataset's (e.g. an auto-encoder on labels).
    KeyError
        Unknown architecture or dataset.
    """
    spec = get_dataset_spec(entry["dataset"])
    arch = get_arch(entry["arch"])
    if arch.task != spec.task:
        raise InputError(
            f"zoo entry {model_id!r}: architecture {arch.name!r} is for {arch.task}, dataset "
            f"{spec.name!r} is for {spec.task}"
        )
    return build_net(arch.name, spec.channels, spec.n_classes, entry.get("width"))


def train_entry(
    model_id: str,
    entry: Mapping[str, Any],
    out_dir: Path,
    progress: bool = True,
    root: str | Path = ".",
) -> dict[str, Any]:
    """Train one zoo entry of source ``trained`` and write its checkpoint and metrics.

    Parameters
    ----------
    model_id : str
        The entry's id; names the output files.
    entry : mapping
        The zoo entry: ``arch``, ``dataset`` and optionally ``epochs``, ``seed``, ``n_train``,
        ``n_test``, ``width``, ``root`` and any :class:`TrainConfig` field (``source``, ``meta``
        and ``models_dir`` are ignored here).
    out_dir : Path
        Folder receiving ``{model_id}.pt`` (a state dict loadable with
        ``torch.load(weights_only=True)``) and ``{model_id}.json`` (the metrics), both written
        atomically.
    progress : bool
        Print a header and one line per epoch to stderr.
    root : path-like
        The repository whose published releases the checkpoint is checked against
        (:func:`filterdb.train.checkpoints.check_published`).

    Returns
    -------
    dict
        Metrics: ``accuracy`` or ``reconstruction_mse`` (+ ``noisy_input_mse``), ``epochs``,
        ``n_train``, ``n_train_samples`` (the same number: images actually trained on, the name
        the dataset's model table uses), ``n_test``, ``seconds``, ``cpu_seconds``, ``dataset``,
        ``arch``, ``width`` (the first-stage width used, the architecture's default when the entry
        gives none), ``n_params``, ``seed``, ``task``, ``checkpoint_sha256``, ``recipe_sha256``
        and ``numerics`` (:func:`filterdb.numerics.in_effect`), ...

    Raises
    ------
    filterdb.train.checkpoints.CheckpointMismatchError
        A published release holds other bytes for the same recipe; nothing is written.
    """
    config = _config_from_entry(model_id, entry)
    numerics = _numerics.in_effect()  # refuses pinned settings torch did not take
    recipe = recipe_digest(entry)
    published = published_record(model_id, root)  # before the work: needs git
    data = load_dataset(
        entry["dataset"],
        n_train=entry.get("n_train"),
        n_test=entry.get("n_test"),
        root=entry.get("root"),
    )
    with _torch_state(config.threads):
        torch.manual_seed(config.seed)
        net = build_entry_net(model_id, entry)
    if progress:
        print(
            f"training {model_id}: {entry['arch']} on {entry['dataset']} "
            f"({data.n_train} train / {data.n_test} test, {config.epochs} epochs, "
            f"{config.threads} threads)",
            file=sys.stderr,
            flush=True,
        )
    metrics = train(net, data, config, progress=progress)
    metrics = {
        "model_id": model_id,
        "arch": entry["arch"],
        "dataset": entry["dataset"],
        "task": data.spec.task,
        "width": entry.get("width") or default_width(entry["arch"]),
        "seed": config.seed,
        "threads": config.threads,
        "config": asdict(config),
        "n_params": sum(p.numel() for p in net.parameters()),
        "torch": torch.__version__,
        **metrics,
        "n_train_samples": data.n_train,
    }
    out_dir = Path(out_dir)
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    checkpoint = buf.getvalue()
    sha256 = hashlib.sha256(checkpoint).hexdigest()
    # before anything is written: other bytes than a published release's stop here
    check_published(model_id, sha256, recipe, numerics, root=root, found=published)
    metrics.update(checkpoint_sha256=sha256, recipe_sha256=recipe, numerics=numerics)
    with atomic_path(out_dir / f"{model_id}.pt") as tmp:
        tmp.write_bytes(checkpoint)
    # times differ from run to run: they go to a file of their own that is neither a pipeline
    # output nor tracked, so that a rebuild reproduces models/MODEL.json byte for byte
    timing = {k: metrics.pop(k) for k in TIMING_KEYS if k in metrics}
    atomic_save(metrics, out_dir / f"{model_id}.json")
    atomic_save(timing, out_dir / f"{model_id}.timing.json")
    return {**metrics, **timing}
