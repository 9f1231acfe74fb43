"""Algorithm 1 state machine (DESIGN.md section 1) driven by fake oracles: no training."""

from __future__ import annotations

import json

import pytest

from databrittle.bisect import (BisectState, advance, m_to_test, run_bisection, state_from_dict,
                                state_to_dict)
from databrittle.errors import InputError


class ThresholdOracle:
    """Avg correctness 1.0 while fewer than ``true_support`` samples are removed, else 0.0."""

    def __init__(self, true_support: int) -> None:
        self.true_support = true_support
        self.calls: list[int] = []

    def __call__(self, m: int) -> float:
        self.calls.append(m)
        return 1.0 if m < self.true_support else 0.0


def _tested_ms(records):
    return [m for _, m, _ in records]


def test_support_37_exact_sequence():
    oracle = ThresholdOracle(37)
    records = run_bisection(oracle, k=128, budget=7)
    assert len(records) == 8
    assert _tested_ms(records) == [128, 64, 32, 48, 40, 36, 38, 37]
    assert oracle.calls == [128, 64, 32, 48, 40, 36, 38, 37]
    assert [s.step for s, _, _ in records] == list(range(8))
    final = records[-1][0]
    assert (final.support, final.low, final.high, final.censored, final.finished) == (37, 36, 37, False, True)
    # the state after each step, hand-computed: (L, H, support)
    assert [(s.low, s.high, s.support) for s, _, _ in records] == [
        (0, 128, 128), (0, 64, 64), (32, 64, 64), (32, 48, 48),
        (32, 40, 40), (36, 40, 40), (36, 38, 38), (36, 37, 37)]


def test_small_budget_gives_upper_bound():
    oracle = ThresholdOracle(37)
    records = run_bisection(oracle, k=128, budget=3)
    assert len(records) == 4
    assert len(oracle.calls) <= 4
    assert _tested_ms(records) == [128, 64, 32, 48]
    final = records[-1][0]
    assert final.support == 48 and final.support >= 37
    assert not final.finished  # the budget ran out before the bracket closed


def test_never_flips_is_censored_after_step_0():
    calls: list[int] = []

    def oracle(m: int) -> float:
        calls.append(m)
        return 1.0

    records = run_bisection(oracle, k=128, budget=7)
    assert calls == [128]
    assert len(records) == 8
    assert _tested_ms(records) == [128] + [None] * 7
    assert [avg for _, _, avg in records] == [1.0] + [None] * 7
    for step, (state, _, _) in enumerate(records):
        assert state.step == step
        assert state.censored and state.finished and state.support is None


def test_flips_at_one():
    oracle = ThresholdOracle(1)
    records = run_bisection(oracle, k=128, budget=7)
    assert _tested_ms(records) == [128, 64, 32, 16, 8, 4, 2, 1]
    final = records[-1][0]
    assert (final.support, final.low, final.high, final.finished) == (1, 0, 1, True)


def test_collapsed_bracket_gives_no_op_steps():
    oracle = ThresholdOracle(3)
    records = run_bisection(oracle, k=4, budget=7)
    assert _tested_ms(records) == [4, 2, 3, None, None, None, None, None]
    assert oracle.calls == [4, 2, 3]
    assert len(records) == 8
    for state, _, _ in records[2:]:
        assert (state.low, state.high, state.support, state.finished) == (2, 3, 3, True)
    assert records[-1][0].step == 7


def test_half_correct_counts_as_misclassified():
    s0 = advance(None, 8, 8, 0.5)
    assert not s0.censored and s0.support == 8
    s1 = advance(s0, 8, 4, 0.5)  # exactly 0.5: H = M
    assert (s1.low, s1.high, s1.support) == (0, 4, 4)
    s2 = advance(s1, 8, 2, 0.6)  # > 0.5: L = M
    assert (s2.low, s2.high, s2.support) == (2, 4, 4)
    assert advance(None, 8, 8, 0.6).censored


def test_m_to_test():
    assert m_to_test(None, 10) == 10
    s0 = advance(None, 10, 10, 0.0)
    assert m_to_test(s0, 10) == 5
    s1 = advance(s0, 10, 5, 1.0)
    assert m_to_test(s1, 10) == 7  # floor((5 + 10) / 2)
    assert m_to_test(advance(None, 10, 10, 1.0), 10) is None


def test_k_one_is_finished_at_step_0():
    records = run_bisection(ThresholdOracle(1), k=1, budget=2)
    assert _tested_ms(records) == [1, None, None]
    assert records[-1][0].support == 1


def test_advance_rejects_inconsistent_steps():
    s0 = advance(None, 16, 16, 0.0)
    with pytest.raises(InputError):
        advance(None, 16, 8, 0.0)  # step 0 must test M = k
    with pytest.raises(InputError):
        advance(s0, 16, 7, 0.0)  # must test floor((0 + 16) / 2) = 8
    with pytest.raises(InputError):
        advance(s0, 16, 8, None)
    with pytest.raises(InputError):
        advance(s0, 16, 8, 1.5)
    with pytest.raises(InputError):
        advance(s0, 32, 16, 0.0)  # k differs from the previous state's
    done = advance(None, 16, 16, 1.0)
    with pytest.raises(InputError):
        advance(done, 16, None, 0.0)  # a no-op step has no avg


def test_resume_matches_uninterrupted_run():
    full = run_bisection(ThresholdOracle(37), k=128, budget=7)
    state = full[3][0]
    restored = state_from_dict(json.loads(json.dumps(state_to_dict(state))))
    for s in range(4, 8):
        m = m_to_test(restored, 128)
        restored = advance(restored, 128, m, None if m is None else ThresholdOracle(37)(m))
        assert restored == full[s][0]


def test_state_dict_round_trip():
    for state in [BisectState(3, 128, 32, 48, 48, False, False),
                  BisectState(0, 128, 0, 128, None, True, True),
                  BisectState(5, 4, 2, 3, 3, False, True)]:
        d = state_to_dict(state)
        assert set(d) == {"step", "k", "L", "H", "support", "censored", "finished"}
        assert state_from_dict(json.loads(json.dumps(d))) == state
    assert state_to_dict(BisectState(3, 128, 32, 48, 48, False, False)) == {
        "step": 3, "k": 128, "L": 32, "H": 48, "support": 48, "censored": False, "finished": False}
    with_extra = dict(state_to_dict(BisectState(3, 128, 32, 48, 48, False, False)), M=40, seeds=[1, 2])
    assert state_from_dict(with_extra).support == 48


def test_state_from_dict_rejects_bad_input():
    with pytest.raises(InputError, match="missing key"):
        state_from_dict({"step": 0, "k": 4})
    with pytest.raises(InputError):  # support below H
        state_from_dict({"step": 1, "k": 8, "L": 0, "H": 4, "support": 2, "censored": False, "finished": False})
    with pytest.raises(InputError):  # finished disagrees with H - L
        state_from_dict({"step": 1, "k": 8, "L": 0, "H": 4, "support": 4, "censored": False, "finished": True})
    with pytest.raises(InputError):  # censored with a support
        state_from_dict({"step": 0, "k": 8, "L": 0, "H": 8, "support": 8, "censored": True, "finished": True})
