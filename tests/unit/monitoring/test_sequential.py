"""The canary's sequential test: the mSPRT's formulas by hand, its false alarms under peeking
against the seed's 2-sigma rule, its power, and the decisions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from recommndr.monitoring.sequential import Look, SequentialTest, decide, msprt, spent_alpha, z_rule

pytestmark = pytest.mark.unit


def test_msprt_by_hand() -> None:
    s0, n0, s1, n1, tau, alpha = 500, 10_000, 430, 10_000, 0.0075, 0.05
    theta = 0.043 - 0.05
    v = 0.05 * 0.95 / n0 + 0.043 * 0.957 / n1
    lr = math.sqrt(v / (v + tau**2)) * math.exp(tau**2 * theta**2 / (2 * v * (v + tau**2)))
    half = math.sqrt(v * (v + tau**2) / tau**2 * (2 * math.log(20) + math.log((v + tau**2) / v)))
    got = msprt(s0, n0, s1, n1, tau, alpha)
    assert got == pytest.approx((theta, lr, theta - half, theta + half))


def test_bad_counts_are_refused() -> None:
    for args in ((5, 0, 1, 10), (11, 10, 1, 10), (1, 10, -1, 10)):
        with pytest.raises(ValueError, match="successes"):
            msprt(*args, tau=0.01, alpha=0.05)
    with pytest.raises(ValueError, match="tau"):
        msprt(1, 10, 1, 10, tau=0.0, alpha=0.05)


def _runs(
    rng: np.random.Generator, p0: float, p1: float, runs: int, looks: int, per_look: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative successes of each arm at each look (runs x looks)."""
    s0 = rng.binomial(per_look, p0, (runs, looks)).cumsum(axis=1)
    s1 = rng.binomial(per_look, p1, (runs, looks)).cumsum(axis=1)
    return s0, s1


def test_peeking_keeps_the_msprt_at_its_level_and_not_the_two_sigma_rule() -> None:
    rng = np.random.default_rng(0)
    runs, looks, per = 300, 100, 200
    s0, s1 = _runs(rng, 0.05, 0.05, runs, looks, per)
    msprt_alarms = z_alarms = 0
    for r in range(runs):
        test = SequentialTest(tau=0.0075, alpha=0.05)
        fired_m = fired_z = False
        for k in range(looks):
            n = per * (k + 1)
            look = test.update(int(s0[r, k]), n, int(s1[r, k]), n)
            fired_m |= look.ci_high < 0 or look.ci_low > 0
            fired_z |= z_rule(int(s0[r, k]), n, int(s1[r, k]), n)
        msprt_alarms += fired_m
        z_alarms += fired_z
    assert msprt_alarms / runs <= 0.06  # anytime-valid at 5 %
    assert z_alarms / runs >= 0.15  # one-sided 2 sigma at 100 looks: far above its 2.3 %


def test_a_worse_challenger_is_rolled_back_and_an_equal_one_promoted() -> None:
    rng = np.random.default_rng(1)
    s0, s1 = _runs(rng, 0.05, 0.035, 1, 50, 1000)  # challenger CTR 30 % lower
    test = SequentialTest(tau=0.0075, alpha=0.05)
    decisions = [decide(test.update(int(s0[0, k]), 1000 * (k + 1), int(s1[0, k]), 1000 * (k + 1)), 2000)
                 for k in range(50)]  # fmt: skip
    assert "rollback" in decisions and decisions.index("rollback") < 20
    s0, s1 = _runs(rng, 0.05, 0.05, 1, 50, 2000)
    test = SequentialTest(tau=0.0075, alpha=0.05)
    for k in range(50):
        n = 2000 * (k + 1)
        look = test.update(int(s0[0, k]), n, int(s1[0, k]), n)
        assert decide(look, 2000, margin=0.005) == "continue"
    assert decide(look, 2000, margin=0.005, last_step=True) == "promote"


def test_the_running_values_only_tighten() -> None:
    test = SequentialTest(tau=0.01)
    a = test.update(50, 1000, 40, 1000)
    b = test.update(50, 2000, 120, 2000)  # a look that alone would move the interval up
    assert b.ci_low >= a.ci_low and b.ci_high <= a.ci_high and b.p_value <= a.p_value


def test_no_decision_before_the_minimum_sample() -> None:
    look = Look(-0.5, -0.9, -0.1, 1e-9, 1e9, 100, 100)
    assert decide(look, min_per_arm=1000) == "continue"
    assert decide(look, min_per_arm=1000, last_step=True) == "rollback"  # never promoted unseen
    assert decide(look, min_per_arm=50) == "rollback"


def test_spent_levels_sum_to_at_most_the_level_and_shrink() -> None:
    levels = [spent_alpha(0.01, k) for k in range(1, 100_001)]
    assert sum(levels) < 0.01 and sum(levels) > 0.01 * 0.9999
    assert levels[0] == pytest.approx(0.01 * 6 / math.pi**2) and all(
        a > b for a, b in itertools.pairwise(levels)
    )
    with pytest.raises(ValueError, match="from 1"):
        spent_alpha(0.01, 0)
