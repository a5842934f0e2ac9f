"""Extraction takes every 3x3 filter bit for bit and places its layer in the conv graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from filterdb.extract.filters import ExtractionError, conv_depths, extract_filters
from filterdb.sources import LoadedModel, load_model
from tests.conftest import MNIST_ENTRY


def _independent_3x3(module: nn.Module) -> dict[str, np.ndarray]:
    """3x3 Conv2d weights found without filterdb: isinstance + kernel_size."""
    return {
        name: m.weight.detach().numpy().reshape(-1, 3, 3)
        for name, m in module.named_modules()
        if type(m) is nn.Conv2d and m.kernel_size == (3, 3)
    }


def test_filter_count_and_values_equal_the_module_weights(branchy: nn.Module) -> None:
    mf = extract_filters("branchy", LoadedModel(module=branchy))
    expected = _independent_3x3(branchy)
    assert mf.n_filters_3x3 == sum(w.shape[0] for w in expected.values())
    assert {layer.name for layer in mf.layers} == set(expected)
    for layer in mf.layers:
        assert layer.weight.dtype == np.float32
        # bit for bit: compare the raw bytes, not a tolerance
        assert layer.weight.tobytes() == expected[layer.name].tobytes()


def test_grouped_and_depthwise_convs_count_c_out_times_c_in_over_groups(branchy: nn.Module) -> None:
    layers = {la.name: la for la in extract_filters("b", LoadedModel(module=branchy)).layers}
    assert layers["a"].weight.shape[0] == 8 * 8 // 2 and layers["a"].groups == 2
    assert layers["b"].weight.shape[0] == 8 and layers["b"].groups == 8
    assert layers["b"].dilation == (2, 2)
    assert layers["a"].in_channels == 8


def test_transposed_and_non_3x3_convs_are_counted_but_not_extracted(branchy: nn.Module) -> None:
    mf = extract_filters("b", LoadedModel(module=branchy))
    assert "up" not in {la.name for la in mf.layers}
    assert mf.kernel_counts == {"1x1": 64, "3x3": 24 + 32 + 8, "5x5": 32}
    assert mf.total_filters == 24 + 32 + 8 + 32
    assert mf.share_3x3 == pytest.approx(64 / 96)


def test_fx_depth_is_longest_path_and_parallel_branches_share_a_depth(branchy: nn.Module) -> None:
    depths, method = conv_depths(LoadedModel(module=branchy))
    assert method == "fx"
    # stem -> a -> b is the long branch; the 1x1 shortcut runs beside `a`
    assert depths == {"stem": 1, "a": 2, "shortcut": 2, "b": 3, "big": 4}
    layers = {la.name: la for la in extract_filters("b", LoadedModel(module=branchy)).layers}
    assert [layers[n].conv_depth for n in ("stem", "a", "b")] == [0, 1, 2]
    assert [layers[n].conv_depth_norm for n in ("stem", "a", "b")] == [0.0, 1 / 3, 2 / 3]


class DataDependent(nn.Module):
    """A model whose forward branches on tensor values: fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 2, 3)
        self.c2 = nn.Conv2d(2, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)
        if x.sum() > 1e9:  # data-dependent control flow
            x = x * 2
        return self.c2(x)


def test_untraceable_model_falls_back_to_execution_order() -> None:
    loaded = LoadedModel(module=DataDependent(), input_size=(1, 8, 8))
    mf = extract_filters("dd", loaded)
    assert [la.depth_method for la in mf.layers] == ["execution-order"] * 2
    assert [la.conv_depth for la in mf.layers] == [0, 1]


def test_state_dict_depth_falls_back_to_key_order() -> None:
    loaded = load_model("mnist", MNIST_ENTRY)
    mf = extract_filters("mnist", loaded)
    assert mf.depth_method == "key-order"
    assert [la.name for la in mf.layers] == ["conv_layers.0", "conv_layers.3", "conv_layers.6"]
    assert [la.conv_depth_norm for la in mf.layers] == [0.0, 0.5, 1.0]
    sd = loaded.state_dict
    assert mf.layers[2].weight.tobytes() == sd["conv_layers.6.weight"].numpy().tobytes()
    assert mf.n_parameters == sum(t.numel() for t in sd.values())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_weights_are_rejected_naming_model_and_layer(
    branchy: nn.Module, bad: float
) -> None:
    with torch.no_grad():
        branchy.a.weight[0, 0, 1, 1] = bad
    with pytest.raises(ExtractionError, match=r"model 'broken', layer 'a'"):
        extract_filters("broken", LoadedModel(module=branchy))


def test_timm_model_matches_an_independent_count() -> None:
    loaded = load_model("r", {"source": "timm", "arch": "resnet10t", "seed": 0})
    mf = extract_filters("r", loaded)
    assert mf.depth_method == "fx"
    expected = {
        n: m.weight.shape[0] * m.weight.shape[1]
        for n, m in loaded.module.named_modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    }
    assert mf.n_filters_3x3 == sum(expected.values())
    assert len(mf.layers) == len(expected)
    depths = [la.conv_depth for la in mf.layers]
    assert depths == sorted(depths) and depths[0] == 0
    assert mf.layers[-1].conv_depth_norm == 1.0


def test_model_without_3x3_convs_yields_no_layers_but_kernel_counts() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 5))
    mf = extract_filters("no3x3", LoadedModel(module=net))
    assert mf.layers == []
    assert mf.kernel_counts == {"1x1": 12, "5x5": 8}
    assert mf.share_3x3 == 0.0
