"""Algorithm 1 (paper.md appendix A.6) as a pure, resumable state machine.

DESIGN.md section 1, "Bisection": step 0 tests M = k. If the average correctness over the
n_test retrained models is > 0.5 the support is *censored* (reported as ``> k``) and the
search stops. Otherwise L = 0, H = k, support = k, and each step s = 1..budget tests
M = floor((L + H) / 2): average correctness > 0.5 sets L = M, else H = M and
support = min(support, M). Once H - L <= 1 the remaining steps are no-ops (no training) that
carry the state forward, so a target always has ``budget + 1`` step records. The result is an
upper bound on the true support.

Nothing here trains a model: the caller asks :func:`m_to_test` which M step s needs (``None``
means "no training"), runs the counterfactual test itself, and passes the average correctness
to :func:`advance`. Because each state depends only on the previous state, a killed run resumes
from the last step file (:func:`state_from_dict`). :func:`run_bisection` drives the machine
with an injected oracle, for tests and for in-process use.

An average correctness of exactly 0.5 counts as misclassified (the test is ``> 0.5``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from databrittle.errors import InputError

#: One record of :func:`run_bisection`: (state after the step, M tested or None, avg or None).
StepRecord = tuple["BisectState", "int | None", "float | None"]


@dataclass(frozen=True)
class BisectState:
    """The bisection state after one step of Algorithm 1 (DESIGN.md section 1).

    Attributes:
        step: the step just completed, 0..budget.
        k: length of the ranking (the M tested at step 0).
        low: L, the largest M known to leave the target correctly classified (0 at first).
        high: H, the smallest M known to misclassify the target.
        support: current upper bound on the support (min over misclassifying M); ``None``
            when censored.
        censored: step 0 (M = k) left the target correctly classified: support > k. In a
            censored state ``low = 0`` and ``high = k`` (the bracket of lines 1-2 of
            Algorithm 1, never narrowed).
        finished: no later step trains a model (censored, or H - L <= 1).
    """

    step: int
    k: int
    low: int
    high: int
    support: int | None
    censored: bool
    finished: bool

    def __post_init__(self) -> None:
        for name in ("step", "k", "low", "high"):
            value = getattr(self, name)
            if not _is_int(value):
                raise InputError(f"bisection state: {name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy integers -> int (JSON-safe)
        if _is_int(self.support):
            object.__setattr__(self, "support", int(self.support))
        if self.step < 0:
            raise InputError(f"bisection state: step must be >= 0, got {self.step}")
        if self.k < 1:
            raise InputError(f"bisection state: k must be >= 1, got {self.k}")
        if not 0 <= self.low < self.high <= self.k:
            raise InputError(f"bisection state: need 0 <= L < H <= k, got L={self.low}, H={self.high}, k={self.k}")
        for name in ("censored", "finished"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise InputError(f"bisection state: {name} must be a boolean, got {value!r}")
            object.__setattr__(self, name, bool(value))
        if self.censored:
            if self.support is not None or not self.finished:
                raise InputError("bisection state: a censored state has support None and is finished")
        else:
            if not _is_int(self.support) or not self.high <= self.support <= self.k:
                raise InputError(f"bisection state: support must be an integer in [H, k], got {self.support!r}")
            if self.finished != (self.high - self.low <= 1):
                raise InputError(f"bisection state: finished={self.finished} but H - L = {self.high - self.low}")


def m_to_test(previous: BisectState | None, k: int) -> int | None:
    """The number M of top-ranked samples the next step removes/relabels, or None.

    Args:
        previous: the state after the previous step; ``None`` before step 0.
        k: length of the ranking.

    Returns:
        ``k`` for step 0; ``floor((L + H) / 2)`` for a later step; ``None`` when the step is a
        no-op (the search is finished: censored, or H - L <= 1) and trains nothing.
    """
    _check_k(k)
    if previous is None:
        return k
    _check_same_k(previous, k)
    if previous.finished:
        return None
    return (previous.low + previous.high) // 2


def advance(previous: BisectState | None, k: int, m: int | None, avg_correct: float | None) -> BisectState:
    """Apply one step of Algorithm 1 (DESIGN.md section 1) and return the new state.

    Args:
        previous: the state after the previous step; ``None`` for step 0.
        k: length of the ranking.
        m: the M tested at this step; must equal :func:`m_to_test` ``(previous, k)``
            (``None`` for a no-op step).
        avg_correct: average correctness of the n_test retrained models, in [0, 1];
            ``None`` for a no-op step. ``> 0.5`` means "still correctly classified".

    Raises:
        InputError: when ``m`` is not the M this step must test, or ``avg_correct`` is
            missing, given for a no-op step, or outside [0, 1].
    """
    expected = m_to_test(previous, k)
    if m != expected:
        raise InputError(f"bisection step: tested M={m!r}, expected M={expected!r}")
    if m is None:
        if avg_correct is not None:
            raise InputError("bisection step: a no-op step (M None) has no avg_correct")
        assert previous is not None  # m_to_test returns k, never None, for step 0
        return dataclasses.replace(previous, step=previous.step + 1)
    correct = _check_avg(avg_correct)
    if previous is None:
        if correct:
            return BisectState(step=0, k=k, low=0, high=k, support=None, censored=True, finished=True)
        return BisectState(step=0, k=k, low=0, high=k, support=k, censored=False, finished=k <= 1)
    low, high, support = previous.low, previous.high, previous.support
    assert support is not None  # a censored state is finished, so m would be None
    if correct:
        low = m
    else:
        high = m
        support = min(support, m)
    return BisectState(step=previous.step + 1, k=k, low=low, high=high, support=support,
                       censored=False, finished=high - low <= 1)


def run_bisection(oracle: Callable[[int], float], k: int, budget: int) -> list[StepRecord]:
    """Run steps 0..budget, calling ``oracle(M)`` only for steps that train.

    Args:
        oracle: maps M to the average correctness of models trained without (or with
            relabelled) the top-M samples.
        k: length of the ranking.
        budget: N_budget of Algorithm 1 (steps after step 0).

    Returns:
        ``budget + 1`` records ``(state after step s, M tested or None, avg_correct or None)``
        for s = 0..budget.
    """
    if not _is_int(budget) or budget < 0:
        raise InputError(f"bisection: budget must be an integer >= 0, got {budget!r}")
    records: list[StepRecord] = []
    state: BisectState | None = None
    for _ in range(budget + 1):
        m = m_to_test(state, k)
        avg = None if m is None else float(oracle(m))
        state = advance(state, k, m, avg)
        records.append((state, m, avg))
    return records


def state_to_dict(state: BisectState) -> dict[str, Any]:
    """The JSON form of ``state``: keys step, k, L, H, support, censored, finished."""
    return {"step": state.step, "k": state.k, "L": state.low, "H": state.high,
            "support": state.support, "censored": state.censored, "finished": state.finished}


def state_from_dict(d: Mapping[str, Any]) -> BisectState:
    """Rebuild a :class:`BisectState` from :func:`state_to_dict`'s form (extra keys ignored).

    Raises:
        InputError: naming the missing key or the inconsistent value.
    """
    keys = ("step", "k", "L", "H", "support", "censored", "finished")
    missing = [key for key in keys if key not in d]
    if missing:
        raise InputError(f"bisection state: missing key(s) {', '.join(missing)}")
    return BisectState(step=d["step"], k=d["k"], low=d["L"], high=d["H"], support=d["support"],
                       censored=d["censored"], finished=d["finished"])


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _check_k(k: int) -> None:
    if not _is_int(k) or k < 1:
        raise InputError(f"bisection: k must be an integer >= 1, got {k!r}")


def _check_same_k(state: BisectState, k: int) -> None:
    if state.k != k:
        raise InputError(f"bisection: previous state has k={state.k}, this step k={k}")


def _check_avg(avg_correct: float | None) -> bool:
    """True when the target is still correctly classified on average (avg > 0.5)."""
    if avg_correct is None:
        raise InputError("bisection step: avg_correct is required when a model is trained")
    value = float(avg_correct)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InputError(f"bisection step: avg_correct must be in [0, 1], got {avg_correct!r}")
    return value > 0.5
