"""The official pretrained MoCo v2 ResNet-50 as a frozen ImageNet feature extractor.

Paper sections 4.1 and 4.3: on ImageNet the paper does not train its own extractor but
downloads a ResNet-50 pretrained with MoCo from facebookresearch/moco (footnote 3). The
paper names neither the MoCo version nor the epochs; we take that release's strongest
model, ``moco_v2_800ep_pretrain.pth.tar`` (MoCo v2, 800 epochs), as the default to cite.
Appendix A.3.1 also applies ImageNet-pretrained extractors to CIFAR-10 (there MoCo v3 and
DINO checkpoints from vissl's model zoo, a different format not read here); for that use
:func:`extract_pretrained_features` upsamples the 32x32 images to the 224 px input size.

Checkpoint format of that release (``torch.save`` of a dict):

- ``state_dict``: the DistributedDataParallel-wrapped MoCo module, keys
  ``module.encoder_q.<torchvision resnet50 key>`` for the query encoder, whose ``fc`` is the
  MLP head (``module.encoder_q.fc.0.*``, ``fc.2.*``), ``module.encoder_k.*`` (the momentum
  key encoder), ``module.queue`` (128 x 65536) and ``module.queue_ptr``;
- ``epoch`` (int), ``arch`` (``"resnet50"``) and ``optimizer`` (the SGD state dict).

:func:`load_moco_v2_resnet50` keeps only the query encoder without its head, on
``torchvision.models.resnet50()`` with ``fc`` replaced by ``Identity``, so the model returns
the 2048-d globally average-pooled penultimate features (paper section 3). The file is
checked against a caller-supplied sha256 before anything is unpickled and read with
``torch.load(weights_only=True)`` (tensors and plain containers only; the release's
optimizer state is such a container).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from databrittle.errors import InputError

PREFIX = "module.encoder_q."
HEAD_PREFIX = PREFIX + "fc."
FEATURE_DIM = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB mean and std of ImageNet, the normalisation MoCo was trained with."""


def sha256_of(path: str | os.PathLike, chunk_bytes: int = 1 << 24) -> str:
    """Hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, sha256: str) -> None:
    """Raise a one-line :class:`InputError` naming ``path`` when it is missing or its
    sha256 differs from ``sha256`` (hex, case-insensitive)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: pretrained checkpoint not found")
    expected = str(sha256).strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise InputError(f"{path}: expected sha256 {sha256!r} is not 64 hex digits")
    actual = sha256_of(path)
    if actual != expected:
        raise InputError(f"{path}: sha256 {actual}, expected {expected}")


def _load(path: Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError (a non-weights object), RuntimeError, EOFError, ...
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise InputError(f"{path}: not loadable with torch.load(weights_only=True) "
                         f"({type(error).__name__}: {reason})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise InputError(f"{path}: not a MoCo checkpoint (expected a dict with a 'state_dict' dict)")
    arch = checkpoint.get("arch", "resnet50")
    if arch != "resnet50":
        raise InputError(f"{path}: checkpoint 'arch' is {arch!r}, expected 'resnet50'")
    return checkpoint


def query_backbone_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``module.encoder_q.<key>`` -> ``<key>`` for every query-encoder key except its
    ``fc`` head; key encoder, queue and anything else are dropped."""
    return {key[len(PREFIX):]: value for key, value in state_dict.items()
            if key.startswith(PREFIX) and not key.startswith(HEAD_PREFIX)}


def resnet50_backbone() -> nn.Module:
    """Untrained ``torchvision.models.resnet50`` with ``fc = Identity``: (n, 3, h, w) -> (n, 2048)."""
    from torchvision.models import resnet50

    with torch.random.fork_rng(devices=[]):  # init draws are overwritten; keep the global RNG untouched
        model = resnet50(weights=None)
    model.fc = nn.Identity()
    return model


def load_moco_v2_resnet50(path: str | os.PathLike, sha256: str) -> nn.Module:
    """The query encoder of a MoCo (v1/v2) ResNet-50 checkpoint as a feature extractor.

    Args:
        path: the release file, e.g. ``moco_v2_800ep_pretrain.pth.tar``.
        sha256: its expected hex sha256 digest, checked before the file is read.

    Returns:
        ``torchvision.models.resnet50`` with ``fc = Identity`` in eval mode, on the CPU:
        float (n, 3, h, w) ImageNet-normalised input -> float (n, 2048) features.

    Raises:
        InputError: one line naming ``path`` when the file is missing, its sha256
            differs, it is not loadable with ``weights_only=True`` or not such a
            checkpoint, or the mapped keys do not match the backbone (the first few
            missing and unexpected keys are named).
    """
    path = Path(path)
    verify_sha256(path, sha256)
    state = query_backbone_state(_load(path)["state_dict"])
    model = resnet50_backbone()
    try:  # size mismatches raise even with strict=False
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        reason = " ".join(str(error).split())[:300]
        raise InputError(f"{path}: query encoder weights do not fit resnet50 ({reason})") from None
    if result.missing_keys or result.unexpected_keys:
        raise InputError(f"{path}: query encoder does not match torchvision's resnet50 backbone (missing "
                         f"{_few(result.missing_keys, PREFIX)}, unexpected {_few(result.unexpected_keys, PREFIX)})")
    return model.eval()


def _few(keys: list[str], prefix: str, n: int = 5) -> str:
    if not keys:
        return "none"
    shown = ", ".join(prefix + key for key in keys[:n])
    return f"{len(keys)}: {shown}{', ...' if len(keys) > n else ''}"


def preprocess(images: np.ndarray, resize: int | None = 224, crop: int | None = None,
               device: torch.device | None = None) -> torch.Tensor:
    """uint8 (n, h, w, 3) RGB -> float32 (n, 3, s, s) on ``device``, resized and ImageNet-normalised.

    The shorter side is resized to ``resize`` (bilinear, antialiased when shrinking) and
    the centre ``crop`` x ``crop`` square is kept (``crop`` defaults to ``resize``; a
    square image is simply resized). ``resize=None`` keeps the input size (no crop).
    Values are scaled to [0, 1], then normalised with :data:`IMAGENET_MEAN` / ``_STD``.
    The uint8 batch is moved to ``device`` (default CPU) first, so resizing runs there.
    """
    _check_images(images)
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device or "cpu")
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if resize is not None:
        x = _resize_shorter(x, resize)
        x = _centre_crop(x, crop or resize)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _check_images(images: np.ndarray) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise InputError(f"images: expected a uint8 array (n, h, w, 3), got "
                         f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")


def _resize_shorter(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[2:]
    scale = size / min(h, w)
    target = (max(size, round(h * scale)), max(size, round(w * scale)))
    if target == (h, w):
        return x
    return F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=scale < 1)


def _centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[2:]
    if size > min(h, w):
        raise InputError(f"crop {size} is larger than the resized images ({h}x{w})")
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, :, top:top + size, left:left + size]


@torch.no_grad()
def extract_pretrained_features(model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 256,
                                resize: int | None = 224, crop: int | None = None) -> np.ndarray:
    """Penultimate features of ``images`` under a pretrained backbone.

    Args:
        model: e.g. :func:`load_moco_v2_resnet50`'s; run in eval mode (BatchNorm running
            statistics), moved to ``device``.
        images: uint8 (n, h, w, 3) RGB, e.g. CIFAR-10's (n, 32, 32, 3).
        device: where to run.
        batch_size: images per forward pass (memory only; results do not depend on it
            beyond floating-point reassociation on some devices).
        resize, crop: see :func:`preprocess`; default 224, the resolution MoCo's ResNet-50
            was trained and evaluated at (CIFAR-10 images are upsampled to it). For
            ImageNet images, ``resize=256, crop=224`` is MoCo's evaluation transform.

    Returns:
        float32 (n, 2048) for a ResNet-50 backbone, row i = image i. ``images`` is held
        in memory whole: for ImageNet's 1.28M images call this per chunk.
    """
    _check_images(images)
    if batch_size < 1:
        raise InputError(f"batch_size {batch_size}: expected >= 1")
    model = model.to(device).eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        x = preprocess(images[start:start + batch_size], resize, crop, device)
        chunks.append(model(x).float().cpu())
    if not chunks:
        return np.zeros((0, FEATURE_DIM), dtype=np.float32)
    return torch.cat(chunks).numpy().astype(np.float32, copy=False)


@torch.no_grad()
def extract_beton_features(model: nn.Module, images, device: torch.device, resolution: int = 224) -> np.ndarray:
    """Penultimate features of images read from a beton (ImageNet), float32 (n, 2048).

    Each image is MoCo's evaluation view as FFCV decodes it: the centre 224/256 crop of its
    shorter side resized to ``resolution`` (224) px, then ImageNet-normalised
    (:func:`databrittle.beton_images.centre_crop_batches`); row i = row i of ``images``
    (a :class:`~databrittle.beton_images.BetonImages`).
    """
    from databrittle.beton_images import centre_crop_batches, normalise

    model = model.to(device).eval()
    chunks = [model(normalise(batch)).float().cpu() for batch in centre_crop_batches(images, resolution, device)]
    if not chunks:
        return np.zeros((0, FEATURE_DIM), dtype=np.float32)
    return torch.cat(chunks).numpy().astype(np.float32, copy=False)


PRETRAINED_METHOD = "moco_v2_resnet50"
"""``config["method"]`` of a payload that holds an imported MoCo v2 ResNet-50."""


def pretrained_payload(path: str | os.PathLike, sha256: str) -> dict[str, Any]:
    """An extractor payload (as :func:`databrittle.ssl.save_checkpoint` stores) holding the
    imported backbone: ``{"backbone": state_dict, "config": {"method": "moco_v2_resnet50",
    "source": {...}}}``; :func:`databrittle.features.extract_features` reads it."""
    model = load_moco_v2_resnet50(path, sha256)
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    return {"backbone": state, "config": {"method": PRETRAINED_METHOD,
                                          "source": {"file": Path(path).name, "sha256": sha256}}}


def backbone_from_payload(payload: dict[str, Any]) -> nn.Module:
    """The ResNet-50 feature extractor of a :func:`pretrained_payload` (eval mode, CPU)."""
    model = resnet50_backbone()
    model.load_state_dict(payload["backbone"])
    return model.eval()
