"""Support CDF and AUC, and the linear datamodeling score (LDS).

Definitions are DESIGN.md section 1 (paper.md sections 2-4 and A.6):

* CDF(x) = fraction of *all* targets whose support is <= x; censored targets (support > k)
  stay in the denominator and are never counted.
* AUC = (1/k) x area under the step CDF over [0, k] = mean over targets of
  max(0, 1 - support/k), censored targets contributing 0. Higher = smaller supports found.
* LDS (Table 1): per target, the Spearman correlation over the m subsets S_j between the
  retrained models' margins f(z_t; S_j) and the additive prediction sum_{i in S_j} tau_i(z_t).
  A constant vector makes it undefined: it is reported as NaN *and* counted, never silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

from databrittle.errors import InputError


def _support_arrays(support: np.ndarray, censored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check (n_targets,) support/censored arrays; return float supports and bool mask.

    Censored entries may hold any value (-1, NaN, None); they are never read. Uncensored
    supports must be finite and >= 0.
    """
    try:
        values = np.asarray(support, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("support: not numeric") from None
    mask = np.asarray(censored)
    if mask.dtype != np.bool_:
        raise InputError(f"censored: dtype {mask.dtype}, expected bool")
    if values.ndim != 1 or mask.shape != values.shape:
        raise InputError(f"support/censored: shapes {values.shape} and {mask.shape}, expected equal (n_targets,)")
    if values.size == 0:
        raise InputError("support: no targets")
    kept = values[~mask]
    if not np.all(np.isfinite(kept)) or np.any(kept < 0):
        raise InputError("support: uncensored supports must be finite and >= 0")
    return values, mask


def auc(support: np.ndarray, censored: np.ndarray, k: int) -> float:
    """Normalised area under the support CDF over [0, k] (DESIGN.md section 1).

    Args:
        support: (n_targets,) support sizes; entries where ``censored`` is True are ignored.
        censored: (n_targets,) bool, True where the support is > k.
        k: ranking length, the right end of the x range.

    Returns:
        mean over targets of max(0, 1 - support/k), censored targets contributing 0.
    """
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    values, mask = _support_arrays(support, censored)
    per_target = np.where(mask, 0.0, np.maximum(0.0, 1.0 - np.where(mask, 0.0, values) / k))
    return float(per_target.mean())


def cdf(support: np.ndarray, censored: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Fraction of all targets with support <= x, for each x in ``grid`` (DESIGN.md section 1).

    Args:
        support: (n_targets,) support sizes; entries where ``censored`` is True are ignored.
        censored: (n_targets,) bool; censored targets count in the denominator only.
        grid: (n_grid,) x values.

    Returns:
        float64 (n_grid,) CDF values.
    """
    values, mask = _support_arrays(support, censored)
    xs = np.asarray(grid, dtype=np.float64)
    if xs.ndim != 1:
        raise InputError(f"grid: shape {xs.shape}, expected (n_grid,)")
    finite = np.sort(values[~mask])
    counts = np.searchsorted(finite, xs, side="right")
    return counts.astype(np.float64) / values.size


def lds(masks: np.ndarray, margins: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-target linear datamodeling score (DESIGN.md section 1, paper Table 1).

    Args:
        masks: bool (m, n_train), row j marks the training samples in subset S_j.
        margins: float (m, n_targets), margin of target t for the model(s) trained on S_j.
        scores: float (n_targets, n_train), attribution scores tau(z_t).

    Returns:
        ``(values, undefined)``: float64 (n_targets,) Spearman correlations over j between
        ``margins[:, t]`` and ``(masks @ scores.T)[:, t]``, NaN where undefined; bool
        (n_targets,) True where either vector is constant (the correlation is undefined).
        Ties get average ranks. No warnings are emitted.
    """
    masks = np.asarray(masks)
    margins = np.asarray(margins, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if masks.dtype != np.bool_ or masks.ndim != 2:
        raise InputError(f"masks: dtype {masks.dtype} shape {masks.shape}, expected bool (m, n_train)")
    m, n_train = masks.shape
    if m < 1:
        raise InputError("masks: no subsets")
    if margins.ndim != 2 or margins.shape[0] != m:
        raise InputError(f"margins: shape {margins.shape}, expected (m={m}, n_targets)")
    n_targets = margins.shape[1]
    if scores.shape != (n_targets, n_train):
        raise InputError(f"scores: shape {scores.shape}, expected (n_targets={n_targets}, n_train={n_train})")
    if not (np.all(np.isfinite(margins)) and np.all(np.isfinite(scores))):
        raise InputError("margins/scores: contain NaN or infinity")
    predicted = masks.astype(np.float64) @ scores.T  # (m, n_targets)
    undefined = _is_constant(margins) | _is_constant(predicted)
    values = np.full(n_targets, np.nan)
    ok = ~undefined
    if np.any(ok):
        values[ok] = _pearson_columns(rankdata(margins[:, ok], axis=0), rankdata(predicted[:, ok], axis=0))
    return values, undefined


def lds_summary(values: np.ndarray, undefined: np.ndarray) -> dict[str, Any]:
    """Summary of :func:`lds` for the report: mean over defined targets and counts.

    Returns:
        ``{"mean": float | None, "n_targets": int, "n_undefined": int}``; ``mean`` is None
        when no target has a defined correlation.
    """
    values = np.asarray(values, dtype=np.float64)
    undefined = np.asarray(undefined, dtype=np.bool_)
    if values.ndim != 1 or undefined.shape != values.shape:
        raise InputError(f"lds values/undefined: shapes {values.shape} and {undefined.shape}, expected equal (n_targets,)")
    defined = values[~undefined]
    if np.any(np.isnan(defined)):
        raise InputError("lds values: NaN for a target not marked undefined")
    mean = float(defined.mean()) if defined.size else None
    return {"mean": mean, "n_targets": int(values.size), "n_undefined": int(undefined.sum())}


def _is_constant(columns: np.ndarray) -> np.ndarray:
    """bool (n_columns,): True where every entry of the column equals its first entry."""
    return np.all(columns == columns[:1], axis=0)


def _pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column pair of (m, n) arrays with no constant column."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    r = (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    return np.clip(r, -1.0, 1.0)
