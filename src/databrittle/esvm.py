"""Exemplar SVMs for many targets at once, solved exactly (paper section 3).

An Exemplar SVM (Malisiewicz et al. 2011) is a linear SVM with one positive, the target,
and a pool of negatives, the candidates. The paper's released code fits scikit-learn's
``LinearSVC(C=0.1, loss="squared_hinge", class_weight="balanced")``, whose primal problem,
with the intercept learned as the weight of a constant feature 1 (``intercept_scaling=1``,
so it is penalised too), is, for w~ = (w, b) and x~ = (x, 1):

    min_w~  1/2 |w~|^2 + c_pos * max(0, 1 - w~.p~)^2 + c_neg * sum_i max(0, 1 + w~.x~_i)^2

with the balanced class weights ``c_pos = C * n_total / 2`` (one positive) and
``c_neg = C * n_total / (2 * n_neg)``, ``n_total = n_neg + 1``.

The objective is strictly convex and piecewise quadratic, so a Newton method on its
generalised Hessian with an exact line search (Keerthi and DeCoste 2005, "a modified
finite Newton method for fast solution of large scale linear SVMs") reaches the optimum in
a few iterations. All targets that share a candidate pool (the same-class pool of one
class, or every training image) are solved together: their score products are one matrix
product, and each Hessian is built from the pool's Gram matrix minus (or plus) the outer
products of the candidates on the other side of the margin, whichever set is smaller.
:func:`fit_reference` keeps scikit-learn's solver selectable as the reference.
"""

from __future__ import annotations

import numpy as np
import torch

from databrittle.errors import InputError

SOLVERS = ("newton", "sklearn")


def _augment(x: np.ndarray) -> torch.Tensor:
    """(n, d) -> float64 (n, d+1) with the constant intercept feature 1."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    return torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)


def fit(positives: np.ndarray, negatives: np.ndarray, C: float, *, tol: float = 1e-9,
        max_iter: int = 100) -> np.ndarray:
    """Fit one Exemplar SVM per positive against the shared ``negatives``.

    Args:
        positives: (T, d) target features.
        negatives: (n, d) candidate features (the pool), shared by every target.
        C: regularisation (paper's code: 0.1).
        tol: stop when every target's gradient norm is below ``tol`` times its initial one
            (the objective's optimum itself does not depend on the Hessians' float32
            rounding: they only choose the search direction).
    Returns:
        float64 (T, d+1): weights, intercept last. Decision values are ``x @ w[:d] + w[d]``.
    """
    pos = _augment(positives)
    neg = _augment(negatives)
    n_targets, dim = pos.shape
    n_neg = len(neg)
    if n_neg == 0:
        raise InputError("ESVM: the candidate pool is empty")
    c_pos = C * (n_neg + 1) / 2.0
    c_neg = C * (n_neg + 1) / (2.0 * n_neg)
    hessians = _Hessians(neg, n_targets)
    w = torch.zeros(n_targets, dim, dtype=torch.float64)
    start_norm = None
    for _ in range(max_iter):
        s_pos = (pos * w).sum(1)
        s_neg = neg @ w.T  # (n, T)
        r_pos = (1.0 - s_pos).clamp(min=0)
        r_neg = (1.0 + s_neg).clamp(min=0)
        grad = w - 2 * c_pos * r_pos[:, None] * pos + 2 * c_neg * (r_neg.T @ neg)
        norm = grad.norm(dim=1)
        start_norm = norm.clamp(min=1.0) if start_norm is None else start_norm
        if (norm <= tol * start_norm).all():
            break
        hessians.update(r_neg > 0)
        matrices = hessians.matrices(pos, r_pos > 0, c_pos, c_neg)
        factor, info = torch.linalg.cholesky_ex(matrices)
        if bool((info > 0).any()):  # float32 rounding broke positive definiteness: rebuild exactly
            failed = torch.nonzero(info > 0).flatten()
            hessians.rebuild_exact(failed, r_neg > 0)
            matrices = hessians.matrices(pos, r_pos > 0, c_pos, c_neg)
            factor = torch.linalg.cholesky(matrices)
        direction = -torch.cholesky_solve(grad[:, :, None], factor)[:, :, 0]
        decrement = -(grad * direction).sum(1)  # Newton decrement d'Hd: the objective gap, to first order
        if bool((decrement <= 1e-15 * (1.0 + (w * w).sum(1))).all()):
            break  # at float64 precision: a further step cannot be resolved
        step = _exact_step(w, direction, pos, neg, s_pos, s_neg, c_pos, c_neg)
        w = w + step[:, None] * direction
    return w.numpy()


class _Hessians:
    """Generalised Hessians (T, d+1, d+1) = I + 2 c_pos [p active] p p' + 2 c_neg sum_active x x'.

    The candidate part is kept per target and updated by the outer products of the
    candidates whose side of the margin changed since the last iteration (few, after the
    first steps), or rebuilt from the smaller of the active and inactive sets when more
    changed. At w = 0 every candidate is active: the pool's Gram matrix, shared.
    """

    def __init__(self, neg: torch.Tensor, n_targets: int) -> None:
        self.neg32 = neg.float()
        self.gram = (self.neg32.T @ self.neg32).double()
        self.blocks = self.gram.expand(n_targets, -1, -1).clone()
        self.active = torch.ones(len(neg), n_targets, dtype=torch.bool)

    def _outer(self, mask: torch.Tensor) -> torch.Tensor:
        rows = self.neg32[mask]
        return (rows.T @ rows).double()

    def update(self, active: torch.Tensor) -> None:
        n_neg = len(self.neg32)
        for t in torch.nonzero((active != self.active).any(0)).flatten().tolist():
            now, before = active[:, t], self.active[:, t]
            gained, lost = now & ~before, before & ~now
            if int(gained.sum() + lost.sum()) < n_neg // 2:
                self.blocks[t] += self._outer(gained) - self._outer(lost)
            elif int(now.sum()) <= n_neg // 2:
                self.blocks[t] = self._outer(now)
            else:
                self.blocks[t] = self.gram - self._outer(~now)
        self.active = active

    def rebuild_exact(self, targets: torch.Tensor, active: torch.Tensor) -> None:
        """Rebuild the candidate part of ``targets`` in float64 from scratch (when float32
        rounding made a Hessian lose positive definiteness: large features, pool < dim)."""
        neg64 = self.neg32.double()
        for t in targets.tolist():
            rows = neg64[active[:, t]]
            self.blocks[t] = rows.T @ rows

    def matrices(self, pos: torch.Tensor, active_pos: torch.Tensor, c_pos: float, c_neg: float) -> torch.Tensor:
        out = self.blocks * (2 * c_neg)
        out += torch.eye(out.shape[-1], dtype=torch.float64)[None]
        out += (2 * c_pos * active_pos.double())[:, None, None] * pos[:, :, None] * pos[:, None, :]
        return out


def _exact_step(w: torch.Tensor, direction: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, s_pos: torch.Tensor,
                s_neg: torch.Tensor, c_pos: float, c_neg: float, iterations: int = 50) -> torch.Tensor:
    """Per target, a step t > 0 along ``direction`` where the objective's slope is near 0 (T,).

    phi'(t) is continuous, piecewise linear and increasing, and phi'(0) = -d'Hd < 0. From
    t = 1 (the Newton step, accepted near the optimum), safeguarded Newton steps on phi'
    within a bracket [lo, hi] (bisection when a step leaves it) run, for the targets not
    yet done, until |phi'(t)| <= 1e-3 |phi'(0)|. The Newton iteration's fixed point, the
    optimum, does not depend on this precision; only the number of iterations does.
    """
    q_pos = (pos * direction).sum(1)
    q_neg = (neg @ direction.T).float()  # (n, T); float32 is enough for a step length
    q_neg2 = q_neg.square()
    base = (1.0 + s_neg).float()  # r_i(t) = base_i + t q_i for the candidates
    wd = (w * direction).sum(1)
    dd = (direction * direction).sum(1)
    r = torch.empty_like(q_neg)
    on = torch.empty_like(q_neg)

    def slope(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        torch.addcmul(base, t.float()[None, :], q_neg, out=r).clamp_(min=0)
        torch.sign(r, out=on)  # 1 where the candidate is active, else 0
        r_pos = 1.0 - s_pos - t * q_pos
        on_pos = (r_pos > 0).double()
        first = wd + t * dd - 2 * c_pos * on_pos * r_pos * q_pos + 2 * c_neg * torch.linalg.vecdot(r, q_neg, dim=0)
        second = dd + 2 * c_pos * on_pos * q_pos**2 + 2 * c_neg * torch.linalg.vecdot(on, q_neg2, dim=0)
        return first, second.double()

    target_slope = 1e-3 * slope(torch.zeros_like(wd))[0].abs()
    t = torch.ones_like(wd)
    lo = torch.zeros_like(wd)
    hi = torch.full_like(wd, float("inf"))
    for _ in range(iterations):
        first, second = slope(t)
        done = first.abs() <= target_slope
        if bool(done.all()):
            break
        below = first < 0
        lo = torch.where(below, t, lo)
        hi = torch.where(below, hi, t)
        candidate = t - first / second
        bisect = torch.where(torch.isinf(hi), 2 * t, 0.5 * (lo + hi))
        inside = (candidate > lo) & (candidate < hi)
        t = torch.where(done, t, torch.where(inside, candidate, bisect))
    return t


def fit_reference(positive: np.ndarray, negatives: np.ndarray, C: float) -> np.ndarray:
    """scikit-learn's primal solver (the paper code's model), one target: float64 (d+1,)."""
    from sklearn.svm import LinearSVC

    x = np.vstack([positive[None, :], negatives])
    y = np.r_[1, np.zeros(len(negatives), dtype=int)]
    svm = LinearSVC(C=C, loss="squared_hinge", class_weight="balanced", dual=False, tol=1e-6, max_iter=10000)
    svm.fit(x, y)
    return np.r_[svm.coef_[0], svm.intercept_[0]].astype(np.float64)


def decision_values(weights: np.ndarray, features: np.ndarray) -> np.ndarray:
    """float64 (T, n): each target's decision value on every row of ``features`` (n, d)."""
    return weights[:, :-1] @ np.asarray(features, dtype=np.float64).T + weights[:, -1:]
