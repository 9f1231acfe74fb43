"""CIFAR-sized image classifiers for the transfer experiments.

The paper ("Data brittleness estimation with self-supervised features") computes data
brittleness with a ResNet-9 counterfactual model (section A.2) and then checks that the
ranking transfers to other architectures (section 4.4, Table 2, appendix B). This module
holds all of those networks, written from scratch in plain PyTorch:

====================  ==========================================================
registry name         network
====================  ==========================================================
``"resnet9"``         :class:`ResNet9` (the counterfactual model)
``"mobilenetv2"``     :class:`MobileNetV2` (CIFAR variant)
``"vit"``             :class:`ViT` (patch size 4)
``"swin_t"``          :class:`SwinTransformer` (Swin-T layout, CIFAR-sized)
``"mlp_mixer"``       :class:`MLPMixer` (patch size 4)
``"convmixer"``       :class:`ConvMixer` (dim 256, depth 8, kernel 5, patch 2)
``"resnet18"``        torchvision's ImageNet ResNet-18 (paper A.2, ImageNet protocol)
====================  ==========================================================

``resnet18`` is the ImageNet network (7x7 stem, max-pool; any input size of at least 32
px, trained at 160/192 px in the paper) and is torchvision's, not written here.

Every model maps a float batch ``(n, in_channels, 32, 32)`` to logits ``(n, num_classes)``
and takes ``num_classes`` and ``in_channels`` keyword arguments plus a size knob
(``width``, ``width_mult``, ``dim``/``depth`` or ``embed_dim``/``depths``) so that a tiny
variant is cheap enough for CPU tests. All models accept ``torch.channels_last`` inputs,
train with batch norm on batches of two, and run under ``torch.autocast`` (bfloat16).
Attention uses :func:`torch.nn.functional.scaled_dot_product_attention`.

Use :func:`build_model` (or the :data:`ARCHITECTURES` registry) to construct one by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "ConvMixer",
    "MLPMixer",
    "MobileNetV2",
    "ResNet9",
    "SwinTransformer",
    "ViT",
    "build_model",
    "shifted_window_mask",
]


def _scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1."""
    return max(1, int(round(channels * width)))


# --------------------------------------------------------------------------------------
# ResNet-9
# --------------------------------------------------------------------------------------


def _conv_bn(c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    """Bias-free convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    """``x + body(x)``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Scale(nn.Module):
    """Multiplies its input by a fixed constant (no parameters)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class ResNet9(nn.Sequential):
    """ResNet-9: the paper's counterfactual model (section A.2).

    Design source: the ResNet-9 of the FFCV CIFAR-10 example, which the paper's released
    code trains (a slimmed relative of Page's DAWNBench network). Spatially, for a 32x32
    input: a 3x3 conv-BN-ReLU to 64 channels at full resolution; a 5x5 stride-2 conv-BN-ReLU
    to 128 channels (16x16); a residual pair of 3x3 conv-BN-ReLU at 128 channels; a 3x3
    conv-BN-ReLU to 256 channels followed by 2x2 max pooling (8x8); a residual pair at 256
    channels; an unpadded 3x3 conv-BN-ReLU down to 128 channels (6x6); global max pooling;
    a bias-free linear classifier whose output is scaled by 0.2. All convolutions are
    bias-free (batch norm supplies the shift).

    Input: float ``(n, in_channels, H, W)`` with H, W >= 16 (32x32 for CIFAR).
    Output: logits ``(n, num_classes)``.

    ``width`` multiplies every channel count (1.0: 64/128/256/128), for cheap tests.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        c64, c128, c256 = _scaled(64, width), _scaled(128, width), _scaled(256, width)
        super().__init__(
            _conv_bn(in_channels, c64, kernel_size=3, stride=1, padding=1),
            _conv_bn(c64, c128, kernel_size=5, stride=2, padding=2),
            _Residual(nn.Sequential(_conv_bn(c128, c128), _conv_bn(c128, c128))),
            _conv_bn(c128, c256, kernel_size=3, stride=1, padding=1),
            nn.MaxPool2d(2),
            _Residual(nn.Sequential(_conv_bn(c256, c256), _conv_bn(c256, c256))),
            _conv_bn(c256, c128, kernel_size=3, stride=1, padding=0),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(c128, num_classes, bias=False),
            _Scale(0.2),
        )


# --------------------------------------------------------------------------------------
# MobileNetV2
# --------------------------------------------------------------------------------------


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` without losing more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depthwise, linear 1x1 projection."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.body = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018), CIFAR variant.

    Design source: the paper's Table 2 layout of bottleneck stages (expansion t, channels
    c, repeats n, stride s) = (1,16,1,1), (6,24,2,s), (6,32,3,2), (6,64,4,2), (6,96,3,1),
    (6,160,3,2), (6,320,1,1), followed by a 1x1 conv to 1280 channels, global average
    pooling and a linear classifier. Adapted to 32x32 inputs: the stem 3x3 conv has stride
    1 (not 2) and the second stage has stride 1 (not 2), so the spatial path is
    32 -> 32 -> 32 -> 16 -> 8 -> 8 -> 4 -> 4 instead of collapsing to 1x1.

    Input: float ``(n, in_channels, 32, 32)``. Output: logits ``(n, num_classes)``.

    ``width_mult`` scales the channels of the stem and every stage (rounded to multiples
    of 8); the last conv keeps 1280 channels unless ``width_mult > 1`` or
    ``last_channels`` is given. ``dropout`` is applied before the classifier (default 0).
    """

    STAGES: tuple[tuple[int, int, int, int], ...] = (
        (1, 16, 1, 1),
        (6, 24, 2, 1),  # stride 2 in the ImageNet network
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width_mult: float = 1.0,
        last_channels: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c_stem = _make_divisible(32 * width_mult)
        if last_channels is None:
            last_channels = _make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, c_stem, 3, stride=1, padding=1, bias=False),  # stride 2 on ImageNet
            nn.BatchNorm2d(c_stem),
            nn.ReLU6(inplace=True),
        ]
        c_in = c_stem
        for expansion, channels, repeats, stride in self.STAGES:
            c_out = _make_divisible(channels * width_mult)
            for i in range(repeats):
                layers.append(_InvertedResidual(c_in, c_out, stride if i == 0 else 1, expansion))
                c_in = c_out
        layers += [nn.Conv2d(c_in, last_channels, 1, bias=False), nn.BatchNorm2d(last_channels), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --------------------------------------------------------------------------------------
# Transformer building blocks
# --------------------------------------------------------------------------------------


class _SelfAttention(nn.Module):
    """Multi-head self-attention over tokens ``(b, n, dim)`` via ``scaled_dot_product_attention``.

    ``attn_mask`` (optional) is an additive float mask broadcastable to
    ``(b, heads, n, n)``; it is cast to the query dtype (autocast-safe).
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (b, heads, n, head_dim)
        if attn_mask is not None:
            attn_mask = attn_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _MLP(nn.Sequential):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


def _patchify(patch_embed: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Conv patch embedding, then ``(b, c, h, w)`` -> tokens ``(b, h*w, c)`` (any memory format)."""
    return patch_embed(x).flatten(2).transpose(1, 2)


def _check_image_size(img_size: int, patch_size: int) -> int:
    if img_size % patch_size:
        raise ValueError(f"image size {img_size} is not divisible by patch size {patch_size}")
    return img_size // patch_size


# --------------------------------------------------------------------------------------
# ViT
# --------------------------------------------------------------------------------------


class _ViTBlock(nn.Module):
    """Pre-norm transformer encoder block."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _MLP(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Vision Transformer (Dosovitskiy et al. 2021) with patch size 4 for 32x32 images.

    Design source: the original ViT (non-overlapping linear patch embedding, learned
    class token and absolute position embedding, pre-norm encoder blocks, classification
    from the final class token), sized for CIFAR: 4x4 patches give 64 tokens + 1 class
    token. Defaults: dim 256, depth 6, 8 heads, MLP hidden 2 * dim.

    Input: float ``(n, in_channels, img_size, img_size)``. Output: logits ``(n, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        img_size: int = 32,
        patch_size: int = 4,
        dim: int = 256,
        depth: int = 6,
        heads: int = 8,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        grid = _check_image_size(img_size, patch_size)
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.Sequential(*[_ViTBlock(dim, heads, int(dim * mlp_ratio)) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = _patchify(self.patch_embed, x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        tokens = self.norm(self.blocks(tokens))
        return self.head(tokens[:, 0])


# --------------------------------------------------------------------------------------
# Swin Transformer
# --------------------------------------------------------------------------------------


def _window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(b, h, w, c)`` -> ``(b * num_windows, window * window, c)``, windows in row-major order per image."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def _window_merge(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_window_partition`: -> ``(b, h, w, c)``."""
    c = windows.shape[-1]
    x = windows.reshape(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """Which token pairs may attend to each other inside each window of a cyclically shifted map.

    After rolling the ``height x width`` token map by ``-shift`` in both directions, windows
    at the bottom/right edges contain tokens that were not neighbours in the image. Tokens
    are labelled by the region (of the 3 x 3 grid cut at ``-window`` and ``-shift``) they
    fall in after the roll; only same-region pairs may attend.

    Returns a bool tensor ``(num_windows, window**2, window**2)``; True means "allowed".
    """
    region = torch.zeros(height, width, dtype=torch.long)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in cuts:
        for cols in cuts:
            region[rows, cols] = label
            label += 1
    labels = _window_partition(region[None, :, :, None], window).squeeze(-1)  # (num_windows, window**2)
    return labels[:, :, None] == labels[:, None, :]


class _SwinBlock(nn.Module):
    """Swin block: (shifted) window attention with relative position bias, then an MLP.

    Operates on ``(b, h, w, dim)`` token maps of a fixed ``resolution``. If the map is no
    larger than the window, the window shrinks to the map and shifting is disabled (as in
    the original Swin).
    """

    def __init__(self, dim: int, heads: int, resolution: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        if resolution <= window:
            window, shift = resolution, 0
        if resolution % window:
            raise ValueError(f"token map {resolution}x{resolution} is not divisible by window {window}")
        self.window, self.shift, self.heads = window, shift, heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _MLP(dim, int(dim * mlp_ratio))

        self.rel_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.rel_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, N, N), each in [0, 2w-2]
        self.register_buffer("rel_index", rel[0] * (2 * window - 1) + rel[1], persistent=False)
        mask: torch.Tensor | None = None
        if shift > 0:
            allowed = shifted_window_mask(resolution, resolution, window, shift)
            mask = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))[:, None]  # (nW, 1, N, N)
        self.register_buffer("shift_mask", mask, persistent=False)

    def _attention_bias(self, batch: int) -> torch.Tensor:
        n = self.window * self.window
        bias = self.rel_bias_table[self.rel_index.reshape(-1)].reshape(n, n, self.heads).permute(2, 0, 1)
        if self.shift_mask is None:
            return bias[None]  # (1, heads, N, N)
        # Windows are ordered image-major by _window_partition, so the per-window mask repeats per image.
        return (self.shift_mask + bias[None]).repeat(batch, 1, 1, 1)  # (b * nW, heads, N, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(_window_partition(y, self.window), attn_mask=self._attention_bias(b))
        y = _window_merge(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class _PatchMerging(nn.Module):
    """2x2 neighbourhood concat (4C) -> LayerNorm -> linear to 2C: halves the resolution."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinTransformer(nn.Module):
    """Swin Transformer, Swin-T layout (Liu et al. 2021), CIFAR-sized.

    Design source: Swin-T (depths (2, 2, 6, 2), heads (3, 6, 12, 24), embed dim 96, MLP
    ratio 4, relative position bias, alternating regular / shifted windows with the
    cyclic-shift attention mask, patch merging between stages, final LayerNorm + global
    average pooling). For 32x32 inputs the patch size is 2 and the window 4, so the token
    maps are 16x16, 8x8, 4x4 and 2x2; stages whose map is no larger than the window use
    a single window covering the map, without shifting. ``embed_dim``, ``depths`` and
    ``heads`` are configurable (stage ``i`` has ``embed_dim * 2**i`` channels). No
    absolute position embedding or stochastic depth.

    Input: float ``(n, in_channels, img_size, img_size)``. Output: logits ``(n, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        img_size: int = 32,
        patch_size: int = 2,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 4,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if len(depths) != len(heads):
            raise ValueError(f"depths {tuple(depths)} and heads {tuple(heads)} differ in length")
        resolution = _check_image_size(img_size, patch_size)
        if resolution % 2 ** (len(depths) - 1):
            raise ValueError(f"token map {resolution} cannot be halved {len(depths) - 1} times")
        self.img_size = img_size
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.embed_norm = nn.LayerNorm(embed_dim)
        stages: list[nn.Module] = []
        dim = embed_dim
        for i, (depth, n_heads) in enumerate(zip(depths, heads)):
            if i > 0:
                stages.append(_PatchMerging(dim))
                dim, resolution = 2 * dim, resolution // 2
            for j in range(depth):
                shift = window_size // 2 if j % 2 else 0
                stages.append(_SwinBlock(dim, n_heads, resolution, window_size, shift, mlp_ratio))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"expected {self.img_size}x{self.img_size} inputs, got {tuple(x.shape[-2:])}")
        x = self.embed_norm(self.patch_embed(x).permute(0, 2, 3, 1))  # (b, h, w, c)
        x = self.norm(self.stages(x))
        return self.head(x.mean(dim=(1, 2)))


# --------------------------------------------------------------------------------------
# MLP-Mixer
# --------------------------------------------------------------------------------------


class _MixerBlock(nn.Module):
    """Token-mixing MLP (across patches) then channel-mixing MLP, each pre-norm residual."""

    def __init__(self, num_tokens: int, dim: int, token_hidden: int, channel_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = _MLP(num_tokens, token_hidden)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = _MLP(dim, channel_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MLPMixer(nn.Module):
    """MLP-Mixer (Tolstikhin et al. 2021) with patch size 4 for 32x32 images.

    Design source: the original Mixer (linear patch embedding, blocks of token-mixing and
    channel-mixing MLPs with pre-LayerNorm and skip connections, final LayerNorm, global
    average pooling over tokens, linear head). 4x4 patches give 64 tokens. Defaults:
    dim 256, depth 8, token-MLP hidden ``dim // 2``, channel-MLP hidden ``4 * dim``.

    Input: float ``(n, in_channels, img_size, img_size)``. Output: logits ``(n, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        img_size: int = 32,
        patch_size: int = 4,
        dim: int = 256,
        depth: int = 8,
        token_mlp_ratio: float = 0.5,
        channel_mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        grid = _check_image_size(img_size, patch_size)
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        token_hidden = max(1, int(dim * token_mlp_ratio))
        channel_hidden = max(1, int(dim * channel_mlp_ratio))
        self.blocks = nn.Sequential(*[_MixerBlock(grid * grid, dim, token_hidden, channel_hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(self.blocks(_patchify(self.patch_embed, x)))
        return self.head(tokens.mean(dim=1))


# --------------------------------------------------------------------------------------
# ConvMixer
# --------------------------------------------------------------------------------------


class ConvMixer(nn.Module):
    """ConvMixer (Trockman & Kolter 2022), the paper's CIFAR-10 setting.

    Design source: "Patches Are All You Need?": a patch-embedding conv (kernel = stride =
    patch size) -> GELU -> BN, then ``depth`` blocks of [residual (depthwise k x k conv ->
    GELU -> BN)] -> pointwise 1x1 conv -> GELU -> BN, global average pooling and a linear
    head. CIFAR defaults: dim 256, depth 8, kernel 5, patch 2 (16x16 feature maps).

    Input: float ``(n, in_channels, H, W)``. Output: logits ``(n, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        dim: int = 256,
        depth: int = 8,
        kernel_size: int = 5,
        patch_size: int = 2,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, dim, patch_size, stride=patch_size),
            nn.GELU(),
            nn.BatchNorm2d(dim),
        ]
        for _ in range(depth):
            layers += [
                _Residual(nn.Sequential(
                    nn.Conv2d(dim, dim, kernel_size, groups=dim, padding=kernel_size // 2),
                    nn.GELU(),
                    nn.BatchNorm2d(dim),
                )),
                nn.Conv2d(dim, dim, 1),
                nn.GELU(),
                nn.BatchNorm2d(dim),
            ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet9": ResNet9,
    "mobilenetv2": MobileNetV2,
    "vit": ViT,
    "swin_t": SwinTransformer,
    "mlp_mixer": MLPMixer,
    "convmixer": ConvMixer,
    "resnet18": lambda num_classes, in_channels, **kwargs: _imagenet_resnet18(num_classes, in_channels, **kwargs),
}
IMAGENET_ARCHITECTURES = ("resnet18",)
"""Registry names of ImageNet-sized networks (every other one expects 32x32 input)."""


def _imagenet_resnet18(num_classes: int, in_channels: int, **kwargs: object) -> nn.Module:
    import torchvision

    model = torchvision.models.resnet18(num_classes=num_classes, **kwargs)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    return model


def build_model(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs: object) -> nn.Module:
    """Construct the architecture registered as ``name``; ``kwargs`` go to its constructor.

    Raises ``ValueError`` for an unknown name (the message lists the known ones).
    """
    try:
        factory = ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None
    return factory(num_classes=num_classes, in_channels=in_channels, **kwargs)
