"""Ranking training images for each target by feature similarity (paper section 3).

Similarities (higher = more similar = more positive influence):
- ``esvm``: Exemplar SVM (Malisiewicz et al. 2011): a linear SVM with the target as the only
  positive and the candidate pool as negatives; squared hinge, ``C`` (0.1), balanced class
  weights, penalised intercept (scikit-learn ``LinearSVC``), as the paper's released code.
  Candidates are ranked by decision value, highest first. (The paper's text says "inverse of
  the distance to the decision boundary"; its released code ranks by decision value; we
  follow the code.)
- ``l2``: negative Euclidean distance.
- ``random``: a random order (the control), drawn from a seed keyed by the target.

Candidate pool: the training images of the target's class (paper A.4).

Outputs (DESIGN.md section 3): rankings int64 (n_targets, k), their scores float32
(n_targets, k), and full LDS score vectors float32 (n_targets, n_train) built with
:func:`lds_score_vectors` (sign estimation + top-5% sparsification, paper sections 3, 5.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from databrittle.config import MethodSpec
from databrittle.errors import InputError
from databrittle.seeds import rng


@dataclass(frozen=True)
class Rankings:
    """indices int64 (T, k), scores float32 (T, k), similarity float64 (T, n_train)."""

    indices: np.ndarray
    scores: np.ndarray
    similarity: np.ndarray


def check_features(features: np.ndarray, rows: int, source: str) -> None:
    """Features must be finite, 2-D and have one row per dataset sample."""
    if features.ndim != 2:
        raise InputError(f"{source}: features must be 2-D (n, d), got shape {features.shape}")
    if features.shape[0] != rows:
        raise InputError(f"{source}: {features.shape[0]} feature rows but the dataset has {rows} samples")
    if not np.isfinite(features).all():
        raise InputError(f"{source}: features contain NaN or inf")


def esvm_similarity(target: np.ndarray, negatives: np.ndarray, evaluate: np.ndarray, C: float) -> np.ndarray:
    """Decision values of an Exemplar SVM (target positive, ``negatives`` negative).

    Args:
        target: (d,) target feature.
        negatives: (c, d) candidate features.
        evaluate: (n, d) features to score.
    Returns:
        float64 (n,) decision values, higher = more similar.
    """
    from sklearn.svm import LinearSVC

    x = np.vstack([target[None, :], negatives])
    y = np.r_[1, np.zeros(len(negatives), dtype=int)]
    svm = LinearSVC(C=C, loss="squared_hinge", class_weight="balanced", dual=False, tol=1e-6, max_iter=10000)
    svm.fit(x, y)
    return svm.decision_function(evaluate).astype(np.float64)


def l2_similarity(target: np.ndarray, evaluate: np.ndarray) -> np.ndarray:
    """Negative Euclidean distance (n,) of ``evaluate`` (n, d) to ``target`` (d,)."""
    return -np.linalg.norm(evaluate.astype(np.float64) - target.astype(np.float64), axis=1)


def rank_targets(spec: MethodSpec, train_features: np.ndarray | None, train_labels: np.ndarray,
                 target_features: np.ndarray | None, target_labels: np.ndarray, target_ids: np.ndarray,
                 k: int, C: float, seed: int) -> Rankings:
    """Rank the same-class candidates of every target.

    Args:
        train_features: (n_train, d) or None for ``random``.
        target_features: (T, d) features of the targets, or None for ``random``.
        target_labels: int (T,); target_ids: int (T,) test indices (key the random control).
        k: ranking length; must not exceed any target's pool.
    """
    n_train = len(train_labels)
    indices = np.empty((len(target_labels), k), np.int64)
    scores = np.empty((len(target_labels), k), np.float32)
    similarity = np.empty((len(target_labels), n_train), np.float64)
    for row, label in enumerate(target_labels):
        pool = np.flatnonzero(train_labels == label)
        if k > len(pool):
            raise InputError(f"config key 'bisection.k': {k} is larger than the {len(pool)} candidates of class {label}")
        similarity[row] = _similarity(spec, row, pool, train_features, target_features, int(target_ids[row]), n_train, C,
                                      seed)
        order = pool[np.argsort(-similarity[row, pool], kind="stable")][:k]
        indices[row], scores[row] = order, similarity[row, order]
    return Rankings(indices, scores, similarity)


def _similarity(spec: MethodSpec, row: int, pool: np.ndarray, train_features: np.ndarray | None,
                target_features: np.ndarray | None, target_id: int, n_train: int, C: float, seed: int) -> np.ndarray:
    """Similarity of every training sample (n_train,) to target ``row``."""
    if spec.similarity == "random":
        return rng(seed, "random-ranking", target_id).random(n_train)
    target = target_features[row]
    if spec.similarity == "l2":
        return l2_similarity(target, train_features)
    if spec.similarity == "esvm":
        return esvm_similarity(target, train_features[pool], train_features, C)
    raise InputError(f"method '{spec.name}': unknown similarity {spec.similarity!r}")


def lds_score_vectors(similarity: np.ndarray, train_labels: np.ndarray, target_labels: np.ndarray,
                      top_fraction: float) -> np.ndarray:
    """Full attribution score vectors tau for LDS (DESIGN.md section 1, paper sections 3, 5.1).

    magnitude_i = 1 - rank_i / n (rank 0 = most similar among all n training samples),
    sign_i = +1 if y_i = y_t else -1, tau_i = sign_i * magnitude_i; only the top
    ``top_fraction`` of samples by |tau| are kept (ceil(top_fraction * n)), the rest set to 0.

    Args:
        similarity: (T, n_train), higher = more similar.
        train_labels: int (n_train,); target_labels: int (T,).
    Returns:
        float32 (T, n_train).
    """
    n_targets, n_train = similarity.shape
    order = np.argsort(-similarity, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n_train)[None, :].repeat(n_targets, 0), axis=1)
    magnitude = 1.0 - rank / n_train
    sign = np.where(train_labels[None, :] == np.asarray(target_labels)[:, None], 1.0, -1.0)
    tau = sign * magnitude
    keep = rank < int(np.ceil(top_fraction * n_train))  # top by |tau| = top by similarity rank
    return np.where(keep, tau, 0.0).astype(np.float32)
