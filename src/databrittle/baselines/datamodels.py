"""Datamodels baseline (Ilyas et al. 2022; paper section 2.1, Table 1, Fig. 3).

A datamodel of target z_t is a sparse linear model ``f(z_t; S) ~ w_t . 1_S + b_t`` of the
target's correct-class margin as a function of the 0/1 mask of the training subset S,
fitted by L1-regularised least squares (LASSO) on margins of models trained on random
``alpha``-subsets. Its weight ``w_t[i]`` is training sample i's attribution score.

* :func:`subset_masks_for_datamodels`: the fitting masks, seed keyed "datamodels-masks"
  (distinct from the LDS evaluation masks keyed "lds-masks").
* :func:`fit_datamodels`: one LASSO path per target, the L1 strength chosen per target on
  held-out validation masks.
* :func:`check_no_overlap`: a fitting subset that is also an LDS evaluation subset is an
  error (the LDS would then be measured on the datamodels' own training data).
* :func:`load_public_datamodels`: the public CIFAR-10 release (MadryLab "datamodels-data")
  in a user-supplied local copy, see its docstring for the file layout.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import lasso_path

from databrittle.errors import InputError
from databrittle.lds import subset_masks

DEFAULT_N_LAMBDAS = 20
DEFAULT_LAMBDA_RATIO = 1e-3  # smallest grid value / lambda_max


@dataclass(frozen=True)
class DatamodelFit:
    """Fitted datamodels of T targets over n training samples.

    Attributes:
        weights: float32 (T, n), the attribution scores (row t = datamodel of target t).
        bias: float32 (T,), intercepts.
        lam: float64 (T,), chosen L1 strength per target, in scikit-learn's ``alpha``
            convention: objective ``1/(2m) ||y - X w - b||^2 + lam ||w||_1``.
        val_mse: float64 (T,), validation mean squared error at the chosen ``lam``.
    """

    weights: np.ndarray
    bias: np.ndarray
    lam: np.ndarray
    val_mse: np.ndarray


def subset_masks_for_datamodels(n_train: int, n_models: int, alpha: float, seed: int) -> np.ndarray:
    """bool (n_models, n_train): each row keeps exactly round(alpha * n_train) samples.

    Drawn from ``rng(seed, "datamodels-masks")``, a purpose key distinct from the LDS
    masks' "lds-masks", so fitting and evaluation subsets are independent draws.
    """
    if n_train < 1 or n_models < 1:
        raise InputError(f"subset_masks_for_datamodels: n_train={n_train} and n_models={n_models} must be >= 1")
    if not 0.0 < alpha < 1.0:
        raise InputError(f"subset_masks_for_datamodels: alpha={alpha} must lie in (0, 1)")
    return subset_masks(n_train, n_models, alpha, seed, purpose="datamodels-masks")


def check_no_overlap(fit_masks: np.ndarray, lds_masks: np.ndarray, source: str) -> None:
    """Raise InputError naming ``source`` when a fitting subset equals an LDS evaluation subset.

    Args:
        fit_masks: bool (m, n), the datamodels' fitting (and validation) masks.
        lds_masks: bool (m2, n), the LDS evaluation masks.
        source: name of the file or stage the fitting masks come from, for the message.
    """
    fit_masks = _bool_masks(fit_masks, f"{source}: fitting masks")
    lds_masks = _bool_masks(lds_masks, f"{source}: LDS masks")
    if fit_masks.shape[1] != lds_masks.shape[1]:
        raise InputError(f"{source}: fitting masks have {fit_masks.shape[1]} columns, LDS masks {lds_masks.shape[1]}")
    lds_rows = {row.tobytes(): j for j, row in enumerate(np.packbits(lds_masks, axis=1))}
    for i, row in enumerate(np.packbits(fit_masks, axis=1)):
        j = lds_rows.get(row.tobytes())
        if j is not None:
            raise InputError(f"{source}: fitting mask {i} is identical to LDS evaluation mask {j}; "
                             f"fitting and LDS subsets must not overlap")


def fit_datamodels(masks: np.ndarray, margins: np.ndarray, val_masks: np.ndarray, val_margins: np.ndarray,
                   lambdas: Sequence[float] | None = None, *, max_iter: int = 10_000,
                   tol: float = 1e-4) -> DatamodelFit:
    """Fit one LASSO datamodel per target, choosing its L1 strength on validation masks.

    Features are the 0/1 masks with an intercept (fitted by centring). For each target the
    LASSO path over the grid is computed with warm starts
    (:func:`sklearn.linear_model.lasso_path`) and the grid value of smallest validation MSE
    is kept (ties: the larger, i.e. sparser, value).

    Args:
        masks: bool (m, n), fitting subsets.
        margins: float (m, T), margins of the T targets for the models trained on them.
        val_masks: bool (m_val, n), held-out subsets used only to choose the L1 strength.
        val_margins: float (m_val, T).
        lambdas: the grid shared by all targets; default per target: 20 log-spaced values
            from lambda_max (the smallest strength giving all-zero weights) down to
            1e-3 * lambda_max.
        max_iter, tol: coordinate-descent limits passed to ``lasso_path``.

    Returns:
        :class:`DatamodelFit` with weights float32 (T, n).
    """
    masks = _bool_masks(masks, "masks")
    val_masks = _bool_masks(val_masks, "val_masks")
    margins = _margins(margins, masks.shape[0], "margins")
    val_margins = _margins(val_margins, val_masks.shape[0], "val_margins")
    if val_masks.shape[1] != masks.shape[1]:
        raise InputError(f"val_masks: {val_masks.shape[1]} columns, expected {masks.shape[1]} like masks")
    if val_margins.shape[1] != margins.shape[1]:
        raise InputError(f"val_margins: {val_margins.shape[1]} targets, expected {margins.shape[1]} like margins")
    if masks.shape[0] < 2:
        raise InputError(f"masks: {masks.shape[0]} rows, need at least 2 to fit")
    grid = None if lambdas is None else _lambda_grid(lambdas)

    x = masks.astype(np.float64)
    x_mean = x.mean(axis=0)
    x_centred = np.asfortranarray(x - x_mean)
    x_val = val_masks.astype(np.float64)
    n_targets, n_features = margins.shape[1], masks.shape[1]
    weights = np.zeros((n_targets, n_features), dtype=np.float64)
    bias = np.zeros(n_targets, dtype=np.float64)
    lam = np.zeros(n_targets, dtype=np.float64)
    val_mse = np.zeros(n_targets, dtype=np.float64)
    for t in range(n_targets):
        weights[t], bias[t], lam[t], val_mse[t] = _fit_one(x_centred, x_mean, margins[:, t], x_val, val_margins[:, t],
                                                           grid, max_iter, tol)
    return DatamodelFit(weights=weights.astype(np.float32), bias=bias.astype(np.float32), lam=lam, val_mse=val_mse)


def _fit_one(x_centred: np.ndarray, x_mean: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
             grid: np.ndarray | None, max_iter: int, tol: float) -> tuple[np.ndarray, float, float, float]:
    """LASSO path of one target; returns (weights (n,), bias, chosen lam, validation MSE)."""
    y_mean = float(y.mean())
    y_centred = y - y_mean
    xy = x_centred.T @ y_centred
    lambda_max = float(np.abs(xy).max()) / len(y)
    if grid is None:
        if lambda_max <= 0.0:  # constant margins: the all-zero model is exact
            zero = np.zeros(x_centred.shape[1])
            return zero, y_mean, 0.0, float(np.mean((y_val - y_mean) ** 2))
        grid = lambda_max * np.logspace(0.0, np.log10(DEFAULT_LAMBDA_RATIO), DEFAULT_N_LAMBDAS)
    alphas, coefs, _ = lasso_path(x_centred, y_centred, alphas=grid, Xy=xy, max_iter=max_iter, tol=tol)
    intercepts = y_mean - x_mean @ coefs  # (n_lambdas,)
    predictions = x_val @ coefs + intercepts  # (m_val, n_lambdas)
    mse = np.mean((predictions - y_val[:, None]) ** 2, axis=0)
    best = int(np.argmin(mse))
    return coefs[:, best], float(intercepts[best]), float(alphas[best]), float(mse[best])


def _lambda_grid(lambdas: Sequence[float]) -> np.ndarray:
    grid = np.asarray(lambdas, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise InputError(f"lambdas: need a non-empty list of positive finite values, got {lambdas!r}")
    return np.sort(grid)[::-1]


def _bool_masks(masks: np.ndarray, name: str) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 2 or masks.shape[0] == 0 or masks.shape[1] == 0:
        raise InputError(f"{name}: shape {masks.shape}, expected non-empty (m, n_train)")
    if masks.dtype != np.bool_:
        if not (np.issubdtype(masks.dtype, np.integer) and np.all((masks == 0) | (masks == 1))):
            raise InputError(f"{name}: dtype {masks.dtype}, expected bool or 0/1 integers")
        masks = masks.astype(bool)
    return masks


def _margins(margins: np.ndarray, rows: int, name: str) -> np.ndarray:
    margins = np.asarray(margins, dtype=np.float64)
    if margins.ndim != 2 or margins.shape[0] != rows:
        raise InputError(f"{name}: shape {margins.shape}, expected ({rows}, T) matching the masks' rows")
    if not np.all(np.isfinite(margins)):
        raise InputError(f"{name}: contains NaN or infinite values")
    return margins


# --- Public CIFAR-10 datamodels release ---------------------------------------------------------

@dataclass(frozen=True)
class PublicDatamodels:
    """A local copy of the public datamodels release, checked.

    Attributes:
        masks: bool (M, n_train), one row per trained model (read-only memory map when the
            file is already bool).
        margins: float (M, n_test), the models' correct-class margins on the test set.
        weights: float (n_train, n_test) pre-fitted datamodel weights, or None.
    """

    masks: np.ndarray
    margins: np.ndarray
    weights: np.ndarray | None

    def scores(self, target_ids: np.ndarray) -> np.ndarray:
        """float32 (T, n_train): the pre-fitted weights of the test targets ``target_ids``."""
        if self.weights is None:
            raise InputError("public datamodels: no weights file was given")
        ids = np.asarray(target_ids, dtype=np.int64)
        if ids.ndim != 1 or np.any(ids < 0) or np.any(ids >= self.weights.shape[1]):
            raise InputError(f"target_ids: expected 1-D indices in [0, {self.weights.shape[1]})")
        return np.ascontiguousarray(np.asarray(self.weights[:, ids]).T, dtype=np.float32)


def load_public_datamodels(masks_path: str | os.PathLike, margins_path: str | os.PathLike,
                           weights_path: str | os.PathLike | None = None, *,
                           expected_sha256: dict[str, str] | None, n_train: int, n_test: int) -> PublicDatamodels:
    """Load user-supplied files of the public CIFAR-10 datamodels release (Ilyas et al. 2022).

    Expected structure (all ``.npy``, read with ``allow_pickle=False`` and memory-mapped):

    * ``masks_path``: bool or uint8 0/1, shape (M, n_train); row j marks the training
      samples of model j (the release's ``cifar/data/train_masks_{PCT}pct.npy``).
    * ``margins_path``: float (any float dtype; the release uses float16), shape
      (M, n_test); the correct-class test margins of the same M models, same row order
      (the release's ``cifar/data/test_margins_{PCT}pct.npy``).
    * ``weights_path`` (optional): float, shape (n_train, n_test), entry (i, j) = weight of
      training sample i in the datamodel of test sample j. The release ships the fitted
      datamodels as a torch ``.pt`` dict (``cifar/datamodels/test_{PCT}pct.pt``, keys
      ``weight`` (N_train x N_test), ``bias``, ``lam``); the user saves its ``weight``
      matrix, unchanged in orientation, with ``np.save`` (this function never unpickles).

    Column order is the default CIFAR-10 train/test order. ``expected_sha256`` maps a path
    (as given, or its file name) to its hex sha256 digest; listed files are verified.

    Raises:
        InputError: naming the file when it is missing, not a plain .npy, has the wrong
            shape or dtype, or its sha256 differs from the expected one.
    """
    expected = dict(expected_sha256 or {})
    masks = _load_public(masks_path, (None, n_train), "mask", expected)
    margins = _load_public(margins_path, (masks.shape[0], n_test), "float", expected)
    weights = None if weights_path is None else _load_public(weights_path, (n_train, n_test), "float", expected)
    if masks.dtype != np.bool_:
        masks = masks.astype(bool)
    return PublicDatamodels(masks=masks, margins=margins, weights=weights)


def _load_public(path: str | os.PathLike, shape: tuple[int | None, int], kind: str,
                 expected_sha256: dict[str, str]) -> np.ndarray:
    """Verify sha256 (if listed), memory-map a .npy and check its shape and dtype."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    digest = expected_sha256.get(str(path), expected_sha256.get(path.name))
    if digest is not None:
        actual = sha256_file(path)
        if actual != digest.lower():
            raise InputError(f"{path}: sha256 {actual}, expected {digest.lower()}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"{path}: not a complete .npy file ({error})") from None
    expected_shape = "(" + ", ".join("M" if s is None else str(s) for s in shape) + ")"
    if array.ndim != 2 or any(s is not None and a != s for a, s in zip(array.shape, shape)):
        raise InputError(f"{path}: shape {array.shape}, expected {expected_shape}")
    if kind == "mask":
        if array.dtype != np.bool_ and array.dtype != np.uint8:
            raise InputError(f"{path}: dtype {array.dtype}, expected bool or uint8 masks")
        if array.dtype == np.uint8 and np.any(array > 1):
            raise InputError(f"{path}: uint8 masks must hold only 0 and 1")
    elif not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{path}: dtype {array.dtype}, expected a float dtype")
    return array


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 24) -> str:
    """Hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
