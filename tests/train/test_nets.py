"""Small architectures: registry, output shapes on low-resolution inputs, layer layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from filterdb.train.nets import build_net, get_arch, list_archs

CLASSIFIERS = ["mobilenet", "resnet14", "resnet9", "vgg"]
SIZES = [(1, 8, 8), (1, 25, 25), (1, 28, 28), (3, 32, 32)]


def _convs(net: nn.Module, k: int = 3) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (k, k)]


def test_registry_lists_all_architectures():
    assert list_archs() == ["conv-ae", *CLASSIFIERS]
    assert get_arch("conv-ae").task == "auto-encoder"
    assert {get_arch(a).task for a in CLASSIFIERS} == {"classification"}
    assert get_arch("resnet14").family == "resnet"


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(KeyError, match="resnet9"):
        build_net("alexnet", 3, 10)


@pytest.mark.parametrize("arch", CLASSIFIERS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_classifiers_map_low_resolution_images_to_logits(arch, size):
    torch.manual_seed(0)
    net = build_net(arch, size[0], 7).eval()
    out = net(torch.rand(3, *size))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_autoencoder_reconstructs_the_input_shape_in_unit_range(size):
    net = build_net("conv-ae", size[0], 0).eval()
    with torch.no_grad():
        out = net(torch.rand(2, *size))
    assert out.shape == (2, *size)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("arch", ["conv-ae", *CLASSIFIERS])
def test_every_architecture_learns_3x3_filters_and_no_transposed_convs(arch):
    net = build_net(arch, 3, 10)
    assert len(_convs(net)) >= 5
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())


def test_resnet9_has_eight_3x3_convs_a_stride_one_stem_and_one_linear():
    net = build_net("resnet9", 1, 10)
    convs = _convs(net)
    assert len(convs) == 8
    assert convs[0].stride == (1, 1) and convs[0].in_channels == 1
    assert len([m for m in net.modules() if isinstance(m, nn.Linear)]) == 1


def test_resnet14_is_a_stride_one_stem_and_basic_blocks_2_2_2():
    net = build_net("resnet14", 1, 10, width=8)
    convs = _convs(net)
    assert len(convs) == 1 + 2 * (2 + 2 + 2)
    assert convs[0].stride == (1, 1)
    assert [c.out_channels for c in convs[1:]] == [8] * 4 + [16] * 4 + [32] * 4
    assert len(_convs(net, k=1)) == 2  # projection shortcuts of the two stride-2 blocks


def test_mobilenet_uses_depthwise_3x3_convs():
    net = build_net("mobilenet", 3, 10)
    depthwise = [c for c in _convs(net) if c.groups == c.in_channels > 1]
    assert len(depthwise) == 6
    assert len(_convs(net, k=1)) == 6


def test_width_scales_the_channels():
    small = sum(p.numel() for p in build_net("vgg", 1, 10, width=8).parameters())
    large = sum(p.numel() for p in build_net("vgg", 1, 10, width=16).parameters())
    assert large > 3 * small
