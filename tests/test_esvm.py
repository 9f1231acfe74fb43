"""The batched exact ESVM solver against scikit-learn's LinearSVC (issue 4)."""

import numpy as np
import pytest

from databrittle import esvm
from databrittle.errors import InputError
from databrittle.methods import parse_method
from databrittle.rank import esvm_similarity, rank_targets


def objective(weights: np.ndarray, positive: np.ndarray, negatives: np.ndarray, C: float) -> float:
    """LinearSVC's primal objective (squared hinge, balanced weights, penalised intercept)."""
    n = len(negatives)
    c_pos, c_neg = C * (n + 1) / 2, C * (n + 1) / (2 * n)
    w, b = weights[:-1], weights[-1]
    return (0.5 * weights @ weights + c_pos * max(0.0, 1 - (positive @ w + b)) ** 2
            + c_neg * (np.maximum(0.0, 1 + negatives @ w + b) ** 2).sum())


@pytest.fixture
def problem(rng):
    centres = rng.normal(size=(4, 24))
    negatives = centres[rng.integers(0, 4, 600)] + rng.normal(size=(600, 24))
    positives = centres[rng.integers(0, 4, 6)] + rng.normal(size=(6, 24))
    return positives.astype(np.float32), negatives.astype(np.float32)


def test_batched_solver_reaches_the_optimum_of_scikit_learns_objective(problem):
    positives, negatives = problem
    ours = esvm.fit(positives, negatives, 0.1)
    for row, positive in enumerate(positives):
        reference = esvm.fit_reference(positive, negatives, 0.1)
        mine = objective(ours[row], positive.astype(np.float64), negatives.astype(np.float64), 0.1)
        theirs = objective(reference, positive.astype(np.float64), negatives.astype(np.float64), 0.1)
        assert mine <= theirs + 1e-9 * abs(theirs)  # at least as good as liblinear at tol 1e-6
        np.testing.assert_allclose(ours[row], reference, atol=1e-5)


def test_batched_top_k_agrees_with_scikit_learn(problem):
    positives, negatives = problem
    ours = esvm_similarity(positives, negatives, negatives, 0.1, "newton")
    theirs = esvm_similarity(positives, negatives, negatives, 0.1, "sklearn")
    for a, b in zip(ours, theirs):
        top_a, top_b = set(np.argsort(-a)[:100]), set(np.argsort(-b)[:100])
        assert len(top_a & top_b) / len(top_a | top_b) >= 0.99


def test_each_target_is_solved_independently_of_the_others(problem):
    positives, negatives = problem
    together = esvm.fit(positives, negatives, 0.1)
    alone = esvm.fit(positives[2:3], negatives, 0.1)
    np.testing.assert_allclose(together[2], alone[0], atol=1e-8)


def test_unknown_solver_and_empty_pool_are_clear_errors(problem):
    positives, negatives = problem
    with pytest.raises(InputError, match="config key 'esvm.solver'"):
        esvm_similarity(positives, negatives, negatives, 0.1, "liblinear")
    with pytest.raises(InputError, match="candidate pool is empty"):
        esvm.fit(positives, negatives[:0], 0.1)


def test_all_class_pool_can_rank_other_classes_and_same_class_pool_never_does(rng):
    features = rng.normal(size=(300, 8))
    labels = np.arange(300) % 3
    targets = rng.normal(size=(4, 8))
    target_labels = np.array([0, 1, 2, 0])
    for name in ("esvm-moco", "l2-moco", "cosine-moco"):
        same = rank_targets(parse_method(name), features, labels, targets, target_labels, np.arange(4), 60, 0.1, 0)
        assert (labels[same.indices] == target_labels[:, None]).all()
        every = rank_targets(parse_method(f"{name}-allclass"), features, labels, targets, target_labels, np.arange(4),
                             60, 0.1, 0)
        assert (labels[every.indices] != target_labels[:, None]).any()


def test_large_features_with_a_pool_smaller_than_the_dimension_still_reach_the_optimum(rng):
    """float32 Hessians lose positive definiteness here; the solver rebuilds them exactly."""
    positives = rng.normal(size=(2, 256)) * 3000
    negatives = rng.normal(size=(100, 256)) * 3000
    rebuilt = []
    original = esvm._Hessians.rebuild_exact

    def counting(self, targets, active):
        rebuilt.append(len(targets))
        return original(self, targets, active)

    esvm._Hessians.rebuild_exact = counting
    try:
        ours = esvm.fit(positives, negatives, 0.1)
    finally:
        esvm._Hessians.rebuild_exact = original
    assert rebuilt  # the case really exercises the exact rebuild
    assert np.isfinite(ours).all()
    for row, positive in enumerate(positives):
        reference = esvm.fit_reference(positive, negatives, 0.1)
        assert objective(ours[row], positive, negatives, 0.1) <= objective(reference, positive, negatives, 0.1) * (1 + 1e-6)


def test_tiny_pools_and_a_target_equal_to_a_candidate_converge(rng):
    negatives = rng.normal(size=(3, 8))
    for positives in (rng.normal(size=(2, 8)), negatives[:1].copy()):
        ours = esvm.fit(positives, negatives, 0.1, max_iter=40)
        for row, positive in enumerate(positives):
            np.testing.assert_allclose(ours[row], esvm.fit_reference(positive, negatives, 0.1), atol=1e-6)
