"""Datamodels baseline (paper section 2.1, Table 1): LASSO fit, masks, overlap check, public loader."""

import hashlib

import numpy as np
import pytest

from databrittle.baselines.datamodels import (
    check_no_overlap,
    fit_datamodels,
    load_public_datamodels,
    subset_masks_for_datamodels,
)
from databrittle.errors import InputError

N_FEATURES = 200
TRUE_VALUES = np.array([2.0, -1.5, 1.0, -1.0, 3.0])


@pytest.fixture(scope="module")
def planted():
    """A sparse linear model of 0/1 masks: 600 fitting and 300 validation alpha=0.5 masks."""
    masks = subset_masks_for_datamodels(N_FEATURES, 900, 0.5, seed=3)
    generator = np.random.default_rng(3)
    support = generator.choice(N_FEATURES, TRUE_VALUES.size, replace=False)
    weights = np.zeros(N_FEATURES)
    weights[support] = TRUE_VALUES
    margins = (masks @ weights + 0.5 + 0.1 * generator.normal(size=900))[:, None]
    fit = fit_datamodels(masks[:600], margins[:600], masks[600:], margins[600:])
    return masks, margins, support, fit


def test_recovers_planted_sparse_model(planted):
    _, _, support, fit = planted
    assert fit.weights.shape == (1, N_FEATURES) and fit.weights.dtype == np.float32
    assert fit.bias.shape == (1,) and fit.lam.shape == (1,) and fit.val_mse.shape == (1,)
    top = np.argsort(-np.abs(fit.weights[0]))[:TRUE_VALUES.size]
    assert set(top) == set(support)
    np.testing.assert_allclose(fit.weights[0, support], TRUE_VALUES, rtol=0.1)
    assert abs(fit.bias[0] - 0.5) < 0.2


def test_lambda_chosen_inside_the_grid(planted):
    masks, margins, _, fit = planted
    x = masks[:600].astype(float)
    y = margins[:600, 0]
    lambda_max = np.abs((x - x.mean(0)).T @ (y - y.mean())).max() / len(y)
    assert 1e-3 * lambda_max * 1.01 < fit.lam[0] < lambda_max * 0.99


def test_explicit_grid_and_input_errors(planted):
    masks, margins, _, _ = planted
    fit = fit_datamodels(masks[:600], margins[:600], masks[600:], margins[600:], lambdas=[1e-3, 1e3])
    assert fit.lam[0] == pytest.approx(1e-3)
    with pytest.raises(InputError, match="lambdas"):
        fit_datamodels(masks[:600], margins[:600], masks[600:], margins[600:], lambdas=[-1.0])
    with pytest.raises(InputError, match="val_margins"):
        fit_datamodels(masks[:600], margins[:600], masks[600:], margins[:600])


def test_constant_margins_give_zero_weights():
    masks = subset_masks_for_datamodels(20, 30, 0.5, seed=0)
    fit = fit_datamodels(masks[:20], np.full((20, 1), 2.0), masks[20:], np.full((10, 1), 2.0))
    assert not fit.weights.any() and fit.bias[0] == pytest.approx(2.0)


def test_overlap_between_fitting_and_lds_masks_is_an_error():
    fit_masks = subset_masks_for_datamodels(50, 10, 0.5, seed=1)
    lds_masks = subset_masks_for_datamodels(50, 10, 0.5, seed=2)
    check_no_overlap(fit_masks, lds_masks, "fit.npy")
    with pytest.raises(InputError, match=r"fit\.npy: fitting mask 4 .* LDS evaluation mask 7"):
        check_no_overlap(fit_masks, np.vstack([lds_masks[:7], fit_masks[4:5], lds_masks[7:]]), "fit.npy")


def test_masks_exact_size_and_seeded():
    masks = subset_masks_for_datamodels(101, 8, 0.3, seed=5)
    assert masks.dtype == np.bool_ and masks.shape == (8, 101)
    assert (masks.sum(1) == round(0.3 * 101)).all()
    np.testing.assert_array_equal(masks, subset_masks_for_datamodels(101, 8, 0.3, seed=5))
    assert not np.array_equal(masks, subset_masks_for_datamodels(101, 8, 0.3, seed=6))
    from databrittle.lds import subset_masks
    assert not np.array_equal(masks, subset_masks(101, 8, 0.3, seed=5))  # distinct purpose key


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_public_loader(tmp_path):
    n_train, n_test, models = 12, 5, 7
    generator = np.random.default_rng(0)
    masks_path, margins_path, weights_path = tmp_path / "masks.npy", tmp_path / "margins.npy", tmp_path / "w.npy"
    np.save(masks_path, generator.random((models, n_train)) < 0.5)
    np.save(margins_path, generator.normal(size=(models, n_test)).astype(np.float16))
    weights = generator.normal(size=(n_train, n_test)).astype(np.float32)
    np.save(weights_path, weights)
    sums = {"masks.npy": _sha(masks_path), str(margins_path): _sha(margins_path), "w.npy": _sha(weights_path)}

    data = load_public_datamodels(masks_path, margins_path, weights_path, expected_sha256=sums,
                                  n_train=n_train, n_test=n_test)
    assert data.masks.shape == (models, n_train) and data.masks.dtype == np.bool_
    assert data.margins.shape == (models, n_test)
    scores = data.scores(np.array([3, 0]))
    assert scores.shape == (2, n_train) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores, weights[:, [3, 0]].T)
    assert load_public_datamodels(masks_path, margins_path, expected_sha256=None, n_train=n_train,
                                  n_test=n_test).weights is None

    np.save(weights_path, weights[1:])
    with pytest.raises(InputError, match=r"w\.npy: shape \(11, 5\), expected \(12, 5\)"):
        load_public_datamodels(masks_path, margins_path, weights_path, expected_sha256=None,
                               n_train=n_train, n_test=n_test)
    with pytest.raises(InputError, match=r"masks\.npy: shape \(7, 12\), expected \(M, 13\)"):
        load_public_datamodels(masks_path, margins_path, expected_sha256=None, n_train=n_train + 1, n_test=n_test)
    with pytest.raises(InputError, match=r"margins\.npy: shape .* expected \(7, 6\)"):
        load_public_datamodels(masks_path, margins_path, expected_sha256=None, n_train=n_train, n_test=n_test + 1)
    with pytest.raises(InputError, match=r"margins\.npy: sha256"):
        load_public_datamodels(masks_path, margins_path, expected_sha256={"margins.npy": "0" * 64},
                               n_train=n_train, n_test=n_test)
    np.save(margins_path, np.zeros((models, n_test), dtype=np.int64))
    with pytest.raises(InputError, match=r"margins\.npy: dtype int64"):
        load_public_datamodels(masks_path, margins_path, expected_sha256=None, n_train=n_train, n_test=n_test)
