"""The counterfactual trainer: n models on (training set, removals or label overrides, seeds).

One API for every rule that trains (reference models, bisection steps, LDS):
:func:`train_models` takes the decoded training images (uint8, the beton's content), one
:class:`~databrittle.schedule.ModelJob` per model and the recipe, and returns every model's
logits on the requested evaluation images. Removal and relabelling never rewrite a beton:
they are index selection and label overrides applied in memory or on the device
(DESIGN.md section 3); data order, labels and learning rates come from
:mod:`databrittle.schedule`, the same for every backend.

Backends, by ``arch``:

- ``mlp`` (the digits network): :mod:`databrittle.mlp_trainer`, up to
  ``models_per_pass`` models in one batched pass with hand-written gradients.
- CIFAR-sized networks (``resnet9`` = paper A.2, and the transfer architectures of paper
  section 4.4 / appendix B): :mod:`databrittle.torch_trainer`, one model after another on
  images held on the device, augmented there.
- ImageNet networks (``resnet18``, paper A.2) on images that stay in their beton
  (:class:`~databrittle.beton_images.BetonImages`, what :func:`databrittle.datasets.load_split`
  returns for ImageNet): :mod:`databrittle.beton_trainer`, batches read by FFCV's Loader in
  the same per-model order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from databrittle import beton_trainer, mlp_trainer, torch_trainer
from databrittle.architectures import ARCHITECTURES
from databrittle.beton_images import BetonImages
from databrittle.errors import InputError
from databrittle.schedule import ModelJob, check_job, label_table, lr_table, model_plan, stacked_plans

__all__ = ["ModelJob", "TrainConfig", "train_models", "trained_modules", "module_inputs", "margins_and_correct"]

ARCHS = ("mlp", *ARCHITECTURES)


@dataclass(frozen=True)
class TrainConfig:
    """The counterfactual recipe (config section ``counterfactual``; paper A.2 for CIFAR-10).

    Attributes:
        arch: ``mlp`` (digits) or a CIFAR-sized architecture (``resnet9``, ...).
        epochs: passes over each model's (reduced) training set (paper: 24).
        batch_size: paper: 512.
        lr: peak learning rate (paper: 0.5).
        lr_peak_epoch: epoch of the peak (paper: 5); the rate is 0 at step 0 and at the end.
        momentum, weight_decay, label_smoothing: paper 0.9, 5e-4, 0.1.
        hidden: hidden width of the ``mlp``.
        arch_options: keyword arguments of the CIFAR-sized network (e.g. ``{width: 0.25}``
            for a small ResNet-9); empty = the paper's size.
        augment: flip + translate(2) + cutout(8) (paper A.2) for the CIFAR-sized networks.
        models_per_pass: most models the ``mlp`` backend trains in one batched pass.
        resolution: ImageNet only (images read from a beton, :mod:`databrittle.beton_trainer`):
            ``{low, high, switch_epoch, eval}``, training crops of ``low`` px before epoch
            ``switch_epoch`` and ``high`` px from it on (paper A.2: 160 px for 11 epochs, then
            192 px), evaluation centre crops of ``eval`` px (FFCV's ImageNet example: 256).
    """

    arch: str
    epochs: int
    batch_size: int
    lr: float
    lr_peak_epoch: float
    momentum: float
    weight_decay: float
    label_smoothing: float
    hidden: int = 128
    arch_options: dict[str, Any] = field(default_factory=dict)
    augment: bool = True
    models_per_pass: int = 128
    resolution: dict[str, int] | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "hidden", "models_per_pass"):
            if getattr(self, name) < 1:
                raise InputError(f"config key 'counterfactual.{name}': must be at least 1, got {getattr(self, name)}")
        if not 0 < self.lr_peak_epoch < self.epochs:
            raise InputError(f"config key 'counterfactual.lr_peak_epoch': {self.lr_peak_epoch} must be in "
                             f"(0, epochs = {self.epochs})")

    @classmethod
    def from_config(cls, section: dict) -> "TrainConfig":
        return cls(**section)

    @property
    def peak_fraction(self) -> float:
        return self.lr_peak_epoch / self.epochs


def train_models(train_images: np.ndarray | torch.Tensor | BetonImages, train_labels: np.ndarray | torch.Tensor,
                 jobs: Sequence[ModelJob], cfg: TrainConfig, eval_images: np.ndarray | torch.Tensor | BetonImages,
                 n_classes: int, device: torch.device) -> np.ndarray:
    """Train one model per job and return their logits on ``eval_images``.

    Args:
        train_images: uint8 (N, H, W, C) training images, or the N images of a beton.
        train_labels: int64 (N,) training labels.
        jobs: one :class:`ModelJob` per model (seed, removals, label overrides).
        eval_images: uint8 (n_eval, H, W, C) images to evaluate (beton images with beton
            training images).
    Returns:
        float32 (n_models, n_eval, n_classes) logits, in job order. A model's logits depend
        only on its job and the recipe: rerunning a call gives identical numbers on CPU. With
        one torch thread (every pipeline job but the extractors) they are also bit-identical
        whatever other jobs share the call; with more threads the matrix library splits
        batched products differently and batching changes the logits by float rounding,
        which 30 epochs amplify to about 0.02-0.07.
    """
    if cfg.arch not in ARCHS:
        raise InputError(f"config key 'counterfactual.arch': unknown architecture {cfg.arch!r}; known: {ARCHS}")
    if isinstance(train_images, BetonImages):
        return beton_trainer.train_models(train_images, _labels(train_labels), jobs, cfg, eval_images, n_classes,
                                          device)
    images = torch.as_tensor(np.asarray(train_images))
    labels = _labels(train_labels)
    evals = torch.as_tensor(np.asarray(eval_images))
    check_inputs(images, labels, evals, n_classes)
    for job in jobs:
        check_job(job, len(labels), n_classes)
    if not jobs or not len(evals):
        return np.zeros((len(jobs), len(evals), n_classes), np.float32)
    if cfg.arch == "mlp":
        return _train_mlp(images, labels, list(jobs), cfg, evals, n_classes, device)
    return _train_networks(images, labels, list(jobs), cfg, evals, n_classes, device)


def _labels(train_labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(train_labels), dtype=torch.int64)


def check_inputs(images: torch.Tensor, labels: torch.Tensor, evals: torch.Tensor, n_classes: int) -> None:
    """uint8 (N, H, W, C) training images, N labels in [0, n_classes), eval images of the same (H, W, C)."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise InputError(f"training images must be uint8 (N, H, W, C), got {images.dtype} {tuple(images.shape)}")
    if evals.dtype != torch.uint8 or tuple(evals.shape[1:]) != tuple(images.shape[1:]):
        raise InputError(f"evaluation images must be uint8 (n, {', '.join(map(str, images.shape[1:]))}) like the "
                         f"training images, got {evals.dtype} {tuple(evals.shape)}")
    if labels.shape != (len(images),):
        raise InputError(f"training labels: expected shape ({len(images)},), got {tuple(labels.shape)}")
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < n_classes):
        raise InputError(f"training labels must lie in [0, {n_classes}), got [{int(labels.min())}, {int(labels.max())}]")


def image_vectors(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, H*W*C + 1) in [0, 1] plus the bias column."""
    return mlp_trainer.with_bias_column(images.reshape(len(images), -1).float() / 255.0)


def _fit_mlp(images: torch.Tensor, labels: torch.Tensor, jobs: list[ModelJob], cfg: TrainConfig, n_classes: int,
             device: torch.device):
    """Train the jobs in passes of ``models_per_pass``; yield each pass's stacked weights."""
    x1 = image_vectors(images).to(device)
    for start in range(0, len(jobs), cfg.models_per_pass):
        group = jobs[start:start + cfg.models_per_pass]
        plan, totals = stacked_plans(group, len(labels), cfg.batch_size, cfg.epochs)
        weights = [w.to(device) for w in mlp_trainer.init_weights([job.seed for job in group], x1.shape[1] - 1,
                                                                  cfg.hidden, n_classes)]
        mlp_trainer.train(weights, x1, label_table(group, labels), plan, lr_table(totals, cfg.lr, cfg.peak_fraction),
                          cfg.momentum, cfg.weight_decay, cfg.label_smoothing)
        yield weights


def _fit_networks(images: torch.Tensor, labels: torch.Tensor, jobs: list[ModelJob], cfg: TrainConfig, n_classes: int,
                  device: torch.device):
    """Train the jobs one after another on the device; yield each trained network."""
    tables = label_table(jobs, labels).to(device)
    for job, job_labels in zip(jobs, tables):
        plan = model_plan(job, len(labels), cfg.batch_size, cfg.epochs)
        lrs = lr_table(torch.tensor([len(plan)]), cfg.lr, cfg.peak_fraction)[:, 0]
        model = torch_trainer.init_model(cfg.arch, job, n_classes, images.shape[-1], cfg.arch_options, device)
        torch_trainer.train_one(model, images, job_labels, plan, lrs, job, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, label_smoothing=cfg.label_smoothing,
                                augment_batches=cfg.augment)
        yield model


def _train_mlp(images: torch.Tensor, labels: torch.Tensor, jobs: list[ModelJob], cfg: TrainConfig,
               evals: torch.Tensor, n_classes: int, device: torch.device) -> np.ndarray:
    eval_x1 = image_vectors(evals).to(device)
    out = [mlp_trainer.logits(weights, eval_x1).cpu() for weights in _fit_mlp(images, labels, jobs, cfg, n_classes,
                                                                                 device)]
    return torch.cat(out).numpy().astype(np.float32)


def _train_networks(images: torch.Tensor, labels: torch.Tensor, jobs: list[ModelJob], cfg: TrainConfig,
                    evals: torch.Tensor, n_classes: int, device: torch.device) -> np.ndarray:
    images, evals = images.to(device), evals.to(device)
    out = [torch_trainer.evaluate(model, images, evals).cpu()
           for model in _fit_networks(images, labels, jobs, cfg, n_classes, device)]
    return torch.stack(out).numpy().astype(np.float32)


def trained_modules(train_images: np.ndarray | torch.Tensor | BetonImages, train_labels: np.ndarray | torch.Tensor,
                    jobs: Sequence[ModelJob], cfg: TrainConfig, n_classes: int,
                    device: torch.device) -> list[torch.nn.Module]:
    """Train one model per job (as :func:`train_models`) and return them as ``nn.Module``s in
    eval mode, for the attribution baselines that need the models themselves (TRAK's
    checkpoints, Grad-Cos's gradients). A module takes :func:`module_inputs`."""
    if isinstance(train_images, BetonImages):
        labels = _labels(train_labels)
        beton_trainer.check_inputs(train_images, labels, None, n_classes, cfg)
        for job in jobs:
            check_job(job, len(labels), n_classes)
        return [m.eval() for m in beton_trainer.fit_networks(train_images, labels, list(jobs), cfg, n_classes, device)]
    images = torch.as_tensor(np.asarray(train_images))
    labels = _labels(train_labels)
    check_inputs(images, labels, images[:0], n_classes)
    for job in jobs:
        check_job(job, len(labels), n_classes)
    if cfg.arch == "mlp":
        modules = [m for weights in _fit_mlp(images, labels, list(jobs), cfg, n_classes, device)
                   for m in mlp_trainer.to_modules(weights)]
    else:
        modules = list(_fit_networks(images.to(device), labels, list(jobs), cfg, n_classes, device))
    return [m.eval() for m in modules]


def module_inputs(cfg: TrainConfig, train_images: np.ndarray | torch.Tensor,
                  images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """What a module of :func:`trained_modules` takes: float32 (n, d) vectors in [0, 1] for
    the ``mlp``, normalised (n, C, H, W) images (training-split statistics) otherwise.
    (Images read from a beton come in batches: :func:`databrittle.beton_trainer.module_batches`.)"""
    if isinstance(images, BetonImages):
        raise InputError(f"module_inputs: the images of {images.path} are read in batches "
                         "(databrittle.beton_trainer.module_batches), not held in memory")
    images = torch.tensor(np.asarray(images))
    if cfg.arch == "mlp":
        return images.reshape(len(images), -1).float() / 255.0
    mean, std = torch_trainer.channel_stats(torch.as_tensor(np.asarray(train_images)))
    return torch_trainer.to_network_input(images, mean, std, channels_last=False)


def margins_and_correct(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correct-class margin (paper section 2), correctness and prediction.

    Args:
        logits: float (..., n_classes).
        labels: int, broadcastable to logits.shape[:-1].
    Returns:
        margin float (...) = correct logit - highest incorrect logit, correct bool (...),
        prediction int64 (...).
    """
    labels = np.broadcast_to(labels, logits.shape[:-1])
    correct_logit = np.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    others = logits.copy()
    np.put_along_axis(others, labels[..., None], -np.inf, axis=-1)
    prediction = logits.argmax(-1)
    return correct_logit - others.max(-1), prediction == labels, prediction
