import numpy as np
import pytest

from databrittle.methods import parse_method
from databrittle.errors import InputError
from databrittle.rank import check_features, esvm_similarity, lds_score_vectors, rank_targets


def test_esvm_ranks_an_exact_duplicate_first(rng):
    features = rng.normal(size=(200, 16))
    labels = np.arange(200) % 2
    target = rng.normal(size=16)
    features[42] = target  # class 0 duplicate of the target
    result = rank_targets(parse_method("esvm-moco"), features, labels, target[None], np.array([0]), np.array([7]),
                          10, 0.1, 0)
    assert result.indices[0, 0] == 42
    assert (labels[result.indices[0]] == 0).all()
    assert np.all(np.diff(result.scores[0]) <= 0)


def test_l2_equals_brute_force(rng):
    features = rng.normal(size=(60, 5))
    labels = np.arange(60) % 3
    targets = rng.normal(size=(2, 5))
    result = rank_targets(parse_method("l2-moco"), features, labels, targets, np.array([1, 2]), np.array([0, 1]),
                          20, 0.1, 0)
    for row, label in enumerate([1, 2]):
        pool = np.flatnonzero(labels == label)
        distances = [np.sqrt(((features[i] - targets[row]) ** 2).sum()) for i in pool]
        assert result.indices[row].tolist() == pool[np.argsort(distances)].tolist()


def test_random_ranking_is_a_seeded_same_class_permutation():
    labels = np.arange(100) % 4
    spec = parse_method("random")
    a = rank_targets(spec, None, labels, None, np.array([2]), np.array([9]), 25, 0.1, 0)
    b = rank_targets(spec, None, labels, None, np.array([2]), np.array([9]), 25, 0.1, 0)
    c = rank_targets(spec, None, labels, None, np.array([2]), np.array([9]), 25, 0.1, 1)
    assert sorted(a.indices[0]) == list(range(2, 100, 4))
    assert np.array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)


def test_esvm_decision_values_match_sklearn(rng):
    from sklearn.svm import LinearSVC

    negatives = rng.normal(size=(30, 4))
    target = rng.normal(size=4) + 2
    svm = LinearSVC(C=0.1, class_weight="balanced", dual=False, tol=1e-6).fit(
        np.vstack([target, negatives]), np.r_[1, np.zeros(30)])
    for solver in ("newton", "sklearn"):
        values = esvm_similarity(target[None], negatives, negatives, C=0.1, solver=solver)[0]
        np.testing.assert_allclose(values, svm.decision_function(negatives), rtol=1e-5, atol=1e-7)


def test_k_larger_than_pool_and_bad_features_are_errors(rng):
    labels = np.arange(10) % 2
    with pytest.raises(InputError, match="bisection.k"):
        rank_targets(parse_method("random"), None, labels, None, np.array([0]), np.array([0]), 6, 0.1, 0)
    features = rng.normal(size=(10, 3))
    features[3, 1] = np.nan
    with pytest.raises(InputError, match="f.npy: features contain NaN or inf"):
        check_features(features, 10, "f.npy")
    with pytest.raises(InputError, match="f.npy: 10 feature rows but the dataset has 11 samples"):
        check_features(np.zeros((10, 3)), 11, "f.npy")


def test_lds_score_vectors_sign_rank_and_sparsity():
    similarity = np.array([[0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.0, 0.8, 0.6, 0.4]])
    train_labels = np.array([0, 0, 1, 0, 1, 0, 0, 1, 0, 0])
    tau = lds_score_vectors(similarity, train_labels, np.array([0]), top_fraction=0.3)
    # ranks: 0 -> 0, 7 -> 1, 4 -> 2 are the top 30%; magnitude 1 - rank/10, sign by class
    expected = np.zeros(10, np.float32)
    expected[[0, 7, 4]] = [1.0, -0.9, -0.8]
    np.testing.assert_allclose(tau[0], expected)


def test_cosine_equals_brute_force(rng):
    features = rng.normal(size=(40, 6))
    labels = np.zeros(40, dtype=int)
    target = rng.normal(size=(1, 6))
    result = rank_targets(parse_method("cosine-moco"), features, labels, target, np.array([0]), np.array([0]), 40,
                          0.1, 0)
    brute = [features[i] @ target[0] / np.linalg.norm(features[i]) / np.linalg.norm(target[0]) for i in range(40)]
    assert result.indices[0].tolist() == np.argsort(brute)[::-1].tolist()
    np.testing.assert_allclose(result.scores[0], np.sort(brute)[::-1], rtol=1e-6)


def test_attribution_scores_must_be_finite_and_of_the_right_shape():
    from databrittle.rank import check_scores

    check_scores(np.zeros((2, 5)), 2, 5, "method 'trak'")
    with pytest.raises(InputError, match="method 'trak': scores contain NaN"):
        check_scores(np.array([[0.0, np.nan]]), 1, 2, "method 'trak'")
    with pytest.raises(InputError, match=r"method 'trak': scores of shape \(1, 3\), expected \(1, 2\)"):
        check_scores(np.zeros((1, 3)), 1, 2, "method 'trak'")
