"""Sources turn zoo entries into weights, offline, and fail fast with the model named."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from filterdb.sources import ModelLoadError, list_sources, load_model
from tests.conftest import MNIST_ENTRY, PNET_ENTRY


def test_registry_lists_the_builtin_sources() -> None:
    assert {"timm", "checkpoint", "package"} <= set(list_sources())
    assert list_sources("pack*") == ["package"]


def test_unknown_source_names_the_known_ones() -> None:
    with pytest.raises(ModelLoadError, match=r"unknown model source 'hub'.*package"):
        load_model("m", {"source": "hub"})


def test_unknown_entry_key_is_an_error() -> None:
    with pytest.raises(ModelLoadError, match=r"'m'.*unknown key\(s\) \['archh'\]"):
        load_model("m", {"source": "timm", "archh": "resnet18"})


def test_timm_random_init_is_deterministic_for_a_seed() -> None:
    a = load_model("a", {"source": "timm", "arch": "resnet10t", "seed": 3}).module
    b = load_model("b", {"source": "timm", "arch": "resnet10t", "seed": 3}).module
    c = load_model("c", {"source": "timm", "arch": "resnet10t", "seed": 4}).module
    assert torch.equal(a.conv1[0].weight, b.conv1[0].weight)
    assert not torch.equal(a.conv1[0].weight, c.conv1[0].weight)


def test_unknown_timm_name_is_a_clear_error() -> None:
    with pytest.raises(ModelLoadError, match="unknown timm architecture 'resnet1888'"):
        load_model("m", {"source": "timm", "arch": "resnet1888"})


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_pretrained_from_a_local_weights_file(tmp_path, suffix: str) -> None:
    torch.manual_seed(123)
    donor = timm.create_model("resnet10t")
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, path)
    else:
        torch.save(donor.state_dict(), path)
    loaded = load_model("m", {"source": "timm", "arch": "resnet10t", "weights_file": str(path)})
    assert torch.equal(loaded.module.conv1[0].weight, donor.conv1[0].weight)
    assert loaded.weights == f"file:{path.name}"


def test_timm_pretrained_without_local_weights_fails_without_network(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty hub cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ModelLoadError, match=r"'m'.*no local pretrained weights for 'resnet10t'"):
        load_model("m", {"source": "timm", "arch": "resnet10t", "pretrained": True})


def test_timm_pretrained_from_the_hub_cache(tmp_path, monkeypatch) -> None:
    # lay out a Hugging Face hub cache by hand, as a previous online download would have
    torch.manual_seed(7)
    donor = timm.create_model("resnet10t")
    snapshot = tmp_path / "hub" / "models--timm--resnet10t.c3_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in donor.state_dict().items()}, snapshot / "model.safetensors"
    )
    refs = snapshot.parents[1] / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = load_model("m", {"source": "timm", "arch": "resnet10t", "pretrained": True})
    assert torch.equal(loaded.module.conv1[0].weight, donor.conv1[0].weight)
    assert loaded.weights.startswith("pretrained:timm/resnet10t.c3_in1k")


def test_timm_missing_weights_file(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="weights file not found"):
        load_model(
            "m", {"source": "timm", "arch": "resnet10t", "weights_file": str(tmp_path / "x.pth")}
        )


def test_checkpoint_state_dict_without_arch_and_with_arch(tmp_path) -> None:
    torch.manual_seed(0)
    donor = timm.create_model("resnet10t")
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": donor.state_dict()}, path)  # wrapped, as trainers save
    bare = load_model("m", {"source": "checkpoint", "path": str(path)})
    assert bare.module is None
    assert torch.equal(bare.state_dict["conv1.0.weight"], donor.conv1[0].weight)
    traced = load_model("m", {"source": "checkpoint", "path": str(path), "arch": "resnet10t"})
    assert torch.equal(traced.module.conv1[0].weight, donor.conv1[0].weight)


def test_checkpoint_missing_corrupt_or_mismatched(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="model 'm': checkpoint not found"):
        load_model("m", {"source": "checkpoint", "path": str(tmp_path / "none.pt")})
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match=f"model 'm': cannot read checkpoint {bad}"):
        load_model("m", {"source": "checkpoint", "path": str(bad)})
    torch.save({"conv.weight": torch.zeros(2, 2, 3, 3)}, tmp_path / "small.pt")
    with pytest.raises(ModelLoadError, match="does not fit timm architecture 'resnet10t'"):
        load_model(
            "m", {"source": "checkpoint", "path": str(tmp_path / "small.pt"), "arch": "resnet10t"}
        )


def test_package_source_reads_shipped_weights_without_importing_the_package() -> None:
    import sys

    loaded = load_model("mnist", MNIST_ENTRY)
    assert "digit_recognizer" not in sys.modules
    assert loaded.weights.startswith("package:digit-recognizer-py==")
    assert loaded.state_dict["conv_layers.0.weight"].shape == (32, 1, 3, 3)
    pnet = load_model("pnet", PNET_ENTRY)
    assert pnet.state_dict["conv1.weight"].shape == (10, 3, 3, 3)


def test_package_source_errors_name_the_package_and_file() -> None:
    with pytest.raises(ModelLoadError, match="package 'no-such-dist' is not installed"):
        load_model("m", {"source": "package", "package": "no-such-dist", "file": "x.pt"})
    with pytest.raises(ModelLoadError, match=r"has no file 'nothing\.pt'"):
        load_model("m", {"source": "package", "package": "facenet-pytorch", "file": "nothing.pt"})


def test_checkpoint_with_a_fine_tuned_head_loads_into_its_arch(tmp_path) -> None:
    torch.manual_seed(1)
    donor = timm.create_model("resnet10t", num_classes=10)
    torch.save(donor.state_dict(), tmp_path / "ft.pt")
    entry = {"source": "checkpoint", "path": str(tmp_path / "ft.pt"), "arch": "resnet10t"}
    loaded = load_model("m", {**entry, "num_classes": 10})
    assert torch.equal(loaded.module.fc.weight, donor.fc.weight)


def test_a_failing_timm_build_is_a_model_load_error(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("kaput")

    monkeypatch.setattr(timm, "create_model", broken)
    with pytest.raises(ModelLoadError, match=r"'m': could not build 'resnet10t': RuntimeError"):
        load_model("m", {"source": "timm", "arch": "resnet10t"})
    with pytest.raises(ModelLoadError, match="num_classes must be an int"):
        load_model("m", {"source": "timm", "arch": "resnet10t", "num_classes": "ten"})


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch, on the pickled object
@pytest.mark.parametrize("content", [b"", b"garbage", None])
def test_a_corrupt_trained_checkpoint_is_named(tmp_path, content) -> None:
    import pickle

    path = tmp_path / "resnet9-x.pt"
    path.write_bytes(pickle.dumps(object()) if content is None else content)
    entry = {
        "source": "trained",
        "arch": "resnet9",
        "dataset": "digits",
        "models_dir": str(tmp_path),
    }
    with pytest.raises(ModelLoadError, match=r"'resnet9-x': cannot read checkpoint"):
        load_model("resnet9-x", entry)


class _RunsCode:
    """Unpickling this would call ``Path.touch`` on the marker file: code a checkpoint runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_for_safety(tmp_path) -> None:
    import torch

    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"conv.weight": torch.zeros(2, 1, 3, 3), "payload": _RunsCode(marker)}, path)
    with pytest.raises(ModelLoadError, match=r"refused for safety") as info:
        load_model("evil", {"source": "checkpoint", "path": str(path), "arch": "resnet18"})
    assert "weights_only=False" not in str(info.value)
    assert not marker.exists()


def test_a_checkpoint_calling_a_blocked_module_is_refused_for_safety(tmp_path) -> None:
    # torch words this refusal differently ("... whose module posix is blocked")
    import os

    class System:
        def __reduce__(self):
            return (os.system, ("exit 0",))

    path = tmp_path / "system.pt"
    torch.save({"conv.weight": torch.zeros(2, 1, 3, 3), "payload": System()}, path)
    with pytest.raises(ModelLoadError, match=r"refused for safety"):
        load_model("evil", {"source": "checkpoint", "path": str(path), "arch": "resnet18"})
