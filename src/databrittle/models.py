"""Networks: the feature-extractor backbones (SmallResNet for digits, ResNet-18 for CIFAR-10).

The counterfactual networks live in :mod:`databrittle.mlp_trainer` (digits) and
:mod:`databrittle.architectures` (CIFAR-sized).

- :class:`SmallResNet`: a 3-stage pre-activation-free ResNet for small (8x8 .. 32x32)
  inputs, the digits stand-in for the paper's ResNet-18 feature extractor (paper section 3,
  A.1). Its output is the penultimate ("backbone") feature of size ``8 * width``.
"""

from __future__ import annotations


import torch
from torch import nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """ResNet for small images: a 3x3 stem conv (no max-pool), three stages of width ``w``, ``2w`` and ``4w`` (one BasicBlock each; stride 1, 2, 2), then a
    final 1x1 conv to ``8w`` channels, global average pooling.

    Input (n, c, h, w) float in [0, 1]; output (n, 8 * width) backbone features. On 8x8
    digits the spatial sizes are 8 -> 8 -> 4 -> 2. No max-pool or 7x7 stem: an 8x8 image
    would vanish under ImageNet's stem.
    """

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.feature_dim = 8 * width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.stages = nn.Sequential(BasicBlock(width, width, 1), BasicBlock(width, 2 * width, 2),
                                    BasicBlock(2 * width, 4 * width, 2))
        self.head = nn.Sequential(nn.Conv2d(4 * width, 8 * width, 1, bias=False), nn.BatchNorm2d(8 * width), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stages(self.stem(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class CifarResNet18(nn.Module):
    """torchvision's ResNet-18 with the CIFAR stem of Lightly's CIFAR-10 benchmark (paper
    section 4.3: the MoCo ResNet-18 trained with the Lightly benchmark code): a 3x3 stride-1
    first convolution and no max-pool, so 32x32 inputs keep their resolution in the first
    stage. Input (n, c, h, w) float in [0, 1]; output (n, 512) pooled penultimate features.
    """

    feature_dim = 512

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        import torchvision

        net = torchvision.models.resnet18()
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


BACKBONE_WIDTHS = {"resnet18": 64}
"""Backbones whose width is fixed by their definition (the config's ``backbone.width`` must match)."""


def build_backbone(name: str, in_channels: int, width: int) -> nn.Module:
    """The feature-extractor backbone named in the config's ``backbone.name``; it has a
    ``feature_dim`` attribute (the width of its pooled output)."""
    if name == "resnet_small":
        return SmallResNet(in_channels=in_channels, width=width)
    if name == "resnet18":
        if width != BACKBONE_WIDTHS[name]:
            raise ValueError(f"backbone resnet18 has width 64, not {width}")
        return CifarResNet18(in_channels=in_channels)
    raise ValueError(f"unknown backbone {name!r}")
