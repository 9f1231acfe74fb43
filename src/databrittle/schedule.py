"""What each counterfactual model sees, step by step: data order, labels and learning rate.

Shared by every trainer backend (:mod:`databrittle.mlp_trainer` for the digits network,
:mod:`databrittle.torch_trainer` for the CIFAR-sized networks), so a model's schedule is the
same whichever backend trains it.

- Data order: a model keeps its own training indices (all minus its removed ones) and sees,
  per epoch, a fresh permutation of them from its own generator (seed keyed "data-order"),
  cut into full batches (drop_last, as the paper's released FFCV loaders do). Model i thus
  takes ``T_i = epochs * floor(n_i / batch_size)`` steps, computed from its *reduced* set
  size ``n_i`` (paper A.2's released code uses the full set size: a documented fix).
- Labels: the training labels with the model's overrides (mislabel support) applied.
- Learning rate (paper A.2): linear from 0 at step 0 to the peak at
  ``T_i * lr_peak_epoch / epochs`` (epoch 5 of 24 on CIFAR-10), then linear to 0 at ``T_i``,
  the end of training; ``lr(t) = interp(t, [0, peak, T_i], [0, lr, 0])`` for ``t < T_i`` and
  0 afterwards, as the released code's ``np.interp`` over iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from databrittle.errors import InputError
from databrittle.seeds import derive_seed


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


def check_job(job: ModelJob, n_train: int, n_classes: int) -> None:
    """A job's indices must be integers in [0, n_train) and its new label a class.

    Raises:
        InputError naming the field (a boolean mask or a negative index would otherwise
        select the wrong samples silently).
    """
    for name in ("removed", "relabel_index"):
        index = np.asarray(getattr(job, name))
        if index.size and (index.dtype.kind not in "iu" or index.min() < 0 or index.max() >= n_train):
            raise InputError(f"ModelJob.{name}: expected integer training indices in [0, {n_train}), got dtype "
                             f"{index.dtype} range [{index.min()}, {index.max()}]")
    if len(job.relabel_index) and not 0 <= job.relabel_to < n_classes:
        raise InputError(f"ModelJob.relabel_to: {job.relabel_to} is not a class in [0, {n_classes})")
    if job.seed < 0:
        raise InputError(f"ModelJob.seed: {job.seed} must be non-negative")


def kept_indices(job: ModelJob, n_train: int) -> np.ndarray:
    """int64 (n_i,): the training indices model ``job`` trains on, ascending."""
    keep = np.ones(n_train, dtype=bool)
    keep[np.asarray(job.removed, dtype=np.int64)] = False
    return np.flatnonzero(keep)


def model_plan(job: ModelJob, n_train: int, batch_size: int, epochs: int) -> torch.Tensor:
    """int64 (T_i, batch_size): the training indices of each of the model's steps."""
    keep = torch.from_numpy(kept_indices(job, n_train))
    per_epoch = len(keep) // batch_size
    if per_epoch == 0:
        raise InputError(f"config key 'counterfactual.batch_size': {batch_size} is more than the {len(keep)} "
                         "training samples a model keeps")
    generator = torch.Generator().manual_seed(derive_seed(job.seed, "data-order"))
    orders = [keep[torch.randperm(len(keep), generator=generator)][: per_epoch * batch_size] for _ in range(epochs)]
    return torch.cat(orders).view(-1, batch_size)


def stacked_plans(jobs: Sequence[ModelJob], n_train: int, batch_size: int, epochs: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """All models' plans padded to the longest: int64 (T_max, n, batch) and steps (n,).

    Padding repeats a model's last batch; its learning rate there is 0 (:func:`lr_table`),
    so padded steps leave the model unchanged.
    """
    plans = [model_plan(job, n_train, batch_size, epochs) for job in jobs]
    totals = torch.tensor([len(p) for p in plans])
    t_max = int(totals.max())
    padded = [torch.cat([p, p[-1:].expand(t_max - len(p), -1)]) for p in plans]
    return torch.stack(padded, 1), totals


def lr_at(step: np.ndarray, total: int, peak_lr: float, peak_fraction: float) -> np.ndarray:
    """Learning rate float64 at ``step`` for a model of ``total`` steps (0 from ``total`` on)."""
    peak = total * peak_fraction
    lr = np.interp(step, [0.0, peak, float(total)], [0.0, peak_lr, 0.0])
    return np.where(np.asarray(step) < total, lr, 0.0)


def lr_table(totals: torch.Tensor, peak_lr: float, peak_fraction: float) -> torch.Tensor:
    """float32 (T_max, n): each model's learning rate at every step of the padded plan."""
    steps = np.arange(int(totals.max()))
    return torch.from_numpy(np.stack([lr_at(steps, int(t), peak_lr, peak_fraction) for t in totals], 1)
                            .astype(np.float32))


def label_table(jobs: Sequence[ModelJob], labels: torch.Tensor) -> torch.Tensor:
    """int64 (n, n_train): per-model training labels with each job's overrides applied."""
    table = labels.expand(len(jobs), -1).clone()
    for row, job in enumerate(jobs):
        if len(job.relabel_index):
            table[row, torch.from_numpy(np.asarray(job.relabel_index, dtype=np.int64))] = int(job.relabel_to)
    return table
