"""Off-policy estimates of a list policy's reward (clicks per list) from impressions logged
under another, stochastic policy with known propensities.

The logging policy here is a per-slot mixture of two policies' lists: at slot ``k`` a visit is
shown policy b's ``k``-th product with probability ``share_b`` and policy a's otherwise, so the
propensity of what was shown is ``(1 - share_b) [a_k = shown] + share_b [b_k = shown]`` (1 where
both lists agree) and every product either policy would put at slot ``k`` has support there. (A
product can then appear twice in a logged list; the position-based click model treats slots
independently, so the estimates are unaffected.)

Under that click model a list's expected clicks are the sum over slots of the slot's click
probability given the product there, which makes the per-slot estimators exact in expectation:

- **IPS**: ``sum_k w_k c_k`` per visit, ``w_k = [target_k = shown_k] / propensity_k``; unbiased.
- **SNIPS**: per slot ``sum w c / sum w`` (each slot's weights average to 1), summed over slots;
  consistent, lower variance, biased by O(1/n).
- **DR** (doubly robust): a reward model's prediction for the target's product plus the IPS
  correction of its error on what was shown; unbiased whatever the reward model, lower variance
  when it is good. The reward model is a position-based model fitted on the log itself
  (``click = theta_slot x alpha_product``, alternating fits), cross-fitted on two halves of the
  visits so that no visit's correction uses a model fitted on it.

Intervals are normal (CLT over visits; SNIPS through its delta-method linearisation); their
coverage is measured against the simulator's truth by ``benchmarks/bench_abtest.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Z95 = 1.959963984540054
PRIOR_IMPRESSIONS = 20.0  # a product's click rate shrinks to the mean with this many impressions' weight
FIT_ROUNDS = 20


@dataclass(frozen=True)
class Log:
    """Logged impressions: per visit and slot the product shown (-1: none), its propensity under
    the logging policy and the reward observed (a click: 0 or 1)."""

    shown: I64
    propensity: F64
    reward: F64

    def __post_init__(self) -> None:
        if not (self.shown.shape == self.propensity.shape == self.reward.shape and self.shown.ndim == 2):
            raise ValueError("shown, propensity and reward must be (visits, slots) arrays of one shape")
        if (self.propensity <= 0).any() or (self.propensity > 1).any():
            raise ValueError("propensities must lie in (0, 1]")


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float

    def covers(self, truth: float) -> bool:
        return self.ci_low <= truth <= self.ci_high

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


def mixture(lists_a: I64, lists_b: I64, share_b: float, rng: np.random.Generator) -> tuple[I64, F64]:
    """What the per-slot mixture shows, and each shown product's propensity."""
    if not 0.0 < share_b < 1.0:
        raise ValueError("share_b must lie strictly between 0 and 1: both lists need support")
    pick_b = rng.random(lists_a.shape) < share_b
    shown = np.where(pick_b, lists_b, lists_a)
    prop = (1.0 - share_b) * (lists_a == shown) + share_b * (lists_b == shown)
    return shown, prop


def weights(log: Log, target: I64) -> F64:
    """``[target = shown] / propensity`` per visit and slot."""
    return np.asarray((log.shown == target) / log.propensity)


def _normal(x: F64) -> Estimate:
    n = x.shape[0]
    mean = float(x.mean())
    half = Z95 * float(x.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return Estimate(mean, mean - half, mean + half)


def ips(log: Log, target: I64) -> Estimate:
    return _normal((weights(log, target) * log.reward).sum(axis=1))


def snips(log: Log, target: I64) -> Estimate:
    w = weights(log, target)
    w_mean = w.mean(axis=0)
    safe = np.where(w_mean > 0, w_mean, 1.0)
    v_slot = np.where(w_mean > 0, (w * log.reward).mean(axis=0) / safe, 0.0)
    value = float(v_slot.sum())
    psi = (w * (log.reward - v_slot[None, :]) / safe[None, :]).sum(axis=1)
    n = psi.shape[0]
    half = Z95 * float(psi.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return Estimate(value, value - half, value + half)


@dataclass(frozen=True)
class PositionItemModel:
    """``P(click) = theta[slot] x alpha[product]`` (theta of the first slot 1), fitted on logged
    impressions; a product never shown gets the mean rate."""

    theta: F64
    alpha: F64
    prior: float

    @classmethod
    def fit(cls, shown: I64, reward: F64, n_items: int) -> PositionItemModel:
        slots = shown.shape[1]
        ok = shown >= 0
        item, slot, c = shown[ok], np.broadcast_to(np.arange(slots), shown.shape)[ok], reward[ok]
        theta = np.ones(slots)
        clicks_i = np.bincount(item, c, n_items)
        clicks_k = np.bincount(slot, c, slots)
        prior = float(c.mean()) if c.size else 0.0
        alpha = np.full(n_items, prior)
        for _ in range(FIT_ROUNDS):
            exposure = np.bincount(item, theta[slot], n_items)
            alpha = (clicks_i + PRIOR_IMPRESSIONS * prior) / (exposure + PRIOR_IMPRESSIONS)
            mass = np.bincount(slot, alpha[item], slots)
            theta = np.divide(clicks_k, mass, out=np.zeros(slots), where=mass > 0)
            if theta[0] > 0:
                alpha, theta = alpha * theta[0], theta / theta[0]
        return cls(theta, alpha, prior)

    def predict(self, items: I64) -> F64:
        it = np.maximum(items, 0)
        r = self.theta[None, : items.shape[1]] * self.alpha[it]
        return np.asarray(np.where(items >= 0, np.clip(r, 0.0, 1.0), 0.0))


def dr(log: Log, target: I64, n_items: int, rng: np.random.Generator, folds: int = 2) -> Estimate:
    """Doubly robust, the reward model cross-fitted over ``folds`` random parts of the visits."""
    fold = rng.integers(0, folds, log.shown.shape[0])
    on_target, on_shown = np.zeros(target.shape), np.zeros(log.shown.shape)
    for f in range(folds):
        rows = fold == f
        model = PositionItemModel.fit(log.shown[~rows], log.reward[~rows], n_items)
        on_target[rows], on_shown[rows] = model.predict(target[rows]), model.predict(log.shown[rows])
    return dr_with(log, target, on_target, on_shown)


def dr_with(log: Log, target: I64, predict_target: F64, predict_shown: F64) -> Estimate:
    """Doubly robust with a given reward model's predictions (for the target's products and
    for those shown): the estimator itself, apart from how the model is fitted."""
    w = weights(log, target)
    return _normal((predict_target + w * (log.reward - predict_shown)).sum(axis=1))
