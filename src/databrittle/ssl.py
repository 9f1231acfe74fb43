"""Feature extractors: self-supervised (Lightly) and their supervised counterpart.

Paper section 3 ("Feature extractor") and section 4.1: the paper trains a ResNet-18 with
MoCo (He et al., 2020) for 800 epochs on CIFAR-10 using the Lightly benchmark code, and
compares it with the same network trained with labels ("Supervised" in fig. 2) and with
BYOL, SimCLR and DINO (appendix A.3). :func:`train_ssl` is the one training loop of the
four SSL methods (heads, teachers and losses in :mod:`databrittle.ssl_objectives`):

- SGD (momentum 0.9, config weight decay) with a per-step cosine learning-rate decay to 0
  (``lightly.utils.scheduler.cosine_schedule``); teachers (MoCo's key encoder, BYOL's and
  DINO's teacher) follow the student by ``lightly.models.utils.update_momentum`` with a
  momentum that rises from the method's ``momentum`` to 1 along the same cosine
  (BYOL/MoCo-v3 style);
- MoCo: ``MoCoProjectionHead(feature_dim, feature_dim, projection_dim)`` (hidden width =
  feature width, as Lightly's CIFAR-10 benchmark uses 512-512-128 for a ResNet-18) and
  ``lightly.loss.NTXentLoss(temperature, memory_bank_size=(queue_size, projection_dim))``
  -- InfoNCE against a queue of past keys (``queue_size: 0`` gives in-batch negatives).

Deviations from the paper, for the default digits dataset (DESIGN.md section 6):

- backbone: :class:`~databrittle.models.SmallResNet` for 8x8 input instead of ResNet-18,
  60 epochs instead of 800 (config ``ssl.epochs``);
- augmentations: :class:`~databrittle.augment.DigitAugment` instead of Lightly's
  ImageNet-style transform (no flips, no colour jitter, no crop to 224; see
  :mod:`databrittle.augment`); CIFAR-10 (``augment: cifar``) uses
  :class:`~databrittle.augment.CifarAugment`, the Lightly benchmark's MoCo v2 transform;
- symmetric loss (as in Lightly's benchmark), but both directions go through ONE loss
  call on the concatenated batch: queries ``[q(v0), q(v1)]`` against keys
  ``[k(v1), k(v0)]``. Lightly's benchmark calls the loss twice, so the second call sees
  the first call's keys in the queue -- including the key of the query's own view, a
  near-duplicate used as a negative. One call reads the queue before enqueuing either.
  No shuffle-BN: on one device the batch statistics are over the whole batch anyway.
- MoCo's queue is filled with real keys before the first step instead of starting from
  Lightly's random unit vectors (see :func:`databrittle.ssl_objectives._warm_queue`:
  without it, the default digits run partly collapses).

Determinism (DESIGN.md section 5): given ``seed``, weights are initialised under
``torch.manual_seed(derive_seed(seed, ..., "init"))`` inside :func:`torch.random.fork_rng`
(the caller's global RNG state is left untouched), and the data order and augmentations
draw from their own ``torch.Generator`` objects seeded with ``derive_seed(seed, ...)``.
On CPU with the same number of threads, a rerun gives bit-identical weights.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from lightly.utils.scheduler import cosine_schedule

from databrittle.augment import CifarAugment, DigitAugment, to_float_nchw
from databrittle.errors import InputError
from databrittle.io import atomic_path
from databrittle.models import SmallResNet, build_backbone
from databrittle.seeds import derive_seed
from databrittle.ssl_objectives import OBJECTIVES, build_head

SGD_MOMENTUM = 0.9
"""Heavy-ball momentum of the SGD optimiser (MoCo paper, Lightly benchmark)."""


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays and tuples turned into plain Python types.

    Checkpoints are read with ``torch.load(weights_only=True)``, which only accepts
    tensors and plain containers/scalars.
    """
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"not a plain config value: {type(value).__name__}")


def _check_images(images: np.ndarray, labels: np.ndarray | None) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise InputError(f"images: expected a uint8 array (n, h, w, c), got "
                         f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
    if images.shape[0] < 2:
        raise InputError(f"images: need at least 2 images to train, got {images.shape[0]}")
    if labels is not None and (labels.ndim != 1 or labels.shape[0] != images.shape[0]):
        raise InputError(f"labels: expected shape ({images.shape[0]},), got {labels.shape}")


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A random partition of ``range(n)`` into batches of ``batch_size`` (the last may be
    smaller; a last batch of one image is merged into the previous one, as BatchNorm
    needs two samples in training mode)."""
    batch_size = max(2, min(batch_size, n))
    chunks = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) < 2:
        chunks[-2] = torch.cat([chunks[-2], chunks.pop()])
    return chunks


def _steps_per_epoch(n: int, batch_size: int) -> int:
    batch_size = max(2, min(batch_size, n))
    steps = math.ceil(n / batch_size)
    return steps - 1 if steps > 1 and n % batch_size == 1 else steps


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _generators(seed: int, method: str) -> tuple[torch.Generator, torch.Generator]:
    """(data-order generator, augmentation generator) for ``method`` under ``seed``."""
    order = torch.Generator().manual_seed(derive_seed(seed, method, "order"))
    augment = torch.Generator().manual_seed(derive_seed(seed, method, "augment"))
    return order, augment


def _backbone_config(backbone_cfg: dict[str, Any], images: np.ndarray) -> dict[str, Any]:
    return {"name": str(backbone_cfg["name"]), "width": int(backbone_cfg["width"]),
            "in_channels": int(images.shape[3])}


def build_ssl_modules(config: dict[str, Any]) -> tuple[SmallResNet, nn.Module]:
    """The (untrained) backbone and ``projection`` head described by a payload's ``config``."""
    b = config["backbone"]
    backbone = build_backbone(b["name"], in_channels=b["in_channels"], width=b["width"])
    return backbone, build_head(config["method"], config["projection"])


def train_ssl(method: str, images: np.ndarray, labels: np.ndarray | None = None, *, backbone_cfg: dict[str, Any],
              ssl_cfg: dict[str, Any], seed: int, device: torch.device,
              augment: DigitAugment | CifarAugment | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train a self-supervised feature extractor with Lightly on ``images`` (labels unused).

    Args:
        method: ``moco`` (paper section 3), ``simclr``, ``byol`` or ``dino`` (appendix A.3);
            see :mod:`databrittle.ssl_objectives` for each one's heads and loss.
        images: uint8 ``(n, h, w, c)``, the training split.
        labels: ignored (accepted so that both trainers share a call signature).
        backbone_cfg: the config's ``backbone`` section (``name``, ``width``).
        ssl_cfg: the method's training section: the shared ``ssl`` keys (``epochs``,
            ``batch_size``, ``lr``, ``weight_decay``, ``projection_dim``) merged with
            ``ssl.<method>`` (:data:`~databrittle.ssl_objectives.METHOD_KEYS`); other keys
            are recorded only.
        seed: seed of this model (derive it from the base seed, e.g.
            ``derive_seed(base, "extractor", method)``); sub-seeds for init, data order and
            augmentation are derived from it and ``method``.
        device: where to train.
        augment: the view augmentation (default :class:`DigitAugment` with its defaults).

    Returns:
        ``(payload, history)``: payload ``{"backbone": state_dict, "projection": state_dict,
        "config": {...}}`` (plain types only, loadable with ``weights_only=True``; teachers,
        BYOL's predictor and DINO's prototype-layer gradients are not kept: the payload
        holds what feature extraction needs), and history ``{"loss": [per-epoch mean
        loss], "lr": [...], "momentum": [...] (methods with a teacher), "steps": int,
        "wall_seconds": float}``.
    """
    _check_images(images, None)
    if method not in OBJECTIVES:
        raise InputError(f"SSL method {method!r}: expected one of {list(OBJECTIVES)}")
    augment = augment or DigitAugment()
    epochs, batch_size = int(ssl_cfg["epochs"]), int(ssl_cfg["batch_size"])
    lr0, weight_decay = float(ssl_cfg["lr"]), float(ssl_cfg["weight_decay"])
    config: dict[str, Any] = {"method": method, "backbone": _backbone_config(backbone_cfg, images)}
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, method, "init"))
        b = config["backbone"]
        backbone = build_backbone(b["name"], in_channels=b["in_channels"], width=b["width"])
        objective = OBJECTIVES[method](backbone, ssl_cfg)
    config["projection"] = objective.spec
    for module in objective.modules():
        module.to(device).train()
    params = [p for module in objective.trainable() for p in module.parameters()]
    optimizer = torch.optim.SGD(params, lr=lr0, momentum=SGD_MOMENTUM, weight_decay=weight_decay)
    order_gen, augment_gen = _generators(seed, method)
    x_all = to_float_nchw(images).to(device)
    n = x_all.shape[0]
    total_steps = epochs * _steps_per_epoch(n, batch_size)
    momentum0 = float(ssl_cfg["momentum"]) if objective.uses_momentum else None
    history: dict[str, Any] = {"loss": [], "lr": [], **({"momentum": []} if momentum0 is not None else {})}
    objective.prepare(x_all, batch_size, augment, augment_gen)
    step = 0
    for epoch in range(epochs):
        loss_sum, seen = 0.0, 0
        for index in _batches(n, batch_size, order_gen):
            lr = cosine_schedule(step, total_steps, lr0, 0.0)
            _set_lr(optimizer, lr)
            if momentum0 is not None:
                momentum = cosine_schedule(step, total_steps, momentum0, 1.0)
                objective.update_teacher(momentum)
            x = x_all[index.to(device)]
            loss = objective.loss(torch.cat([augment(x, augment_gen), augment(x, augment_gen)]), epoch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            objective.after_backward(epoch)
            optimizer.step()
            loss_sum += float(loss.detach()) * x.shape[0]
            seen += x.shape[0]
            step += 1
        history["loss"].append(loss_sum / seen)
        history["lr"].append(lr)
        if momentum0 is not None:
            history["momentum"].append(momentum)
    history["steps"] = step
    history["wall_seconds"] = round(time.perf_counter() - started, 3)
    config.update({"ssl": _plain(dict(ssl_cfg)), "augment": augment.as_dict(), "seed": int(seed),
                   "n_train": int(n), "image_shape": [int(s) for s in images.shape[1:]]})
    payload = {"backbone": _cpu_state(backbone), "projection": _cpu_state(objective.head), "config": config}
    return payload, history


def train_supervised(images: np.ndarray, labels: np.ndarray, *, backbone_cfg: dict[str, Any],
                     sup_cfg: dict[str, Any], seed: int, device: torch.device,
                     augment: DigitAugment | CifarAugment | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the same backbone with a linear classifier and cross-entropy (the paper's
    "Supervised" feature extractor, fig. 2), with the same augmentations, SGD (momentum
    0.9) and a per-step cosine learning-rate decay.

    Args:
        images: uint8 ``(n, h, w, c)``.
        labels: int ``(n,)`` class indices 0..classes-1 (classes = max label + 1).
        backbone_cfg: the config's ``backbone`` section.
        sup_cfg: the config's ``supervised`` section (``epochs``, ``batch_size``, ``lr``,
            ``weight_decay``).
        seed: seed of this model; init/order/augmentation sub-seeds derive from it.
        device: where to train.
        augment: the augmentation (default :class:`DigitAugment`).

    Returns:
        ``(payload, history)``: payload ``{"backbone": sd, "classifier": sd, "config": {...}}``,
        history ``{"loss": [...], "train_accuracy": [...], "lr": [...], "steps", "wall_seconds"}``
        (train accuracy on the augmented views).
    """
    _check_images(images, labels)
    labels = np.asarray(labels)
    if labels.min() < 0:
        raise InputError("labels: negative class index")
    augment = augment or DigitAugment()
    epochs, batch_size = int(sup_cfg["epochs"]), int(sup_cfg["batch_size"])
    lr0, weight_decay = float(sup_cfg["lr"]), float(sup_cfg["weight_decay"])
    classes = int(labels.max()) + 1
    config: dict[str, Any] = {"method": "supervised", "backbone": _backbone_config(backbone_cfg, images),
                              "classes": classes}
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "supervised", "init"))
        b = config["backbone"]
        backbone = build_backbone(b["name"], in_channels=b["in_channels"], width=b["width"])
        classifier = nn.Linear(backbone.feature_dim, classes)
    for module in (backbone, classifier):
        module.to(device).train()
    params = [*backbone.parameters(), *classifier.parameters()]
    optimizer = torch.optim.SGD(params, lr=lr0, momentum=SGD_MOMENTUM, weight_decay=weight_decay)
    order_gen, augment_gen = _generators(seed, "supervised")
    x_all = to_float_nchw(images).to(device)
    y_all = torch.from_numpy(labels.astype(np.int64)).to(device)
    n = x_all.shape[0]
    total_steps = epochs * _steps_per_epoch(n, batch_size)
    history: dict[str, Any] = {"loss": [], "train_accuracy": [], "lr": []}
    step = 0
    for _ in range(epochs):
        loss_sum, correct, seen = 0.0, 0, 0
        for index in _batches(n, batch_size, order_gen):
            lr = cosine_schedule(step, total_steps, lr0, 0.0)
            _set_lr(optimizer, lr)
            index = index.to(device)
            x, y = augment(x_all[index], augment_gen), y_all[index]
            logits = classifier(backbone(x))
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(index)
            step += 1
        history["loss"].append(loss_sum / seen)
        history["train_accuracy"].append(correct / seen)
        history["lr"].append(lr)
    history["steps"] = step
    history["wall_seconds"] = round(time.perf_counter() - started, 3)
    config.update({"supervised": _plain(dict(sup_cfg)), "augment": augment.as_dict(), "seed": int(seed),
                   "n_train": int(n), "image_shape": [int(s) for s in images.shape[1:]]})
    payload = {"backbone": _cpu_state(backbone), "classifier": _cpu_state(classifier), "config": config}
    return payload, history


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` with ``torch.save`` atomically (temporary file + rename)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, on CPU).

    Raises:
        InputError: one line naming ``path`` when the file is missing, truncated,
            corrupt, not loadable with ``weights_only=True`` or lacks the ``backbone`` /
            ``config`` entries.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise InputError(f"{path}: not a complete checkpoint ({type(error).__name__}: {reason})") from None
    if not isinstance(payload, dict) or "backbone" not in payload or "config" not in payload:
        raise InputError(f"{path}: not a databrittle checkpoint (expected keys 'backbone' and 'config')")
    return payload
