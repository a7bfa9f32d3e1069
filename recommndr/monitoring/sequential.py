"""Anytime-valid comparison of a challenger's rate with the champion's (the canary's statistics).

A canary looks at its figures at every step; a fixed-horizon test repeated at each look raises
false alarms far above its level (a z-test on CTR at 300 looks with no real difference flagged
42 % of runs, FACTS.md). The mixture sequential probability ratio test (mSPRT, Johari et al.,
"Always valid inference", 2017) stays valid however often it is looked at: for the difference
theta = p_challenger - p_champion, with the normal approximation of its estimate
(variance V = p1(1-p1)/n1 + p0(1-p0)/n0) and a normal mixing distribution N(0, tau^2) on theta,

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 theta_hat^2 / (2 V (V + tau^2)))

is a martingale under theta = 0, so P(Lambda ever >= 1/alpha) <= alpha; the always-valid p-value is
the running minimum of 1/Lambda, and the confidence sequence

    theta_hat +- sqrt(V (V + tau^2) / tau^2 * (2 ln(1/alpha) + ln((V + tau^2) / V)))

covers theta at every look simultaneously with probability >= 1 - alpha (its running intersection
is kept). ``tau`` is set near the smallest difference that matters. :class:`SequentialTest` keeps
those running values; :func:`decide` turns them into continue / roll back / promote with a
non-inferiority margin and a minimum sample per arm. :func:`z_rule` is the seed's "below the
baseline - 2 sigma" rule, kept as a reported figure beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Decision = Literal["continue", "rollback", "promote"]


@dataclass(frozen=True)
class Look:
    """One look at the two arms: the estimate of theta, its confidence sequence so far (the
    running intersection), the always-valid p-value so far and this look's Lambda."""

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    likelihood_ratio: float
    n_champion: int
    n_challenger: int


def binomial_variance(s0: int, n0: int, s1: int, n1: int) -> float:
    """The variance of the difference of two arms' success rates (challenger ``s1/n1`` minus
    champion ``s0/n0``) under independent Bernoulli trials."""
    p0, p1 = s0 / n0, s1 / n1
    # a floor keeps the first looks (zero successes) from dividing by zero; 0.25/n is the
    # largest a Bernoulli variance can be, so the floor never makes the test bolder
    v = p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0
    return max(v, 0.25 / n1 / n0)


def msprt(s0: int, n0: int, s1: int, n1: int, tau: float, alpha: float) -> tuple[float, float, float, float]:
    """(theta_hat, Lambda, ci_low, ci_high) at one look: champion ``s0`` successes of ``n0``,
    challenger ``s1`` of ``n1``."""
    if min(n0, n1) <= 0 or not 0 <= s0 <= n0 or not 0 <= s1 <= n1:
        raise ValueError("each arm needs 0 <= successes <= trials and at least one trial")
    if tau <= 0 or not 0 < alpha < 1:
        raise ValueError("tau > 0 and 0 < alpha < 1 are required")
    return msprt_with_variance(s1 / n1 - s0 / n0, binomial_variance(s0, n0, s1, n1), tau, alpha)


def msprt_with_variance(
    theta: float, v: float, tau: float, alpha: float
) -> tuple[float, float, float, float]:
    """The same look for an estimate ``theta`` whose variance ``v`` was estimated otherwise (the
    canary's: between buckets of shoppers, who, not products, are the units assigned)."""
    if v <= 0 or not math.isfinite(v):
        raise ValueError("the variance must be positive and finite")
    t2 = tau * tau
    log_lr = 0.5 * math.log(v / (v + t2)) + t2 * theta * theta / (2 * v * (v + t2))
    lr = math.exp(min(log_lr, 700.0))
    half = math.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + math.log((v + t2) / v)))
    return theta, lr, theta - half, theta + half


@dataclass
class SequentialTest:
    """The mSPRT over successive looks (cumulative counts at each)."""

    tau: float
    alpha: float = 0.05
    looks: list[Look] = field(default_factory=list)

    def update(self, s0: int, n0: int, s1: int, n1: int) -> Look:
        theta, lr, lo, hi = msprt(s0, n0, s1, n1, self.tau, self.alpha)
        if self.looks:
            prev = self.looks[-1]
            lo, hi = max(lo, prev.ci_low), min(hi, prev.ci_high)
            p = min(prev.p_value, 1.0 / lr)
        else:
            p = min(1.0, 1.0 / lr)
        look = Look(theta, lo, hi, p, lr, n0, n1)
        self.looks.append(look)
        return look


def decide(look: Look, min_per_arm: int, margin: float = 0.0, last_step: bool = False) -> Decision:
    """Roll back when the confidence sequence lies below ``-margin`` (the challenger is worse by
    more than the non-inferiority margin); at the last step promote when it lies above
    ``-margin``, else roll back (not shown to be no worse); otherwise continue. Nothing is
    decided before each arm has ``min_per_arm`` trials."""
    if min(look.n_champion, look.n_challenger) < min_per_arm:
        return "rollback" if last_step else "continue"
    if look.ci_high < -margin:
        return "rollback"
    if last_step:
        return "promote" if look.ci_low > -margin else "rollback"
    return "continue"


def z_rule(s0: int, n0: int, s1: int, n1: int, sigmas: float = 2.0) -> bool:
    """The seed's rule: the challenger's rate below the champion's minus ``sigmas`` standard
    errors of the difference (True: it fires)."""
    v = binomial_variance(s0, n0, s1, n1)
    return s1 / n1 - s0 / n0 < -sigmas * math.sqrt(v)


def spent_alpha(alpha: float, look: int) -> float:
    """The level of the ``look``-th (1, 2, …) of a series of tests whose false alarms, over all
    their looks together, stay at most ``alpha``: ``alpha * 6 / (pi^2 look^2)`` (these levels sum
    to ``alpha``, so by the union bound a series of any length flags a null at most that often, the
    looks' windows overlapping or not). For the canary's drift check, whose KS and PSI tests are
    not sequential: repeated at each look at a fixed level they would flag a healthy challenger
    at one look or another far more often than that level."""
    if look < 1:
        raise ValueError(f"looks are numbered from 1, not {look}")
    return alpha * 6.0 / (math.pi**2 * look * look)
