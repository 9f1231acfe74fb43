"""Batched, on-tensor augmentations for small images (8x8 digits .. 32x32 CIFAR-10).

The feature extractors (paper section 3, section 4.1) are trained on two augmented views
per image. The paper trains MoCo with Lightly's CIFAR-10 benchmark code, whose transform
is an ImageNet-style pipeline: random resized crop, horizontal flip, colour jitter,
random grayscale and (for ImageNet) Gaussian blur. Most of that is meaningless or harmful
on 8x8 grayscale digits, so the default dataset uses :class:`DigitAugment` instead
(a documented deviation from the paper):

- **Random resized crop to 224 / scale (0.08, 1)** would crop away most of a digit: at 8x8
  an 8% crop is ~2x2 pixels and no longer shows the digit. We use a mild random *affine*
  instead (rotation, scale, translation), which keeps the whole digit in view, like the
  natural variation of handwriting.
- **Horizontal flip** changes the identity of digits (2 <-> 5-like shapes, 3 <-> E), so it
  would teach invariance to a class-changing transform. Not used.
- **Colour jitter, random grayscale, solarize**: the data are single-channel grayscale,
  so hue/saturation/grayscale are undefined; we keep only an intensity (gain/bias)
  jitter, the grayscale analogue of brightness/contrast.
- **Gaussian blur**: at 8x8 a blur kernel of even 3 pixels erases the strokes; we add
  small pixel noise (std 0.02) instead.
- **Random erasing** of a small patch (cutout, at most 3x3 pixels at 8x8) is implemented
  but OFF by default (``erase_p=0``): on 8x8 digits a 3x3 patch can delete the stroke
  that tells two classes apart (the top bar of a 7, the loop of a 9), and it lowered the
  MoCo kNN accuracy on the digits test split (60 epochs, width 32, k = 20): noise 0.05 +
  erase_p 0.5 gave 0.972 / 0.972 (seeds 0 / 1), noise 0.02 + erase_p 0.25 (max 2x2)
  0.986 / 0.972, noise 0.02 without erasing 0.989 / 0.992 (the default).

Everything is batched on tensors (one ``affine_grid``/``grid_sample`` for the whole
batch, masks built by broadcasting): no per-image PIL loop. Every random draw takes an
explicit :class:`torch.Generator`, so a view depends only on the generator's state
(DESIGN.md section 5: identical numbers on rerun on CPU).

Tensors are float ``(n, c, h, w)`` in ``[0, 1]`` in and out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from databrittle.errors import InputError


def to_float_nchw(images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images ``(n, h, w, c)`` (HWC, 0..255) -> float32 tensor ``(n, c, h, w)`` in [0, 1].

    This is the layout the data stage stores (digits: ``(n, 8, 8, 1)``, CIFAR-10:
    ``(n, 32, 32, 3)``).

    Raises:
        InputError: the input is not a 4-d uint8 array/tensor.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(images_uint8)) if isinstance(images_uint8, np.ndarray) \
        else images_uint8
    if tensor.dtype != torch.uint8 or tensor.ndim != 4:
        raise InputError(f"images: expected a uint8 array of shape (n, h, w, c), got {tensor.dtype} "
                         f"with shape {tuple(tensor.shape)}")
    return tensor.permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` draws from U(low, high); drawn on CPU so that the stream does not depend on the device."""
    return (torch.rand(n, generator=generator) * (high - low) + low).to(device)


def random_affine(x: torch.Tensor, generator: torch.Generator, *, degrees: float = 15.0,
                  scale: tuple[float, float] = (0.9, 1.1), translate: float = 0.125) -> torch.Tensor:
    """Random rotation, isotropic scale and translation per image (bilinear, zero padding).

    Args:
        x: ``(n, c, h, w)`` float in [0, 1].
        generator: source of randomness (CPU generator).
        degrees: rotation angle drawn from U(-degrees, degrees).
        scale: zoom factor drawn from U(*scale) (> 1 enlarges the digit).
        translate: shift drawn from U(-translate, translate) as a fraction of the side,
            per axis (0.125 = 1 pixel at 8x8, 4 pixels at 32x32).

    Returns:
        ``(n, c, h, w)`` in [0, 1]; uncovered pixels are 0 (the digits' background).
    """
    n = x.shape[0]
    angle = _uniform(n, -degrees, degrees, generator, x.device) * (math.pi / 180.0)
    zoom = _uniform(n, scale[0], scale[1], generator, x.device)
    shift = torch.stack([_uniform(n, -translate, translate, generator, x.device),
                         _uniform(n, -translate, translate, generator, x.device)], dim=1)
    # affine_grid maps output coordinates (normalised to [-1, 1]) to input coordinates, so
    # the matrix is the inverse transform: rotate by -angle, divide by the zoom, and shift
    # by -2 * translate (a shift of the full side is 2 in normalised coordinates).
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, sin, -2.0 * shift[:, 0]], dim=1),
                         torch.stack([-sin, cos, -2.0 * shift[:, 1]], dim=1)], dim=1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 1.0)


def random_intensity(x: torch.Tensor, generator: torch.Generator, *, gain: tuple[float, float] = (0.7, 1.3),
                     bias: float = 0.1) -> torch.Tensor:
    """Per-image intensity jitter ``x * g + b`` (grayscale brightness/contrast), clamped to [0, 1].

    Args:
        x: ``(n, c, h, w)`` float in [0, 1].
        generator: source of randomness.
        gain: multiplicative factor drawn from U(*gain) (contrast of ink vs background).
        bias: additive offset drawn from U(-bias, bias) (brightness).
    """
    n = x.shape[0]
    g = _uniform(n, gain[0], gain[1], generator, x.device).view(n, 1, 1, 1)
    b = _uniform(n, -bias, bias, generator, x.device).view(n, 1, 1, 1)
    return (x * g + b).clamp_(0.0, 1.0)


def gaussian_noise(x: torch.Tensor, generator: torch.Generator, *, std: float = 0.02) -> torch.Tensor:
    """Add i.i.d. N(0, std^2) pixel noise, clamped to [0, 1]. ``x``: ``(n, c, h, w)``."""
    if std <= 0:
        return x
    noise = torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
    return (x + std * noise).clamp_(0.0, 1.0)


def random_erase(x: torch.Tensor, generator: torch.Generator, *, p: float = 0.5,
                 max_fraction: float = 0.375, value: float = 0.0) -> torch.Tensor:
    """With probability ``p`` per image, set a random rectangle to ``value`` (cutout).

    The rectangle's height and width are drawn independently and uniformly from
    1 .. ``max(1, round(max_fraction * side))`` pixels (1..3 at 8x8, 1..12 at 32x32), its
    top-left corner uniformly among the positions where it fits.

    Args:
        x: ``(n, c, h, w)`` float in [0, 1].
        generator: source of randomness.
        p: probability that an image gets a patch.
        max_fraction: largest patch side as a fraction of the image side.
        value: fill value (0 = background for digits).
    """
    if p <= 0:
        return x
    n, _, h, w = x.shape
    max_h, max_w = max(1, round(max_fraction * h)), max(1, round(max_fraction * w))
    apply = torch.rand(n, generator=generator) < p
    ph = torch.randint(1, max_h + 1, (n,), generator=generator)
    pw = torch.randint(1, max_w + 1, (n,), generator=generator)
    top = (torch.rand(n, generator=generator) * (h - ph + 1)).floor().long()
    left = (torch.rand(n, generator=generator) * (w - pw + 1)).floor().long()
    rows, cols = torch.arange(h), torch.arange(w)
    in_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] < (top + ph)[:, None])      # (n, h)
    in_cols = (cols[None, :] >= left[:, None]) & (cols[None, :] < (left + pw)[:, None])    # (n, w)
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None])[:, None].to(x.device)
    return x.masked_fill(mask, value)


@dataclass(frozen=True)
class DigitAugment:
    """The view-generating augmentation for small grayscale (or colour) images.

    Applied in this order: :func:`random_affine`, :func:`random_intensity`,
    :func:`gaussian_noise`, :func:`random_erase`. The defaults are fit for 8x8 digits
    (see the module docstring for why Lightly's ImageNet defaults are not used: no
    random-resized-crop to 224, no flips, no colour jitter/grayscale/solarize, no blur).

    Attributes:
        degrees: max rotation in degrees (handwriting slant), U(-15, 15).
        scale: zoom range, U(0.9, 1.1).
        translate: max shift as a fraction of the side (0.125 = 1 px at 8x8).
        gain: contrast factor range.
        bias: max brightness offset.
        noise_std: std of the additive Gaussian pixel noise (0 disables it).
        erase_p: probability of erasing a patch (default 0: off, see the module docstring).
        erase_max_fraction: largest erased side as a fraction of the image side.

    Call: ``augment(x, generator)`` with ``x`` float ``(n, c, h, w)`` in [0, 1] returns a
    new tensor of the same shape in [0, 1]; the result depends only on ``x`` and the
    generator's state.
    """

    degrees: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.125
    gain: tuple[float, float] = (0.7, 1.3)
    bias: float = 0.1
    noise_std: float = 0.02
    erase_p: float = 0.0
    erase_max_fraction: float = 0.375

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.ndim != 4 or not x.is_floating_point():
            raise InputError(f"augment: expected a float tensor (n, c, h, w), got {x.dtype} {tuple(x.shape)}")
        x = random_affine(x, generator, degrees=self.degrees, scale=self.scale, translate=self.translate)
        x = random_intensity(x, generator, gain=self.gain, bias=self.bias)
        x = gaussian_noise(x, generator, std=self.noise_std)
        return random_erase(x, generator, p=self.erase_p, max_fraction=self.erase_max_fraction)

    def as_dict(self) -> dict[str, float | list[float]]:
        """Plain-typed parameters (for checkpoints and sidecars)."""
        return {k: list(v) if isinstance(v, tuple) else float(v) for k, v in asdict(self).items()}


# ---------------------------------------------------------------- CIFAR-10 (paper section 4.3)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights (torchvision's rgb_to_grayscale)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """``(n, 3, h, w)`` -> ``(n, 1, h, w)`` luma."""
    weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def random_resized_crop(x: torch.Tensor, generator: torch.Generator, *, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop a random box of area fraction U(*scale) and aspect ratio log-U(*ratio) per image,
    resized back to the input size (bilinear), all images in one ``grid_sample``.

    torchvision's RandomResizedCrop redraws up to 10 times when a box does not fit; here a
    box side larger than the image is clipped to it (the same box then covers the image
    along that axis), which keeps the batch to one draw per image.
    """
    n = x.shape[0]
    area = _uniform(n, scale[0], scale[1], generator, x.device)
    log_ratio = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator, x.device)
    width = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)  # fraction of the side
    height = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    centre_x = (_uniform(n, -1.0, 1.0, generator, x.device) * (1.0 - width))
    centre_y = (_uniform(n, -1.0, 1.0, generator, x.device) * (1.0 - height))
    zeros = torch.zeros_like(width)
    theta = torch.stack([torch.stack([width, zeros, centre_x], dim=1),
                         torch.stack([zeros, height, centre_y], dim=1)], dim=1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_flip(x: torch.Tensor, generator: torch.Generator, *, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def colour_jitter(x: torch.Tensor, generator: torch.Generator, *, p: float = 0.8, brightness: float = 0.4,
                  contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1) -> torch.Tensor:
    """torchvision-style ColorJitter, applied to each image with probability ``p``, in a
    fixed order (brightness, contrast, saturation, hue; torchvision shuffles the order).

    Factors per image: brightness ``x * U(1 +- b)``; contrast towards the image's mean luma
    by ``U(1 +- c)``; saturation towards the pixel's luma by ``U(1 +- s)``; hue rotated by
    ``U(-h, h)`` turns of the chroma plane in YIQ space (torchvision shifts hue in HSV; the
    YIQ rotation is the linear approximation, exact on the luma axis). One-channel images
    get brightness and contrast only. Output clamped to [0, 1].
    """
    n = x.shape[0]
    apply = (torch.rand(n, generator=generator) < p).to(x.device).view(n, 1, 1, 1)
    b = _uniform(n, 1 - brightness, 1 + brightness, generator, x.device).view(n, 1, 1, 1)
    c = _uniform(n, 1 - contrast, 1 + contrast, generator, x.device).view(n, 1, 1, 1)
    s = _uniform(n, 1 - saturation, 1 + saturation, generator, x.device).view(n, 1, 1, 1)
    turn = _uniform(n, -hue, hue, generator, x.device)
    out = (x * b).clamp(0.0, 1.0)
    luma = _gray(out) if out.shape[1] == 3 else out
    out = ((out - luma.mean((1, 2, 3), keepdim=True)) * c + luma.mean((1, 2, 3), keepdim=True)).clamp(0.0, 1.0)
    if out.shape[1] == 3:
        luma = _gray(out)
        out = ((out - luma) * s + luma).clamp(0.0, 1.0)
        out = _rotate_hue(out, turn).clamp(0.0, 1.0)
    return torch.where(apply, out, x)


_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def _rotate_hue(x: torch.Tensor, turn: torch.Tensor) -> torch.Tensor:
    """Rotate each image's chroma (I, Q) by ``turn`` (n,) full turns."""
    to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=x.dtype, device=x.device)
    yiq = torch.einsum("ij,njhw->nihw", to_yiq, x)
    angle = (2 * math.pi * turn).to(x.dtype).view(-1, 1, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], dim=1)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(to_yiq), yiq)


def random_grayscale(x: torch.Tensor, generator: torch.Generator, *, p: float = 0.2) -> torch.Tensor:
    """Replace each colour image by its luma (3 equal channels) with probability ``p``."""
    mask = (torch.rand(x.shape[0], generator=generator) < p).to(x.device).view(-1, 1, 1, 1)
    if x.shape[1] != 3:
        return x
    return torch.where(mask, _gray(x).expand_as(x), x)


@dataclass(frozen=True)
class CifarAugment:
    """The MoCo v2 view transform of Lightly's CIFAR-10 benchmark (paper section 4.3: "using
    the Lightly benchmark code"), batched on tensors: random resized crop to the input size
    (scale 0.08-1), horizontal flip (p 0.5), colour jitter (p 0.8; brightness, contrast,
    saturation 0.4, hue 0.1), random grayscale (p 0.2); no blur at 32x32 (the benchmark
    disables it for CIFAR-10). Normalisation is left to the network input (none here: the
    backbone sees [0, 1] pixels, like the digits pipeline).

    Call: ``augment(x, generator)`` with float ``(n, c, h, w)`` in [0, 1] -> same shape in [0, 1].
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    gray_p: float = 0.2

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.ndim != 4 or not x.is_floating_point():
            raise InputError(f"augment: expected a float tensor (n, c, h, w), got {x.dtype} {tuple(x.shape)}")
        x = random_resized_crop(x, generator, scale=self.crop_scale, ratio=self.crop_ratio)
        x = random_flip(x, generator, p=self.flip_p)
        x = colour_jitter(x, generator, p=self.jitter_p, brightness=self.brightness, contrast=self.contrast,
                          saturation=self.saturation, hue=self.hue)
        return random_grayscale(x, generator, p=self.gray_p).clamp(0.0, 1.0)

    def as_dict(self) -> dict[str, float | list[float]]:
        """Plain-typed parameters (for checkpoints and sidecars)."""
        return {k: list(v) if isinstance(v, tuple) else float(v) for k, v in asdict(self).items()}


AUGMENTATIONS = {"digits": DigitAugment, "cifar": CifarAugment}
"""The view augmentations by config name (``ssl.augment``, ``supervised.augment``)."""


def build_augment(name: str) -> DigitAugment | CifarAugment:
    """The augmentation named in the config (``digits`` default, ``cifar`` for CIFAR-10)."""
    if name not in AUGMENTATIONS:
        raise InputError(f"augment {name!r}: expected one of {list(AUGMENTATIONS)}")
    return AUGMENTATIONS[name]()
