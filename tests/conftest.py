"""Shared fixtures: real torch models, real zoo files, real datasets on disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# the suite runs torch as the pipeline does: numerics pinned before torch loads
from filterdb.numerics import pin

pin()

import torch  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

MNIST_ENTRY = {
    "source": "package",
    "package": "digit-recognizer-py",
    "file": "digit_recognizer/models/handwriting_model.pth",
    "input_size": [1, 28, 28],
    "meta": {
        "task": "classification",
        "visual_category": "handwriting",
        "training_dataset": "mnist",
        "pretraining_dataset": "none",
        "architecture": "digit-recognizer-cnn",
        "family": "simple-cnn",
        "training": "normal",
    },
}
PNET_ENTRY = {
    "source": "package",
    "package": "facenet-pytorch",
    "file": "facenet_pytorch/data/pnet.pt",
    "meta": {
        "task": "face-detection",
        "visual_category": "faces",
        "training_dataset": "wider-face",
        "pretraining_dataset": "none",
        "architecture": "mtcnn-pnet",
        "family": "mtcnn",
        "training": "normal",
    },
}


def random_entry(arch: str, family: str, seed: int = 0) -> dict:
    """A zoo entry for a random-init timm model."""
    return {
        "source": "timm",
        "arch": arch,
        "seed": seed,
        "meta": {
            "task": "classification",
            "visual_category": "none",
            "training_dataset": "none",
            "pretraining_dataset": "none",
            "architecture": arch,
            "family": family,
            "training": "random-init",
        },
    }


TINY_ZOO = {
    "mnist-cnn": MNIST_ENTRY,
    "mtcnn-pnet": PNET_ENTRY,
    "mobilenet-random": random_entry("mobilenetv3_small_050", "mobilenet"),
    "resnet-random": random_entry("resnet10t", "resnet"),
}


class Branchy(nn.Module):
    """A residual block with a grouped conv, a depthwise conv, a 1x1 shortcut and a 5x5 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1, groups=2, stride=(1, 1))
        self.b = nn.Conv2d(8, 8, 3, padding=2, groups=8, dilation=2)
        self.shortcut = nn.Conv2d(8, 8, 1)
        self.big = nn.Conv2d(8, 4, 5, padding=2)
        self.up = nn.ConvTranspose2d(4, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.b(torch.relu(self.a(x))) + self.shortcut(x)
        return self.up(self.big(y))


@pytest.fixture
def branchy() -> nn.Module:
    torch.manual_seed(0)
    return Branchy().eval()


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for running the installed ``filterdb`` and ``dvc`` commands."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HUB_OFFLINE"] = "1"
    return env


def write_params(path: Path, zoo: dict, trained: dict | None = None, **extra: object) -> Path:
    """Write a params.yaml with the given zoo."""
    # the repository's constants (statistics, training defaults), with a small zoo
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    params = {
        **base,
        "store": {**base.get("store", {}), "chunk_filters": 4096},
        "release": {"version": "0.0.1"},
        "zoo": zoo,
        "trained": trained or {},
        "packages": {},  # no registry downloads from test repositories
        **extra,
    }
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real dataset of the tiny zoo, built through sources, extract and store."""
    from filterdb.dataset.assemble import assemble
    from filterdb.dataset.write import StoreParams, write_model
    from filterdb.extract.filters import extract_filters
    from filterdb.sources import load_model

    root = tmp_path_factory.mktemp("tiny")
    shards = []
    for model_id, entry in TINY_ZOO.items():
        loaded = load_model(model_id, entry)
        mf = extract_filters(model_id, loaded)
        shards.append(
            write_model(
                root / f"{model_id}.nc",
                mf,
                entry["meta"],
                entry["source"],
                loaded.weights,
                StoreParams(chunk_filters=4096),
            )
        )
    return assemble(shards, root / "filters.nc", StoreParams(chunk_filters=4096))


def copy_repo_files(dest: Path) -> None:
    """Copy what a pipeline run needs (dvc.yaml, code it tracks, schemas) into ``dest``."""
    for name in ("dvc.yaml",):
        shutil.copy(REPO / name, dest / name)
    for name in ("filterdb",):  # the schemas are package data (filterdb/validate/schemas)
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))


@pytest.fixture(scope="module")
def cli_env_module() -> dict[str, str]:
    """:func:`cli_env` for module-scoped fixtures."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HUB_OFFLINE"] = "1"
    return env


def sh(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command (git, dvc, filterdb) and return its output; fail the test if it fails."""
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


#: Prelude of a child process that kills itself at the n-th ``os.replace`` of one kind: "set" (a
#: temp of a set onto its target) or "journal" (the journal's own atomic write); the child's
#: JSON argument ``a`` names it as ``a["kill_on"] = [kind, n]``.
KILL_ON_REPLACE = r"""
import json, os, signal, sys

a = json.loads(sys.argv[1])
real, seen = os.replace, {"set": 0, "journal": 0}

def replace(src, dst):
    kind = "journal" if ".journal." in os.fspath(src) else "set"
    seen[kind] += 1
    if [kind, seen[kind]] == a["kill_on"]:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)

os.replace = replace
"""


def run_killed(body: str, args: dict, timeout: float = 120) -> None:
    """Run :data:`KILL_ON_REPLACE` + ``body`` with ``args`` in a child; it must die by SIGKILL."""
    import json
    import signal

    proc = subprocess.run(
        [sys.executable, "-c", KILL_ON_REPLACE + body, json.dumps(args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
