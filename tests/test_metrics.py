"""CDF, AUC and LDS on hand-computed examples (DESIGN.md section 1)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import spearmanr

from databrittle.errors import InputError
from databrittle.metrics import auc, cdf, lds, lds_summary

# k = 10, supports 2, 5, 10 and one censored target (its stored value is never read)
SUPPORT = np.array([2, 5, 10, -1])
CENSORED = np.array([False, False, False, True])


def test_auc_hand_computed():
    assert auc(SUPPORT, CENSORED, 10) == pytest.approx((0.8 + 0.5 + 0.0 + 0.0) / 4)
    assert auc(SUPPORT, CENSORED, 10) == pytest.approx(0.325)


def test_cdf_hand_computed():
    grid = np.array([0, 2, 5, 9, 10])
    np.testing.assert_allclose(cdf(SUPPORT, CENSORED, grid), [0.0, 0.25, 0.5, 0.5, 0.75])
    # the censored value is ignored, whatever it is
    np.testing.assert_allclose(cdf(np.array([2, 5, 10, 0]), CENSORED, grid), [0.0, 0.25, 0.5, 0.5, 0.75])


def test_auc_is_normalised_area_under_step_cdf():
    k = 10
    xs = np.arange(k)  # the step CDF is constant on [x, x + 1) for integer supports
    area = cdf(SUPPORT, CENSORED, xs).sum() / k
    assert area == pytest.approx(auc(SUPPORT, CENSORED, k))


def test_all_censored_and_validation():
    assert auc(np.array([0, 0]), np.array([True, True]), 5) == 0.0
    with pytest.raises(InputError):
        auc(SUPPORT, CENSORED.astype(int), 10)  # censored must be bool
    with pytest.raises(InputError):
        auc(SUPPORT[:3], CENSORED, 10)  # shape mismatch
    with pytest.raises(InputError):
        auc(np.array([]), np.array([], dtype=bool), 10)
    with pytest.raises(InputError):
        cdf(np.array([np.nan, 3.0]), np.array([False, False]), np.array([1.0]))


# LDS: 5 subsets of 4 training samples.
MASKS = np.array([[1, 1, 0, 0],
                  [0, 1, 1, 0],
                  [1, 0, 1, 1],
                  [0, 0, 0, 1],
                  [1, 1, 1, 1]], dtype=bool)
SCORES = np.array([[1.0, 2.0, 3.0, 4.0],     # predicted 3, 5, 8, 4, 10 -> ranks 1, 3, 4, 2, 5
                   [-1.0, 0.0, 1.0, 0.0],    # predicted -1, 1, 0, 0, 0 -> ranks 1, 5, 3, 3, 3
                   [1.0, 1.0, 1.0, 1.0],     # margins constant -> undefined
                   [0.0, 0.0, 0.0, 0.0]])    # predicted constant -> undefined
MARGINS = np.array([[0.1, 2.0, 1.0, 0.3],
                    [0.2, -1.0, 1.0, 0.1],
                    [0.3, 0.5, 1.0, 0.5],
                    [0.4, 3.0, 1.0, 0.2],
                    [0.5, 1.0, 1.0, 0.4]])
# target 0: margin ranks 1..5, d = 0, 1, 1, -2, 0 -> 1 - 6 * 6 / (5 * 24) = 0.7
# target 1: margin ranks 4, 1, 2, 5, 3; centred ranks (-2, 2, 0, 0, 0), (1, -2, -1, 2, 0)
#           -> -6 / sqrt(8 * 10) = -3 / (2 sqrt 5)
EXPECTED = [0.7, -3 / (2 * math.sqrt(5))]


def test_lds_hand_computed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values, undefined = lds(MASKS, MARGINS, SCORES)
    assert values.dtype == np.float64 and values.shape == (4,)
    assert undefined.dtype == np.bool_ and undefined.tolist() == [False, False, True, True]
    np.testing.assert_allclose(values[:2], EXPECTED)
    assert np.isnan(values[2]) and np.isnan(values[3])
    predicted = MASKS.astype(float) @ SCORES.T
    for t in range(2):
        assert values[t] == pytest.approx(spearmanr(MARGINS[:, t], predicted[:, t]).statistic)


def test_lds_summary_counts_undefined():
    values, undefined = lds(MASKS, MARGINS, SCORES)
    summary = lds_summary(values, undefined)
    assert summary == {"mean": pytest.approx((0.7 - 3 / (2 * math.sqrt(5))) / 2), "n_targets": 4, "n_undefined": 2}
    assert lds_summary(np.array([np.nan]), np.array([True])) == {"mean": None, "n_targets": 1, "n_undefined": 1}


def test_lds_all_undefined_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values, undefined = lds(MASKS[:1], MARGINS[:1], SCORES)  # one subset: every vector constant
    assert undefined.all() and np.isnan(values).all()


def test_lds_validates_shapes():
    with pytest.raises(InputError):
        lds(MASKS.astype(int), MARGINS, SCORES)
    with pytest.raises(InputError):
        lds(MASKS, MARGINS[:4], SCORES)
    with pytest.raises(InputError):
        lds(MASKS, MARGINS, SCORES[:, :3])
