"""Off-policy estimators: known answers by hand, the on-policy identity, and unbiasedness over
repeated logs of a small world whose click probabilities are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommndr.evaluation import offpolicy as op

pytestmark = pytest.mark.unit


def test_hand_computed_two_visits_two_slots() -> None:
    # visit 0 was shown products 5, 6 with propensities 0.5, 1 and clicked the first;
    # visit 1 was shown 7, 6 with propensities 0.25, 1 and clicked the second.
    log = op.Log(
        shown=np.array([[5, 6], [7, 6]]),
        propensity=np.array([[0.5, 1.0], [0.25, 1.0]]),
        reward=np.array([[1.0, 0.0], [0.0, 1.0]]),
    )
    target = np.array([[5, 6], [5, 6]])
    # IPS: visit 0: 1/0.5 + 0 = 2; visit 1: 0 (7 is not the target) + 1/1 = 1 -> mean 1.5
    assert op.ips(log, target).value == pytest.approx(1.5)
    # SNIPS: slot 0: sum w c / sum w = 2 / 2 = 1; slot 1: (0 + 1) / (1 + 1) = 0.5 -> 1.5
    assert op.snips(log, target).value == pytest.approx(1.5)
    # DR with a model predicting 0.4 everywhere: visit 0: 0.4 + 2 (1 - 0.4) + 0.4 + 1 (0 - 0.4) = 1.6;
    # visit 1: 0.4 + 0 + 0.4 + 1 (1 - 0.4) = 1.4 -> 1.5
    flat = np.full((2, 2), 0.4)
    assert op.dr_with(log, target, flat, flat).value == pytest.approx(1.5)
    # a model predicting 0.4 for the target's products and 0.1 for those shown: visit 0:
    # 0.4 + 2 (1 - 0.1) + 0.4 + 1 (0 - 0.1) = 2.5; visit 1: 0.4 + 0 + 0.4 + 1 (1 - 0.1) = 1.7
    assert op.dr_with(log, target, flat, np.full((2, 2), 0.1)).value == pytest.approx(2.1)
    # a second target that matches nothing shown: IPS 0, DR the model's value alone
    other = np.array([[9, 9], [9, 9]])
    assert op.ips(log, other).value == 0.0
    assert op.dr_with(log, other, flat, flat).value == pytest.approx(0.4 + 0.4)


def test_snips_normalises_each_slot_by_its_weights() -> None:
    # three visits shown 5, 5, 7 at propensity 1/2; the target shows 5: weights 2, 2, 0
    log = op.Log(np.array([[5], [5], [7]]), np.full((3, 1), 0.5), np.array([[1.0], [0.0], [1.0]]))
    target = np.array([[5], [5], [5]])
    assert op.ips(log, target).value == pytest.approx(2 / 3)  # (2 + 0 + 0) / 3
    assert op.snips(log, target).value == pytest.approx(0.5)  # (2 + 0) / (2 + 2)


def test_logging_policy_equal_to_the_target_gives_the_on_policy_mean() -> None:
    rng = np.random.default_rng(1)
    lists = rng.integers(0, 50, (300, 10))
    shown, prop = op.mixture(lists, lists, 0.3, rng)  # both arms the same: propensity 1
    assert (shown == lists).all() and (prop == 1.0).all()
    clicks = (rng.random(lists.shape) < 0.2).astype(float)
    log = op.Log(shown, prop, clicks)
    on_policy = clicks.sum(axis=1).mean()
    assert op.ips(log, lists).value == pytest.approx(on_policy)
    assert op.snips(log, lists).value == pytest.approx(on_policy)
    assert op.dr(log, lists, 50, rng).value == pytest.approx(on_policy)


def test_uniform_mixture_ips_is_the_arm_mean_reweighted() -> None:
    # two lists with no product in common, a 50/50 per-slot mixture: every shown product of the
    # target has propensity 1/2, so IPS is twice the clicks on the target's products
    rng = np.random.default_rng(2)
    a = np.tile(np.arange(10), (400, 1))
    b = a + 10
    shown, prop = op.mixture(a, b, 0.5, rng)
    assert set(np.unique(prop)) == {0.5}
    clicks = (rng.random(a.shape) < 0.3).astype(float)
    log = op.Log(shown, prop, clicks)
    expected = 2.0 * (clicks * (shown == b)).sum(axis=1).mean()
    assert op.ips(log, b).value == pytest.approx(expected)


def _world(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lists of two policies over 30 products for 40 user types, and each type's exact click
    probability for every product at every slot (position bias x attractiveness)."""
    rng = np.random.default_rng(seed)
    attract = rng.beta(1.0, 4.0, (40, 30))
    exam = 1.0 / np.arange(1, 6)
    a = np.argsort(-attract, axis=1)[:, :5]  # the better policy
    b = np.stack([rng.permutation(30)[:5] for _ in range(40)])  # a random one
    return a, b, attract, exam


def _log(
    a: np.ndarray,
    b: np.ndarray,
    attract: np.ndarray,
    exam: np.ndarray,
    n: int,
    share: float,
    rng: np.random.Generator,
) -> tuple[op.Log, np.ndarray]:
    types = rng.integers(0, 40, n)
    shown, prop = op.mixture(a[types], b[types], share, rng)
    p = exam[None, :] * np.take_along_axis(attract[types], shown, axis=1)
    return op.Log(shown, prop, (rng.random(p.shape) < p).astype(float)), types


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), share=st.floats(0.1, 0.9))
def test_ips_and_dr_are_unbiased(seed: int, share: float) -> None:
    a, b, attract, exam = _world(seed)
    truth_b = float((exam[None, :] * np.take_along_axis(attract, b, axis=1)).sum(axis=1).mean())
    rng = np.random.default_rng(seed + 1)
    ips, drs, se = [], [], []
    for _ in range(200):
        log, types = _log(a, b, attract, exam, 200, share, rng)
        e = op.ips(log, b[types])
        ips.append(e.value)
        se.append((e.ci_high - e.ci_low) / (2 * op.Z95))
        # DR stays unbiased with a reward model that is wrong (a constant)
        wrong = np.full(log.shown.shape, 0.05)
        drs.append(op.dr_with(log, b[types], wrong, wrong).value)
    tol = 4.0 * float(np.mean(se)) / np.sqrt(200)  # 4 standard errors of the mean of 200 estimates
    assert abs(np.mean(ips) - truth_b) < tol
    assert abs(np.mean(drs) - truth_b) < tol


def test_intervals_cover_the_truth_about_95_percent() -> None:
    a, b, attract, exam = _world(3)
    truth = float((exam[None, :] * np.take_along_axis(attract, b, axis=1)).sum(axis=1).mean())
    rng = np.random.default_rng(4)
    cover = {"ips": 0, "snips": 0, "dr": 0}
    runs = 300
    for _ in range(runs):
        log, types = _log(a, b, attract, exam, 2000, 0.3, rng)
        cover["ips"] += op.ips(log, b[types]).covers(truth)
        cover["snips"] += op.snips(log, b[types]).covers(truth)
        cover["dr"] += op.dr(log, b[types], 30, rng).covers(truth)
    for name, c in cover.items():
        assert 0.91 <= c / runs <= 0.99, (name, c / runs)


def test_the_position_item_model_recovers_a_position_based_world() -> None:
    rng = np.random.default_rng(5)
    alpha = rng.uniform(0.05, 0.6, 20)
    theta = 1.0 / np.arange(1, 5)
    shown = rng.integers(0, 20, (40_000, 4))
    clicks = (rng.random(shown.shape) < theta[None, :] * alpha[shown]).astype(float)
    m = op.PositionItemModel.fit(shown, clicks, 20)
    assert np.allclose(m.theta, theta, atol=0.03)
    assert np.allclose(m.alpha, alpha, atol=0.03)


def test_bad_logs_and_shares_are_refused() -> None:
    with pytest.raises(ValueError, match="propensities"):
        op.Log(np.zeros((2, 2), np.int64), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="one shape"):
        op.Log(np.zeros((2, 2), np.int64), np.ones((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="share_b"):
        op.mixture(np.zeros((2, 2), np.int64), np.ones((2, 2), np.int64), 1.0, np.random.default_rng(0))
