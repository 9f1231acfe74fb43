"""Counterfactual networks trained on images read from an FFCV beton (ImageNet, paper A.2).

Paper A.2: ResNet-18 models trained for 16 epochs at batch size 1024 with FFCV, 160 px
training images for the first 11 epochs and 192 px for the last 5, the other
hyperparameters as on CIFAR-10 (SGD with momentum 0.9, weight decay 5e-4, label smoothing
0.1, a learning rate rising linearly from 0 to its peak and falling to 0). Everything but
the data source is shared with the CIFAR-sized networks (:mod:`databrittle.torch_trainer`):

- the model's data order, labels (with a job's overrides) and per-step learning rates come
  from :mod:`databrittle.schedule` exactly as for the in-memory backends (a fresh
  permutation of the kept samples per epoch, full batches only), and the optimisation loop
  is :func:`databrittle.torch_trainer.sgd_train`;
- each step's batch is read from the beton by FFCV's Loader in exactly that order
  (:func:`databrittle.beton_images.random_crop_batches`: random resized crops of
  ``resolution.low`` px before epoch ``resolution.switch_epoch``, ``resolution.high`` px
  from it on, then a horizontal flip drawn from the model's own generator), normalised with
  ImageNet's mean and std (FFCV's ImageNet example);
- evaluation: the centre 224/256 crop resized to ``resolution.eval`` px (default 256, FFCV's
  ImageNet example; no test-time augmentation, as for CIFAR-10).

Deviations from FFCV's ImageNet example, which the paper's text does not settle: the
resolution switches in one step (the paper's reading; the example ramps over epochs
11-13), weight decay applies to every parameter as on CIFAR-10 (the example exempts
BatchNorm), and no BlurPool layers (torchvision's ResNet-18 as it is).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from databrittle.beton_images import BetonImages, centre_crop_batches, normalise, random_crop_batches
from databrittle.config import check_resolution
from databrittle.errors import InputError
from databrittle.schedule import ModelJob, check_job, label_table, lr_table, model_plan
from databrittle.seeds import derive_seed
from databrittle.torch_trainer import init_model, predict, sgd_train

if TYPE_CHECKING:  # databrittle.train imports this module
    from databrittle.train import TrainConfig

#: Evaluation size when ``counterfactual.resolution.eval`` is not given (FFCV's ImageNet example).
DEFAULT_EVAL_RESOLUTION = 256


def check_inputs(images: BetonImages, labels: torch.Tensor, evals: BetonImages | None, n_classes: int,
                 cfg: "TrainConfig") -> None:
    """Beton-backed training: labels for every image, evaluation images from a beton, the
    ImageNet resolution schedule given, and an ImageNet-sized network."""
    from databrittle.architectures import IMAGENET_ARCHITECTURES

    if labels.shape != (len(images),):
        raise InputError(f"training labels: expected shape ({len(images)},) for {images.path}, got {tuple(labels.shape)}")
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < n_classes):
        raise InputError(f"training labels must lie in [0, {n_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    if evals is not None and not isinstance(evals, BetonImages):
        raise InputError(f"evaluation images: expected images of a beton like the training images ({images.path}), "
                         f"got {type(evals).__name__}")
    if cfg.resolution is None:
        raise InputError(f"config key 'counterfactual.resolution': required to train on the images of {images.path}")
    check_resolution(cfg.resolution, cfg.epochs)
    if cfg.arch not in IMAGENET_ARCHITECTURES:
        raise InputError(f"config key 'counterfactual.arch': {cfg.arch} is not an ImageNet network "
                         f"(expected one of {IMAGENET_ARCHITECTURES}) for the images of {images.path}")


def training_batches(images: BetonImages, job_labels: torch.Tensor, plan: torch.Tensor, epochs: int,
                     resolution: dict[str, int], generator: torch.Generator, device: torch.device
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(normalised float (B, 3, r, r), labels (B,)) per step of ``plan`` (T, B), r by epoch.

    Steps of epochs before ``resolution["switch_epoch"]`` are read at ``low`` px, the others
    at ``high`` px (one FFCV Loader per resolution). Each image is flipped horizontally with
    probability 1/2 from ``generator`` (the model's "augment" generator).
    """
    per_epoch = len(plan) // epochs
    switch = int(resolution["switch_epoch"]) * per_epoch
    for start, stop, size in ((0, switch, resolution["low"]), (switch, len(plan), resolution["high"])):
        if start == stop:
            continue
        crops = random_crop_batches(images, plan[start:stop], int(size), device)
        for step, batch in zip(range(start, stop), crops):
            flip = torch.rand(len(batch), generator=generator, device=generator.device) < 0.5
            batch = torch.where(flip.to(device)[:, None, None, None], batch.flip(3), batch)
            yield normalise(batch), job_labels[plan[step].to(job_labels.device)]


def fit_networks(images: BetonImages, labels: torch.Tensor, jobs: Sequence[ModelJob], cfg: "TrainConfig",
                 n_classes: int, device: torch.device) -> Iterator[torch.nn.Module]:
    """Train the jobs one after another on the device; yield each trained network."""
    tables = label_table(jobs, labels).to(device)
    for job, job_labels in zip(jobs, tables):
        plan = model_plan(job, len(labels), cfg.batch_size, cfg.epochs)
        lrs = lr_table(torch.tensor([len(plan)]), cfg.lr, cfg.peak_fraction)[:, 0]
        model = init_model(cfg.arch, job, n_classes, 3, cfg.arch_options, device)
        generator = torch.Generator(device="cpu").manual_seed(derive_seed(job.seed, "augment"))
        sgd_train(model, training_batches(images, job_labels, plan, cfg.epochs, cfg.resolution, generator, device),
                  lrs, momentum=cfg.momentum, weight_decay=cfg.weight_decay, label_smoothing=cfg.label_smoothing)
        yield model


def eval_resolution(cfg: "TrainConfig") -> int:
    """Evaluation size in px (``resolution.eval``, default 256)."""
    return int(cfg.resolution.get("eval", DEFAULT_EVAL_RESOLUTION))


def evaluate(model: torch.nn.Module, evals: BetonImages, cfg: "TrainConfig", device: torch.device) -> torch.Tensor:
    """float32 (n_eval, C) logits on the centre crops of ``evals``, in its order."""
    return predict(model, (normalise(batch) for batch in centre_crop_batches(evals, eval_resolution(cfg), device)))


def train_models(images: BetonImages, labels: torch.Tensor, jobs: Sequence[ModelJob], cfg: "TrainConfig",
                 evals: BetonImages, n_classes: int, device: torch.device) -> np.ndarray:
    """:func:`databrittle.train.train_models` for beton images: float32 (n_models, n_eval, C)."""
    check_inputs(images, labels, evals, n_classes, cfg)
    for job in jobs:
        check_job(job, len(labels), n_classes)
    if not jobs or not len(evals):
        return np.zeros((len(jobs), len(evals), n_classes), np.float32)
    out = [evaluate(model, evals, cfg, device).cpu() for model in fit_networks(images, labels, jobs, cfg, n_classes,
                                                                                 device)]
    return torch.stack(out).numpy().astype(np.float32)


def module_batches(images: BetonImages, labels: np.ndarray, cfg: "TrainConfig", device: torch.device
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(network input float (b, 3, r, r), labels int64 (b,)) batches of ``images`` in order, as
    :func:`evaluate` sees them (for the attribution baselines that need per-sample inputs)."""
    labels = torch.tensor(np.asarray(labels), dtype=torch.int64)  # a copy: the split's arrays may be read-only
    start = 0
    for batch in centre_crop_batches(images, eval_resolution(cfg), device):
        yield normalise(batch), labels[start:start + len(batch)].to(device)
        start += len(batch)
