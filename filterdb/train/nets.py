"""Small CPU-sized architectures for low-resolution inputs, and a registry of them.

Every constructor has the signature ``(in_channels, n_classes, width=...)``; ``width`` is the
channel count of the first stage and later stages double it. All 3x3 convs have padding 1 and no
bias when followed by BatchNorm. Layer counts (weighted layers on the main path, as in the ResNet
papers):

- ``resnet9``: 3x3 stride-1 stem, conv + max-pool, residual pair, conv + pool, conv + pool,
  residual pair, global max-pool, linear (8 convs + 1 linear; the DAWNBench-style ResNet-9).
- ``resnet14``: 3x3 stride-1 stem, BasicBlocks [2, 2, 2] at widths (w, 2w, 4w) with stride-2
  first blocks and 1x1 projection shortcuts, global average pool, linear (13 convs + 1 linear).
- ``vgg``: VGG-style [w, w, M, 2w, 2w, M, 4w, 4w, M] conv-BN-ReLU, global average pool, linear.
- ``mobilenet``: 3x3 stem, then depthwise-separable blocks (3x3 depthwise + 1x1 pointwise), three
  of them with stride 2, global average pool, linear.
- ``conv-ae``: convolutional auto-encoder (two stride-2 3x3 convs down, two sub-pixel steps up:
  3x3 conv to 4x the channels + ``PixelShuffle(2)``; no transposed convs, so every learned kernel
  is a 2-D conv); ``n_classes`` is ignored.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from filterdb.registry import Registry

__all__ = [
    "ARCHS",
    "ArchSpec",
    "ConvAutoEncoder",
    "MobileNetLike",
    "ResNet9",
    "ResNet14",
    "VGGLike",
    "build_net",
    "default_width",
    "get_arch",
    "list_archs",
    "register_arch",
]


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture.

    Attributes
    ----------
    name : str
        Registry name (``architecture`` meta-parameter).
    constructor : callable
        ``(in_channels, n_classes, width=...) -> nn.Module``.
    task : str
        ``"classification"`` or ``"auto-encoder"``: the task its output serves.
    family : str
        ``family`` meta-parameter (resnet, vgg, mobilenet, autoencoder).
    """

    name: str
    constructor: Callable[..., nn.Module]
    task: str
    family: str


#: Registered architectures.
ARCHS: Registry[ArchSpec] = Registry("architecture")


def register_arch(
    name: str, task: str = "classification", family: str = ""
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a constructor ``(in_channels, n_classes, width=...)`` under ``name`` (decorator)."""

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        ARCHS.register(name, ArchSpec(name, fn, task, family or name))
        return fn

    return decorate


def list_archs(pattern: str = "*") -> list[str]:
    """Names of the registered architectures matching a glob ``pattern``, sorted.

    Examples
    --------
    >>> list_archs("resnet*")
    ['resnet14', 'resnet9']
    """
    return ARCHS.names(pattern)


def get_arch(name: str) -> ArchSpec:
    """The :class:`ArchSpec` registered as ``name``; unknown names list the known ones."""
    return ARCHS.get(name)


def default_width(name: str) -> int | None:
    """The first-stage width an architecture uses when an entry gives none.

    Examples
    --------
    >>> default_width("resnet9")
    16
    """
    param = inspect.signature(get_arch(name).constructor).parameters.get("width")
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return int(param.default)


def build_net(name: str, in_channels: int, n_classes: int, width: int | None = None) -> nn.Module:
    """Build a freshly initialised net from the registry.

    Parameters
    ----------
    name : str
        Registry name, see :func:`list_archs`.
    in_channels : int
        Channels of the input images.
    n_classes : int
        Number of outputs (ignored by auto-encoders).
    width : int, optional
        First-stage channels; ``None`` uses the architecture's default.

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> net = build_net("resnet9", 1, 10)
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    ctor = get_arch(name).constructor
    return ctor(in_channels, n_classes) if width is None else ctor(in_channels, n_classes, width)


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """3x3 conv (padding 1, no bias), BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    """``x + body(x)`` for a shape-preserving ``body``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register_arch("resnet9", family="resnet")
class ResNet9(nn.Module):
    """Low-resolution ResNet-9 (stride-1 3x3 stem, widths w, 2w, 4w, 8w; default w = 16)."""

    def __init__(self, in_channels: int, n_classes: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, w),
            conv_bn_relu(w, 2 * w),
            nn.MaxPool2d(2),
            Residual(nn.Sequential(conv_bn_relu(2 * w, 2 * w), conv_bn_relu(2 * w, 2 * w))),
            conv_bn_relu(2 * w, 4 * w),
            nn.MaxPool2d(2),
            conv_bn_relu(4 * w, 8 * w),
            nn.MaxPool2d(2),
            Residual(nn.Sequential(conv_bn_relu(8 * w, 8 * w), conv_bn_relu(8 * w, 8 * w))),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(8 * w, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


@register_arch("resnet14", family="resnet")
class ResNet14(nn.Module):
    """Low-resolution ResNet-14: stride-1 3x3 stem, BasicBlocks [2, 2, 2] (default w = 16)."""

    def __init__(
        self, in_channels: int, n_classes: int, width: int = 16, blocks: tuple[int, ...] = (2, 2, 2)
    ) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, width)
        layers: list[nn.Module] = []
        c = width
        for stage, n in enumerate(blocks):
            c_out = width * 2**stage
            for i in range(n):
                layers.append(BasicBlock(c, c_out, stride=2 if (i == 0 and stage > 0) else 1))
                c = c_out
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))))


@register_arch("vgg", family="vgg")
class VGGLike(nn.Module):
    """VGG-style net: pairs of 3x3 conv-BN-ReLU at w, 2w, 4w, each pair followed by max-pool."""

    def __init__(self, in_channels: int, n_classes: int, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for stage in range(3):
            c_out = width * 2**stage
            layers += [conv_bn_relu(c, c_out), conv_bn_relu(c_out, c_out)]
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            c = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv-BN-ReLU then 1x1 pointwise conv-BN-ReLU (MobileNet v1 block)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = conv_bn_relu(c_in, c_in, stride=stride, groups=c_in)
        self.pointwise = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


@register_arch("mobilenet", family="mobilenet")
class MobileNetLike(nn.Module):
    """MobileNet-style net: 3x3 stem, six depthwise-separable blocks (w to 8w), three stride 2."""

    CONFIG: tuple[tuple[int, int], ...] = ((1, 1), (2, 2), (2, 1), (4, 2), (4, 1), (8, 2))
    """(width multiplier, stride) of each depthwise-separable block."""

    def __init__(self, in_channels: int, n_classes: int, width: int = 16) -> None:
        super().__init__()
        blocks: list[nn.Module] = [conv_bn_relu(in_channels, width)]
        c = width
        for mult, stride in self.CONFIG:
            blocks.append(DepthwiseSeparable(c, width * mult, stride))
            c = width * mult
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@register_arch("conv-ae", task="auto-encoder", family="autoencoder")
class ConvAutoEncoder(nn.Module):
    """Conv auto-encoder: w -> 2w (/2) -> 4w (/4) and back up by sub-pixel convs.

    The output has ``in_channels`` channels in ``(0, 1)`` (sigmoid), like the images.

    Input height and width must be divisible by 4.
    """

    def __init__(self, in_channels: int, n_classes: int = 0, width: int = 16) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            conv_bn_relu(in_channels, w),
            conv_bn_relu(w, 2 * w, stride=2),
            conv_bn_relu(2 * w, 4 * w, stride=2),
        )
        self.decoder = nn.Sequential(
            conv_bn_relu(4 * w, 4 * 2 * w),
            nn.PixelShuffle(2),
            conv_bn_relu(2 * w, 4 * w),
            nn.PixelShuffle(2),
            nn.Conv2d(w, in_channels, 3, 1, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
