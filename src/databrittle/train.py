"""Counterfactual trainer: n models on (training set, removal mask or label overrides, seeds).

Removal and relabelling never rewrite a beton: they are index selection and label
overrides applied in memory (DESIGN.md section 3). For digits, models are
:class:`~databrittle.models.BatchedMLP` stacks trained in one pass; each model has its own
seed (init and data order), its own kept-sample set and label overrides, and its own
learning-rate schedule computed in steps from its own (possibly reduced) training-set size.

Recipe (the digits stand-in for paper A.2): SGD with momentum and weight decay, label
smoothing, batch size from config, a triangular learning rate rising linearly from 0 to
``lr`` over the first 5/24 of the steps and falling linearly to 0 at the last step (paper
A.2's cyclic schedule: peak at epoch 5 of 24), no augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from databrittle.models import BatchedMLP
from databrittle.seeds import derive_seed

PEAK_FRACTION = 5 / 24  # paper A.2: the learning rate peaks at epoch 5 of 24


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the counterfactual model (config section ``counterfactual``)."""

    arch: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    label_smoothing: float
    hidden: int

    @classmethod
    def from_config(cls, section: dict) -> "TrainConfig":
        return cls(**section)


@dataclass(frozen=True)
class ModelJob:
    """One model to train.

    Attributes:
        seed: the model's seed (weights init and data order).
        removed: int64 (r,), training indices left out.
        relabel_index: int64 (q,), training indices whose label is overridden.
        relabel_to: int, the new label of those indices.
    """

    seed: int
    removed: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    relabel_index: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    relabel_to: int = -1


def images_to_vectors(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, h, w, c) -> float32 (n, h*w*c) in [0, 1], the MLP's input."""
    return torch.from_numpy(np.ascontiguousarray(images).reshape(len(images), -1).astype(np.float32) / 255.0)


def lr_schedule(step: torch.Tensor, total_steps: torch.Tensor, peak_lr: float) -> torch.Tensor:
    """Triangular schedule: 0 -> peak at PEAK_FRACTION of total -> 0 at the last step.

    Args:
        step: int (B,), current step of each model (0-based).
        total_steps: int (B,), each model's own number of steps.
    Returns:
        float (B,), 0 for models whose steps are done.
    """
    step = step.to(torch.float64)
    total = total_steps.to(torch.float64)
    peak = torch.clamp(torch.round(total * PEAK_FRACTION), min=1.0)
    rising = (step + 1) / peak
    falling = (total - step - 1).clamp(min=0) / torch.clamp(total - peak, min=1.0)
    lr = torch.where(step < peak, rising, falling) * peak_lr
    return torch.where(step < total, lr, torch.zeros_like(lr)).to(torch.float32)


def _batch_plan(jobs: list[ModelJob], n_train: int, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Each model's data order: index matrix (B, T_max, batch) and its step count (B,).

    A model sees ``epochs`` permutations of its own kept indices (drawn from its own
    generator), cut into full batches (drop_last), so T_i = epochs * floor(n_i / batch).
    """
    plans, totals = [], []
    for job in jobs:
        keep = np.setdiff1d(np.arange(n_train), job.removed)
        per_epoch = len(keep) // cfg.batch_size
        if per_epoch == 0:
            raise ValueError(f"only {len(keep)} training samples left, fewer than one batch of {cfg.batch_size}")
        generator = torch.Generator().manual_seed(derive_seed(job.seed, "data-order"))
        kept = torch.from_numpy(keep)
        epochs = [kept[torch.randperm(len(keep), generator=generator)][: per_epoch * cfg.batch_size]
                  for _ in range(cfg.epochs)]
        plans.append(torch.cat(epochs).view(-1, cfg.batch_size))
        totals.append(len(plans[-1]))
    t_max = max(totals)
    padded = [torch.cat([p, p[-1:].expand(t_max - len(p), -1)]) if len(p) < t_max else p for p in plans]
    return torch.stack(padded), torch.tensor(totals)


def _label_table(jobs: list[ModelJob], labels: torch.Tensor) -> torch.Tensor:
    """Per-model labels (B, n_train) with each job's overrides applied."""
    table = labels.expand(len(jobs), -1).clone()
    for row, job in enumerate(jobs):
        if len(job.relabel_index):
            table[row, torch.from_numpy(job.relabel_index)] = int(job.relabel_to)
    return table


def train_models(train_x: torch.Tensor, train_y: torch.Tensor, jobs: list[ModelJob], cfg: TrainConfig,
                 eval_x: torch.Tensor, n_classes: int, device: torch.device) -> np.ndarray:
    """Train one model per job (all in one batched pass) and return their logits on ``eval_x``.

    Args:
        train_x: float32 (n_train, d) inputs.
        train_y: int64 (n_train,) labels.
        jobs: one :class:`ModelJob` per model.
        eval_x: float32 (n_eval, d) samples to evaluate.
    Returns:
        float32 (n_models, n_eval, n_classes) logits.
    """
    if cfg.arch != "mlp":
        raise ValueError(f"unknown counterfactual arch {cfg.arch!r}")
    if not jobs:
        return np.zeros((0, len(eval_x), n_classes), np.float32)
    plan, totals = _batch_plan(jobs, len(train_y), cfg)
    labels = _label_table(jobs, train_y)
    model = BatchedMLP([derive_seed(job.seed, "init") for job in jobs], train_x.shape[1], cfg.hidden, n_classes).to(device)
    params = list(model.parameters())
    buffers = [torch.zeros_like(p) for p in params]
    train_x, labels, plan = train_x.to(device), labels.to(device), plan.to(device)
    rows = torch.arange(len(jobs), device=device)[:, None]
    for step in range(plan.shape[1]):
        index = plan[:, step]  # (B, batch)
        logits = model(train_x[index])
        loss = F.cross_entropy(logits.reshape(-1, n_classes), labels[rows, index].reshape(-1),
                               label_smoothing=cfg.label_smoothing, reduction="sum") / index.shape[1]
        for p in params:
            p.grad = None
        loss.backward()
        lr = lr_schedule(torch.full((len(jobs),), step), totals, cfg.lr).to(device)
        _sgd_step(params, buffers, lr, cfg.momentum, cfg.weight_decay)
    with torch.no_grad():
        out = model(eval_x.to(device).expand(len(jobs), -1, -1))
    return out.cpu().numpy().astype(np.float32)


@torch.no_grad()
def _sgd_step(params: list[torch.Tensor], buffers: list[torch.Tensor], lr: torch.Tensor, momentum: float,
              weight_decay: float) -> None:
    """SGD with momentum and weight decay (as torch.optim.SGD), with a per-model lr (B,).

    A model whose lr is 0 (its steps are done) is left unchanged, momentum included.
    """
    active = (lr > 0).to(lr.dtype)
    for p, buf in zip(params, buffers):
        shape = (-1,) + (1,) * (p.dim() - 1)
        grad = p.grad + weight_decay * p
        buf.mul_(1 - active.view(shape) * (1 - momentum)).add_(grad * active.view(shape))
        p.sub_(lr.view(shape) * buf)


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
