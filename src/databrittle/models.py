"""Networks: the feature-extractor backbone for small images.

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


def build_backbone(name: str, in_channels: int, width: int) -> SmallResNet:
    """The feature-extractor backbone named in the config's ``backbone.name``."""
    if name != "resnet_small":
        raise ValueError(f"unknown backbone {name!r}")
    return SmallResNet(in_channels=in_channels, width=width)
