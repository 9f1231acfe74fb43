"""Reference models and target selection (DESIGN.md sections 1 and 3).

R models trained on all training data give, on the test split, averaged logits (whose
highest incorrect class is each target's *flip class*, paper section 2.1 / A.6) and the
per-model correctness that decides which test samples are "correctly classified on average".

Targets are a class-balanced random choice among those samples (paper A.2 picks 100
class-balanced CIFAR-10 test samples; restricting to correctly classified ones follows the
paper's ImageNet protocol and is a documented deviation for digits: a misclassified target
would get a meaningless support).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from databrittle.errors import InputError
from databrittle.seeds import derive_seed, rng
from databrittle.train import ModelJob, TrainConfig, margins_and_correct, train_models


def train_reference_models(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, cfg: TrainConfig,
                           n_models: int, n_classes: int, seed: int, device: torch.device) -> np.ndarray:
    """Logits float32 (n_models, n_test, n_classes) of models trained on all training data."""
    jobs = [ModelJob(seed=derive_seed(seed, "reference", r)) for r in range(n_models)]
    return train_models(train_images, train_labels, jobs, cfg, test_images, n_classes, device)


def flip_classes(mean_logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Highest incorrect class of the averaged logits: int64 (n,) from (n, C) and labels (n,)."""
    masked = mean_logits.astype(np.float64).copy()
    masked[np.arange(len(labels)), labels] = -np.inf
    return masked.argmax(1).astype(np.int64)


def correct_on_average(model_logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """bool (n,): mean correctness over the models (R, n, C) is > 0.5 (as in Algorithm 1)."""
    _, correct, _ = margins_and_correct(model_logits, labels[None, :])
    return correct.mean(0) > 0.5


def reference_summary(model_logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Sanity numbers for the sidecar: per-model test accuracy (mean, std, min), ensemble accuracy."""
    _, correct, _ = margins_and_correct(model_logits, labels[None, :])
    per_model = correct.mean(1)
    ensemble = (model_logits.mean(0).argmax(1) == labels).mean()
    return {"test_accuracy_mean": float(per_model.mean()), "test_accuracy_std": float(per_model.std()),
            "test_accuracy_min": float(per_model.min()), "ensemble_test_accuracy": float(ensemble),
            "correct_on_average": float(correct_on_average(model_logits, labels).mean())}


def choose_targets(eligible: np.ndarray, labels: np.ndarray, n_targets: int, seed: int,
                   classes: np.ndarray | None = None) -> np.ndarray:
    """Class-balanced random test indices among ``eligible`` (bool (n,)).

    Each of the C ``classes`` (default: every label) gets floor(n_targets / C) targets; the
    remainder goes to classes drawn at random. Returns int64 (n_targets,) sorted by class,
    then index.

    Raises:
        InputError: (config key targets.n_targets) when a class has too few eligible samples.
    """
    generator = rng(seed, "targets")
    classes = np.unique(labels) if classes is None else np.asarray(classes)
    per_class = np.full(len(classes), n_targets // len(classes))
    per_class[generator.choice(len(classes), n_targets % len(classes), replace=False)] += 1
    chosen = []
    for cls, count in zip(classes, per_class):
        pool = np.flatnonzero(eligible & (labels == cls))
        if count > len(pool):
            raise InputError(f"config key 'targets.n_targets': class {cls} has only {len(pool)} test samples "
                             f"correctly classified on average, {count} needed")
        chosen.append(np.sort(generator.choice(pool, count, replace=False)))
    return np.concatenate(chosen).astype(np.int64)


def classes_with_pools(train_labels: np.ndarray, k: int) -> np.ndarray:
    """Classes whose training split holds at least ``k`` images: the classes a target may
    come from, since a same-class ranking lists k of them (ImageNet: k = 1000 while some
    classes have as few as 732 training images)."""
    values, counts = np.unique(train_labels, return_counts=True)
    return values[counts >= k]


def targets_frame(target_ids: np.ndarray, labels: np.ndarray, flips: np.ndarray) -> pd.DataFrame:
    """targets.csv: slot (row, names the bisection folder t{slot:03d}), target (test index), label, flip_class."""
    return pd.DataFrame({"slot": np.arange(len(target_ids)), "target": target_ids, "label": labels[target_ids],
                         "flip_class": flips[target_ids]})


def read_targets(path: str) -> pd.DataFrame:
    """Read targets.csv and check its columns."""
    frame = pd.read_csv(path)
    expected = ["slot", "target", "label", "flip_class"]
    if list(frame.columns) != expected:
        raise InputError(f"{path}: columns {list(frame.columns)}, expected {expected}")
    return frame
