"""filterdb.zoo.timm_*: timm's pretrained registry as zoo entries, sized on the meta device."""

from __future__ import annotations

import re

import numpy as np
import pytest
import timm
import torch
import yaml
from safetensors.torch import save_file
from timm.models._registry import _model_to_module

from filterdb.extract.filters import extract_filters
from filterdb.params import load_params
from filterdb.sources import ModelLoadError, load_model
from filterdb.validate.entry_meta import validate_entry_meta
from filterdb.validate.schema_files import load_vocabularies
from filterdb.zoo.entries import zoo_entries
from filterdb.zoo.labels import load_label_table
from filterdb.zoo.timm_entries import (
    filter_available,
    generate_entries,
    list_pretrained_names,
    weights_dir_overrides,
)
from filterdb.zoo.timm_sizing import (
    BYTES_PER_FILTER,
    drop_without_3x3,
    size_architecture,
    size_entries,
)
from filterdb.zoo.timm_summary import summary
from filterdb.zoo.timm_tags import architecture_family, map_tag, tag_table
from filterdb.zoo.timm_zoo import write_zoo

SMALL = "mobilenetv3_small_050.lamb_in1k"  # 1.6 M parameters, depthwise 3x3 convs


# tag -> (pretraining_dataset, training_dataset, training, task)
TAG_CASES = {
    "a1_in1k": ("none", "imagenet-1k", "normal", "classification"),
    "ra4_e3600_r224_in1k": ("none", "imagenet-1k", "normal", "classification"),
    "in22k_ft_in1k": ("imagenet-21k", "imagenet-1k", "normal", "classification"),
    "augreg_in21k_ft_in1k": ("imagenet-21k", "imagenet-1k", "normal", "classification"),
    "in21k": ("none", "imagenet-21k", "normal", "classification"),
    "sw_in12k_ft_in1k_384": ("imagenet-12k", "imagenet-1k", "normal", "classification"),
    "fb_swsl_ig1b_ft_in1k": ("instagram-1b", "imagenet-1k", "semi-supervised", "classification"),
    "fb_ssl_yfcc100m_ft_in1k": ("yfcc-100m", "imagenet-1k", "semi-supervised", "classification"),
    "fb_wsl_ig1b_ft_in1k": ("instagram-1b", "imagenet-1k", "weakly-supervised", "classification"),
    "adv_in1k": ("none", "imagenet-1k", "adversarial", "classification"),
    "tf_ens_adv_in1k": ("none", "imagenet-1k", "adversarial", "classification"),
    "fb_dist_in1k": ("none", "imagenet-1k", "distilled", "classification"),
    "fb_distilled_in1k": ("none", "imagenet-1k", "distilled", "classification"),
    "dist_in22k_ft_in1k": ("imagenet-21k", "imagenet-1k", "distilled", "classification"),
    "ns_jft_in1k": ("jft-300m", "imagenet-1k", "semi-supervised", "classification"),
    "openai": ("none", "wit-400m", "language-supervised", "classification"),
    "laion2b_ft_in12k_in1k": ("laion-2b", "imagenet-1k", "language-supervised", "classification"),
    "clip_laion2b_augreg_ft_in12k_in1k_384": (
        "laion-2b", "imagenet-1k", "language-supervised", "classification"),
    "webli": ("none", "webli", "language-supervised", "classification"),
    "metaclip_2pt5b": ("none", "metaclip-2.5b", "language-supervised", "classification"),
    "mae": ("none", "imagenet-1k", "self-supervised", "classification"),
    "fcmae_ft_in22k_in1k": ("imagenet-1k", "imagenet-1k", "self-supervised", "classification"),
    "swag_lc_in1k": ("instagram-3.6b", "imagenet-1k", "weakly-supervised", "classification"),
    "ssld_stage2_ft_in1k": ("imagenet-21k", "imagenet-1k", "distilled", "classification"),
    "sa1b": ("none", "sa-1b", "normal", "segmentation"),
    "dinov3_lvd1689m": ("none", "lvd-1689m", "self-supervised", "classification"),
}


@pytest.mark.parametrize(("tag", "expected"), TAG_CASES.items(), ids=list(TAG_CASES))
def test_tag_mapping(tag: str, expected: tuple[str, str, str, str]) -> None:
    m = map_tag(tag)
    assert m.mapped, m.reason
    got = (m.meta["pretraining_dataset"], m.meta["training_dataset"], m.meta["training"],
           m.meta["task"])
    assert got == expected
    assert m.meta["visual_category"] == "natural"


@pytest.mark.parametrize("tag", ["qwen3_vl_8b", "fb", "pt", "e180_ad_r384_in12k", "bamboo"])
def test_unknown_tags_are_unmapped_with_a_reason(tag: str) -> None:
    m = map_tag(tag)
    assert not m.mapped and m.reason


def test_every_registry_name_is_an_entry_or_reported_unmapped() -> None:
    names = list_pretrained_names()
    assert len(names) == len(timm.list_pretrained())
    entries, unmapped = generate_entries()
    unmapped_names = [u.split(":", 1)[0] for u in unmapped]
    assert sorted([*entries, *unmapped_names]) == sorted(names)  # a partition: nothing dropped
    assert len(entries) > 0.8 * len(names)
    vocab = load_vocabularies()
    for model_id, entry in entries.items():
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", model_id)
        assert entry["arch"] == model_id and entry["pretrained"] is True
        assert entry["meta"]["family"] in vocab["family"]
    validate_all = {k: {**e["meta"], "source": "timm"} for k, e in entries.items()}
    for model_id, meta in validate_all.items():
        validate_entry_meta(model_id, meta, source="timm zoo")


def test_include_exclude_globs() -> None:
    entries, _ = generate_entries(["resnet*"], ["*_in1k", "*clip*"])
    assert entries and all(k.startswith("resnet") for k in entries)
    assert not any(k.endswith("_in1k") or "clip" in k for k in entries)


def test_table_values_are_in_the_vocabularies() -> None:
    table, labels, vocab = tag_table(), load_label_table(), load_vocabularies()
    for spec in [*table["datasets"].values(), *table["methods"].values()]:
        if "dataset" in spec:
            assert spec["dataset"] in vocab["training_dataset"], spec
        if "training" in spec:
            assert spec["training"] in vocab["training"], spec
        if "task" in spec:
            assert spec["task"] in vocab["task"], spec
    assert set(table["method_precedence"]) <= set(vocab["training"])
    families = list(labels["family_modules"].values())
    assert set(families) <= set(vocab["family"])
    # every timm module that has pretrained models has a family (no KeyError at generation)
    modules = {_model_to_module[n.split(".")[0]] for n in timm.list_pretrained()}
    assert modules <= set(labels["family_modules"])


def test_family_patterns() -> None:
    assert architecture_family("resnet50") == "resnet"
    assert architecture_family("inception_resnet_v2") == "inception"
    assert architecture_family("cspresnext50") == "cspnet"
    assert architecture_family("seresnext26d_32x4d") == "resnext"
    assert architecture_family("legacy_seresnet18") == "senet"
    assert architecture_family("mobilenetv2_100") == "mobilenet"
    assert architecture_family("eva02_base_patch14_224") == "vit"


@pytest.mark.parametrize("arch", ["resnet10t", "mobilenetv3_small_050", "dla34"])
def test_meta_sizing_equals_a_real_build(arch: str) -> None:
    size = size_architecture(arch)
    assert size["error"] is None
    mf = extract_filters(arch, load_model(arch, {"source": "timm", "arch": arch, "seed": 0}))
    assert size["n_filters_3x3"] == mf.n_filters_3x3
    assert size["n_layers_3x3"] == len(mf.layers)
    assert size["kernel_counts"] == mf.kernel_counts
    assert size["total_filters"] == mf.total_filters
    assert size["n_parameters"] == mf.n_parameters
    assert size["bytes"] == mf.n_filters_3x3 * BYTES_PER_FILTER


def test_sizing_is_cached_per_architecture_and_drops_models_without_3x3(tmp_path) -> None:
    names = ["resnet10t.c3_in1k", "vit_tiny_patch16_224.augreg_in21k_ft_in1k"]
    sizes = size_entries(names, cache=tmp_path / "sizes.json")
    assert (tmp_path / "sizes.json").is_file()
    assert sizes["vit_tiny_patch16_224.augreg_in21k_ft_in1k"]["n_filters_3x3"] == 0
    assert sizes["resnet10t.c3_in1k"]["n_filters_3x3"] > 0
    entries, _ = generate_entries(names)
    kept, no_3x3, failed = drop_without_3x3(entries, sizes)
    assert list(kept) == ["resnet10t.c3_in1k"]
    assert no_3x3 == ["vit_tiny_patch16_224.augreg_in21k_ft_in1k"] and failed == []


def test_a_build_that_fails_on_meta_is_reported() -> None:
    size = size_architecture("not_a_timm_arch")
    assert size["error"] and size["n_filters_3x3"] == 0


def test_summary_totals() -> None:
    s = summary(["resnet10t.*", "vit_tiny_patch16_224.*", "*.qwen3_vl_8b"], ["*_in21k"])
    t = s.totals()
    m = s.models
    assert t["models"] == int(m["kept"].sum()) > 0
    assert t["filters"] == m.loc[m["kept"], "n_filters_3x3"].sum()
    assert t["bytes"] == t["filters"] * BYTES_PER_FILTER
    assert not m.loc[m["arch"] == "vit_tiny_patch16_224", "kept"].any()
    assert s.unmapped and all(".qwen3_vl_8b: unknown token" in u for u in s.unmapped)
    text = s.to_text()
    assert "by family:" in text and "by training_dataset:" in text


def test_written_zoo_is_accepted_by_load_params(tmp_path) -> None:
    entries, unmapped = generate_entries(["resnet10t.*", "resnet18.*", "*.qwen3_vl_8b"])
    path = write_zoo(tmp_path / "zoo.yaml", entries, unmapped, skipped=["x.y"])
    params = load_params(path)
    assert set(params) == {"zoo"}
    loaded = zoo_entries(params, str(path))
    assert list(loaded) == list(entries)
    assert loaded["resnet18.a1_in1k"]["meta"] == entries["resnet18.a1_in1k"]["meta"]
    text = path.read_text()
    assert "# license: apache-2.0" in text  # provenance as comments by default
    assert "unmapped tags" in text and "qwen3_vl_8b" in text and "skipped" in text
    # provenance as a block: the proposed key, parsed but not yet accepted by the sources
    block = yaml.safe_load(
        write_zoo(tmp_path / "b.yaml", entries, provenance="block").read_text()
    )
    assert block["zoo"]["resnet18.a1_in1k"]["provenance"]["license"] == "apache-2.0"


def test_local_weights_stand_in_for_the_hub(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # empty: nothing is cached
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    entries, _ = generate_entries([SMALL, "resnet10t.c3_in1k"])
    assert list(entries) == [SMALL, "resnet10t.c3_in1k"]
    # without local weights: skipped by filter_available, and the source fails fast
    kept, skipped = filter_available(entries)
    assert kept == {} and skipped == [SMALL, "resnet10t.c3_in1k"]
    with pytest.raises(ModelLoadError, match="no local pretrained weights"):
        load_model(SMALL, entries[SMALL])
    # a random-init state dict saved as DIR/arch.tag.safetensors stands in for the download
    torch.manual_seed(11)
    donor = timm.create_model(SMALL, pretrained=False)
    wdir = tmp_path / "weights"
    wdir.mkdir()
    state = {k: v.contiguous() for k, v in donor.state_dict().items()}
    save_file(state, wdir / f"{SMALL}.safetensors")
    overridden = weights_dir_overrides(entries, wdir)
    assert "pretrained" not in overridden[SMALL] and "weights_file" in overridden[SMALL]
    assert overridden["resnet10t.c3_in1k"] == entries["resnet10t.c3_in1k"]
    kept, skipped = filter_available(overridden)
    assert list(kept) == [SMALL] and skipped == ["resnet10t.c3_in1k"]
    # through the pipeline's own loading and extraction
    path = write_zoo(tmp_path / "zoo.yaml", kept, skipped=skipped)
    entry = zoo_entries(load_params(path), str(path))[SMALL]
    mf = extract_filters(SMALL, load_model(SMALL, entry))
    size = size_architecture(SMALL)
    assert mf.n_filters_3x3 == size["n_filters_3x3"] and len(mf.layers) == size["n_layers_3x3"]
    for layer in mf.layers:
        expected = state[f"{layer.name}.weight"].numpy().reshape(-1, 3, 3)
        np.testing.assert_array_equal(layer.weight, expected)  # bit for bit, the file's weights


def test_make_zoo_through_the_cli_options(tmp_path, monkeypatch, capsys) -> None:
    import argparse

    from filterdb.zoo.timm_zoo import add_cli_arguments, run_cli

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    wdir = tmp_path / "w"
    wdir.mkdir()
    save_file({k: v.contiguous() for k, v in timm.create_model(SMALL).state_dict().items()},
              wdir / f"{SMALL}.safetensors")
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    out = tmp_path / "zoo.yaml"
    args = parser.parse_args([
        "--include", "mobilenetv3_small_050.*", "--include", "vit_tiny_patch16_224.*",
        "--include", "*.qwen3_vl_8b", "--exclude", "*_in21k", "--out", str(out),
        "--weights-dir", str(wdir), "--only-available", "--cache", str(tmp_path / "c.json"),
    ])
    assert run_cli(args) == 0
    assert "1 entries" in capsys.readouterr().out
    entries = zoo_entries(load_params(out), str(out))
    assert list(entries) == [SMALL] and entries[SMALL]["weights_file"].endswith(".safetensors")
    text = out.read_text()
    assert "no 3x3 conv" in text and "vit_tiny_patch16_224.augreg_in21k_ft_in1k" in text
    assert "unmapped tags" in text
    assert run_cli(parser.parse_args(["--include", "resnet10t.*", "--summary",
                                      "--cache", str(tmp_path / "c.json")])) == 0
    assert "projected zoo: 1 models" in capsys.readouterr().out
