"""Pinned CPU numerics: the same bytes on any AVX2 machine, and a loud stop when they differ.

The sha256 values below were committed from a run under the pinned settings (on an AMD EPYC,
Zen 4, whose native level is AVX-512). Found on that machine, torch 2.14.1: random
initialisation gives the same bits at ATen's AVX2 and AVX-512 levels (both draw normals with
the same vectorised code) and other bits at the scalar ``default`` level; training gives other
bits at the native AVX-512 level than at the pinned AVX2 level (MKL's and oneDNN's kernels).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from filterdb.numerics import PINNED, SWITCH, NumericsError, requested
from filterdb.train.checkpoints import ACCEPT_NEW, recipe_digest

BIN = Path(sys.executable).parent

#: ``filterdb train tiny`` (TINY below), pinned: sha256 of models/tiny.pt
TINY_PINNED_SHA256 = "24cc099df20921914c4d20cc492e9e1a7236681a39bcb0f87e352b04986fe81a"
#: timm random init, seed 0, pinned: sha256 over the state dict (names and float32 bytes)
INIT_PINNED_SHA256 = {
    "resnet18": "50e1151e20b0c838a7331e0e4e4c5e16b30a1180ba9a814bfe2bfaa195644fa8",
    "inception_v3": "aa847531fd734c8de33fa4d1d323711b07dd84451f614b3ee98e207e7db15975",
}

TINY = {
    "arch": "resnet9",
    "dataset": "mnist-5k",
    "width": 2,
    "n_train": 256,
    "n_test": 100,
    "epochs": 2,
    "lr": 0.1,
    "meta": {
        "task": "classification",
        "visual_category": "handwriting",
        "training_dataset": "mnist-5k",
        "pretraining_dataset": "none",
        "architecture": "resnet9",
        "family": "resnet",
        "training": "normal",
    },
}

INIT_SCRIPT = """
import hashlib, sys
from filterdb.numerics import pin
pin()
import torch
from filterdb.sources import load_model
h = hashlib.sha256()
m = load_model("x", {"source": "timm", "arch": sys.argv[1], "seed": 0})
for k, v in m.module.state_dict().items():
    h.update(k.encode())
    h.update(v.detach().contiguous().numpy().tobytes())
print(torch.backends.cpu.get_cpu_capability(), h.hexdigest())
"""


def _env(mode: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    env[SWITCH] = mode
    env.update(extra)
    return env


@functools.cache
def _native_level() -> str:
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        env=_env("native"),
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _init(arch: str, mode: str, **extra: str) -> tuple[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", INIT_SCRIPT, arch],
        env=_env(mode, **extra),
        capture_output=True,
        text=True,
        check=True,
    )
    level, digest = out.stdout.split()
    return level, digest


def _train(tmp: Path, mode: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "filterdb", "train", "tiny", "--params", "params.yaml"],
        cwd=tmp,
        env=_env(mode, **extra),
        capture_output=True,
        text=True,
    )


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"trained": {"tiny": TINY}}))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


class TestSettings:
    def test_pinned_by_default_native_on_request(self):
        assert requested({}, machine="x86_64") == PINNED
        assert requested({SWITCH: "pinned"}, machine="x86_64") == PINNED
        assert requested({SWITCH: "native"}, machine="x86_64") == {}

    def test_nothing_to_pin_off_x86(self):
        assert requested({}, machine="aarch64") == {}

    def test_training_refuses_pinned_settings_that_are_not_all_set(self):
        # a library caller who set ATen's level by hand but skipped pin(): MKL and oneDNN are
        # unpinned, so the record must not say pinned
        code = "from filterdb.numerics import in_effect; in_effect()"
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=_env("pinned", ATEN_CPU_CAPABILITY="avx2"),
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1 and "NumericsError" in proc.stderr
        assert "MKL_CBWR=None" in proc.stderr and "ONEDNN_MAX_CPU_ISA=None" in proc.stderr
        assert "pin()" in proc.stderr

    def test_unknown_switch_value_is_an_error(self):
        with pytest.raises(NumericsError, match="FILTERDB_NUMERICS='fast'"):
            requested({SWITCH: "fast"})

    def test_recipe_ignores_labels_and_paths(self):
        a = recipe_digest({**TINY, "root": "/x", "source": "trained"}, code="c")
        assert a == recipe_digest({k: v for k, v in TINY.items() if k != "meta"}, code="c")
        assert a != recipe_digest({**TINY, "epochs": 3}, code="c")
        assert a != recipe_digest(TINY, code="other code")


@pytest.mark.slow
class TestCommittedBytes:
    def test_training_gives_the_committed_bytes_and_records_the_settings(self, tiny_repo):
        proc = _train(tiny_repo, "pinned")
        assert proc.returncode == 0, proc.stderr
        assert _sha256(tiny_repo / "models" / "tiny.pt") == TINY_PINNED_SHA256
        meta = json.loads((tiny_repo / "models" / "tiny.json").read_text())
        assert meta["checkpoint_sha256"] == TINY_PINNED_SHA256
        assert meta["numerics"] == {
            "pinned": True,
            **PINNED,
            "cpu_capability": "AVX2",
            "torch": meta["torch"],
        }
        # the metrics file holds the held-out results and the checkpoint's sha256 only, for a
        # narrow `dvc metrics show`
        metrics = json.loads((tiny_repo / "metrics" / "train" / "tiny.json").read_text())
        assert set(metrics) == {
            "checkpoint_sha256", "accuracy", "test_loss", "train_loss", "n_train", "n_test",
            "epochs", "steps", "n_params",
        }
        assert metrics["checkpoint_sha256"] == TINY_PINNED_SHA256
        assert metrics["accuracy"] == meta["accuracy"] and metrics["n_train"] == TINY["n_train"]

    @pytest.mark.parametrize("arch", sorted(INIT_PINNED_SHA256))
    def test_random_init_gives_the_committed_bytes(self, arch):
        assert _init(arch, "pinned") == ("AVX2", INIT_PINNED_SHA256[arch])

    @pytest.mark.parametrize("arch", sorted(INIT_PINNED_SHA256))
    def test_random_init_differs_only_at_the_scalar_level(self, arch):
        level, digest = _init(arch, "native", ATEN_CPU_CAPABILITY="default")
        assert level == "DEFAULT"
        assert digest != INIT_PINNED_SHA256[arch]
        if _native_level() == "AVX512":
            assert _init(arch, "native") == ("AVX512", INIT_PINNED_SHA256[arch])

    def test_native_training_differs_where_the_level_differs(self, tiny_repo):
        level = _native_level()
        proc = _train(tiny_repo, "native")
        assert proc.returncode == 0, proc.stderr
        digest = _sha256(tiny_repo / "models" / "tiny.pt")
        if level == "AVX2":
            assert digest == TINY_PINNED_SHA256
        elif level == "AVX512":
            assert digest != TINY_PINNED_SHA256
        meta = json.loads((tiny_repo / "models" / "tiny.json").read_text())
        assert meta["numerics"]["pinned"] is False
        assert meta["numerics"]["cpu_capability"] == level


@pytest.mark.slow
class TestPublishedCheckpoints:
    def _publish(self, repo: Path, sha256: str) -> None:
        recipe = json.loads((repo / "models" / "tiny.json").read_text())
        manifest = {
            "version": "9.9.9",
            "checkpoints": {
                "tiny": {
                    "sha256": sha256,
                    "recipe_sha256": recipe["recipe_sha256"],
                    "numerics": recipe["numerics"],
                }
            },
        }
        folder = repo / "releases" / "v9.9.9"
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps(manifest))
        subprocess.run(["git", "add", "releases"], cwd=repo, check=True)
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "publish"],
            cwd=repo,
            check=True,
        )

    def test_other_bytes_for_a_published_recipe_stop_the_train_stage(self, tiny_repo):
        assert _train(tiny_repo, "pinned").returncode == 0
        published = _sha256(tiny_repo / "models" / "tiny.pt")
        self._publish(tiny_repo, "0" * 64)  # as if another machine had published other bytes
        proc = _train(tiny_repo, "pinned")
        assert proc.returncode == 2
        message = proc.stderr.strip().splitlines()[-1]
        assert "tiny" in message and "v9.9.9" in message
        assert "pinned (ATEN_CPU_CAPABILITY=avx2" in message
        assert (
            "dvc pull models/tiny.pt && git checkout -- models/tiny.json "
            "metrics/train/tiny.json" in message
        )
        assert "Traceback" not in proc.stderr
        # nothing was written over the previous checkpoint
        assert _sha256(tiny_repo / "models" / "tiny.pt") == published

    def test_the_published_bytes_pass_and_new_bytes_can_be_accepted(self, tiny_repo):
        assert _train(tiny_repo, "pinned").returncode == 0
        self._publish(tiny_repo, _sha256(tiny_repo / "models" / "tiny.pt"))
        assert _train(tiny_repo, "pinned").returncode == 0
        if _native_level() != "AVX2":  # native bytes differ here: refused unless accepted
            assert _train(tiny_repo, "native").returncode == 2
            assert _train(tiny_repo, "native", **{ACCEPT_NEW: "1"}).returncode == 0
