"""Ranking training images for each target by feature similarity (paper section 3).

Similarities (higher = more similar = more positive influence):
- ``esvm``: Exemplar SVM (Malisiewicz et al. 2011): a linear SVM with the target as the only
  positive and the candidate pool as negatives; squared hinge, ``C`` (0.1), balanced class
  weights, penalised intercept (scikit-learn ``LinearSVC``), as the paper's released code,
  solved for all targets of a pool at once by :mod:`databrittle.esvm` (``solver: newton``)
  or by scikit-learn (``solver: sklearn``, the reference). Candidates are ranked by
  decision value, highest first. (The paper's text says "inverse of the distance to the
  decision boundary"; its released code ranks by decision value; we follow the code.)
- ``l2``: negative Euclidean distance; ``cosine``: cosine similarity.
- ``random``: a random order (the control), drawn from a seed keyed by the target.

Candidate pool (:mod:`databrittle.methods`): the training images of the target's class
(paper A.4's default) or every training image (``-allclass``).

Outputs (DESIGN.md section 3): rankings int64 (n_targets, k), their scores float32
(n_targets, k), and full LDS score vectors float32 (n_targets, n_train) built with
:func:`lds_score_vectors` (sign estimation + top-5% sparsification, paper sections 3, 5.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from databrittle import esvm
from databrittle.errors import InputError
from databrittle.methods import MethodSpec
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


def check_scores(scores: np.ndarray, n_targets: int, n_train: int, source: str) -> None:
    """Attribution scores must be finite, float (T, n_train)."""
    if scores.shape != (n_targets, n_train):
        raise InputError(f"{source}: scores of shape {scores.shape}, expected ({n_targets}, {n_train})")
    if not np.isfinite(scores).all():
        raise InputError(f"{source}: scores contain NaN or inf")


def l2_similarity(targets: np.ndarray, evaluate: np.ndarray) -> np.ndarray:
    """Negative Euclidean distances float64 (T, n) of ``evaluate`` (n, d) to ``targets`` (T, d)."""
    t, e = targets.astype(np.float64), evaluate.astype(np.float64)
    squared = (t**2).sum(1)[:, None] - 2 * t @ e.T + (e**2).sum(1)[None, :]
    return -np.sqrt(np.maximum(squared, 0.0))


def cosine_similarity(targets: np.ndarray, evaluate: np.ndarray) -> np.ndarray:
    """Cosine similarities float64 (T, n) of ``evaluate`` (n, d) to ``targets`` (T, d)."""
    t, e = targets.astype(np.float64), evaluate.astype(np.float64)
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return t @ e.T


def candidate_pool(spec: MethodSpec, train_labels: np.ndarray, label: int) -> np.ndarray:
    """Training indices (ascending) a target of class ``label`` ranks: its class, or all."""
    if spec.pool == "all_classes":
        return np.arange(len(train_labels))
    return np.flatnonzero(train_labels == label)


def esvm_similarity(targets: np.ndarray, negatives: np.ndarray, evaluate: np.ndarray, C: float,
                    solver: str = "newton") -> np.ndarray:
    """Decision values float64 (T, n) on ``evaluate`` (n, d) of one ESVM per target (T, d),
    each with the shared ``negatives`` (c, d) as its negatives."""
    if solver == "newton":
        weights = esvm.fit(targets, negatives, C)
    elif solver == "sklearn":
        weights = np.stack([esvm.fit_reference(t, negatives, C) for t in targets])
    else:
        raise InputError(f"config key 'esvm.solver': unknown solver {solver!r} (expected one of {esvm.SOLVERS})")
    return esvm.decision_values(weights, evaluate)


def rank_targets(spec: MethodSpec, train_features: np.ndarray | None, train_labels: np.ndarray,
                 target_features: np.ndarray | None, target_labels: np.ndarray, target_ids: np.ndarray,
                 k: int, C: float, seed: int, solver: str = "newton") -> Rankings:
    """Rank the candidates of every target.

    Args:
        train_features: (n_train, d) or None for ``random``.
        target_features: (T, d) features of the targets, or None for ``random``.
        target_labels: int (T,); target_ids: int (T,) test indices (key the random control).
        k: ranking length; must not exceed any target's pool.
    """
    target_labels = np.asarray(target_labels)
    check_pools(spec, train_labels, target_labels, k)
    similarity = similarity_matrix(spec, train_features, train_labels, target_features, target_labels, target_ids,
                                   C, seed, solver)
    return rank_by_similarity(spec, similarity, train_labels, target_labels, k)


def check_pools(spec: MethodSpec, train_labels: np.ndarray, target_labels: np.ndarray, k: int) -> None:
    """k must not exceed any target's candidate pool."""
    for label in np.unique(target_labels):
        pool = candidate_pool(spec, train_labels, int(label))
        if k > len(pool):
            raise InputError(f"config key 'bisection.k': {k} is larger than the {len(pool)} candidates of class {label}")


def rank_by_similarity(spec: MethodSpec, similarity: np.ndarray, train_labels: np.ndarray, target_labels: np.ndarray,
                       k: int) -> Rankings:
    """Each target's k most similar candidates of its pool, best first (ties: lower index)."""
    pools = [candidate_pool(spec, train_labels, int(label)) for label in target_labels]
    indices = np.empty((len(target_labels), k), np.int64)
    scores = np.empty((len(target_labels), k), np.float32)
    for row, pool in enumerate(pools):
        order = pool[np.argsort(-similarity[row, pool], kind="stable")][:k]
        indices[row], scores[row] = order, similarity[row, order]
    return Rankings(indices, scores, similarity)


def similarity_matrix(spec: MethodSpec, train_features: np.ndarray | None, train_labels: np.ndarray,
                      target_features: np.ndarray | None, target_labels: np.ndarray, target_ids: np.ndarray,
                      C: float, seed: int, solver: str = "newton") -> np.ndarray:
    """Similarity float64 (T, n_train) of every training sample to every target.

    For ESVM the SVMs of all targets sharing a pool are fit together; every training
    sample is then scored by its target's SVM (the LDS score vectors use all of them).
    """
    n_train = len(train_labels)
    if spec.similarity == "random":
        return np.stack([rng(seed, "random-ranking", int(t)).random(n_train) for t in target_ids])
    if spec.similarity == "l2":
        return l2_similarity(target_features, train_features)
    if spec.similarity == "cosine":
        return cosine_similarity(target_features, train_features)
    if spec.similarity == "esvm":
        similarity = np.empty((len(target_labels), n_train))
        groups = {"all": np.arange(len(target_labels))} if spec.pool == "all_classes" else \
            {label: np.flatnonzero(target_labels == label) for label in np.unique(target_labels)}
        for key, rows in groups.items():
            pool = candidate_pool(spec, train_labels, int(target_labels[rows[0]]))
            similarity[rows] = esvm_similarity(target_features[rows], train_features[pool], train_features, C, solver)
        return similarity
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
