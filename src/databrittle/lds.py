"""Linear Datamodeling Score ground truth (paper section 2.1, Table 1; DESIGN.md section 1).

m random subsets S_j of exactly ``round(alpha * n)`` training samples (masks from a seed
keyed "lds-masks"), ``models_per_subset`` models per subset (seeds keyed by subset and
replicate), and their correct-class margins on the targets, averaged over replicates.
The per-method score is :func:`databrittle.metrics.lds` of these margins against the
method's full score vectors.
"""

from __future__ import annotations

import numpy as np
import torch

from databrittle.seeds import derive_seed, rng
from databrittle.train import ModelJob, TrainConfig, margins_and_correct, train_models


def subset_masks(n_train: int, n_subsets: int, alpha: float, seed: int, purpose: str = "lds-masks") -> np.ndarray:
    """bool (n_subsets, n_train): each row keeps exactly round(alpha * n_train) samples.

    Drawn from ``rng(seed, purpose)``: "lds-masks" for the LDS ground truth, another key
    (e.g. "datamodels-masks") for subsets that must be independent of it.
    """
    generator = rng(seed, purpose)
    size = int(round(alpha * n_train))
    masks = np.zeros((n_subsets, n_train), dtype=bool)
    for row in range(n_subsets):
        masks[row, generator.choice(n_train, size, replace=False)] = True
    return masks


def subset_margins(masks: np.ndarray, target_ids: np.ndarray, target_labels: np.ndarray, models_per_subset: int,
                   seed: int, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, n_classes: int,
                   cfg: TrainConfig, device: torch.device) -> np.ndarray:
    """Margins float32 (n_subsets, T) on the targets, averaged over each subset's models."""
    jobs = [ModelJob(seed=derive_seed(seed, "lds-model", j, r), removed=np.flatnonzero(~masks[j]))
            for j in range(len(masks)) for r in range(models_per_subset)]
    eval_images = test_images[np.asarray(target_ids, dtype=np.int64)]
    logits = train_models(train_images, train_labels, jobs, cfg, eval_images, n_classes, device)
    margin, _, _ = margins_and_correct(logits, target_labels[None, :])
    return margin.reshape(len(masks), models_per_subset, -1).mean(1).astype(np.float32)
