"""The drift check: silent on windows like the reference, flagging each planted shift by its
kind, with thresholds from the calibration (known answers on seeded synthetic windows)."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.monitoring import drift
from recommndr.monitoring.reference import OTHER, Reference, reference_from
from recommndr.monitoring.window import Window

pytestmark = pytest.mark.unit
NAMES = ("a", "b", "c")
CATS = np.array(["shoes", "books", "food", "toys"], object)
TYPES = np.array(["view", "add_to_cart", "purchase"], object)


def window(rng: np.random.Generator, lists: int = 600, events: int = 4000, *, shift_b: float = 0.0,
           price: float = 1.0, scores: str = "ranker", margin: float = 1.0, failures: int = 0,
           cat_p: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)) -> Window:  # fmt: skip
    f = rng.normal(size=(lists * 3, len(NAMES))).astype(np.float32)
    f[:, 1] += shift_b
    base = rng.normal(2.0, 0.5, size=(lists, 1))
    if scores == "ranker":  # sorted scores with a typical top-1 margin
        s = np.sort(base - rng.exponential(0.3, size=(lists, 10)).cumsum(axis=1), axis=1)[:, ::-1]
        s[:, 0] = s[:, 1] + rng.exponential(0.4 * margin, lists)
    else:  # a broken ranker: uniform noise
        s = np.sort(rng.random((lists, 10)), axis=1)[:, ::-1]
    s = s.astype(np.float32)
    return Window(NAMES, f, s, (s[:, 0] - s[:, 1]).astype(np.float32), rng.integers(1, 8, (lists, 10)).astype(np.uint8),
                  rng.lognormal(3.0, 0.8, events) * price, CATS[rng.choice(4, events, p=cat_p)].tolist(),
                  TYPES[rng.choice(3, events, p=(0.8, 0.15, 0.05))].tolist(), failures, events + failures, lists)  # fmt: skip


@pytest.fixture(scope="module")
def ref() -> Reference:
    rng = np.random.default_rng(0)
    r = reference_from(window(rng, 3000, 20000), seed=0)
    return drift.calibrate(r, [window(rng) for _ in range(200)])


def test_the_reference_holds_bins_samples_and_calibrated_thresholds(ref: Reference) -> None:
    assert set(ref.numeric) == {"a", "b", "c", "price", "score", "margin"}
    assert set(ref.categorical) == {"category", "event_type", "source"}
    assert ref.categorical["category"].categories[-1] == OTHER
    assert ref.numeric["price"].sample.shape[0] == 5000 and np.all(np.diff(ref.numeric["price"].sample) >= 0)
    assert set(ref.thresholds) == set(ref.numeric) | set(ref.categorical)
    assert all(t > 0 for t in ref.thresholds.values())
    assert ref.calibration["windows"] == 200


def test_windows_like_the_reference_raise_no_alarm(ref: Reference) -> None:
    rng = np.random.default_rng(1)
    flagged = [drift.check(ref, window(rng))["drift"] for _ in range(100)]
    assert sum(flagged) <= 2  # calibrated for 0.5 % on such windows


def test_a_shifted_feature_is_flagged_alone(ref: Reference) -> None:
    r = drift.check(ref, window(np.random.default_rng(2), shift_b=0.3))
    assert r["drift"] and r["kinds"] == {
        "feature": True,
        "score": False,
        "confidence": False,
        "validation": False,
    }
    assert [n for n, f in r["features"].items() if f["drift"]] == ["b"]
    assert (
        r["features"]["b"]["p_adjusted"] < 0.01
        and r["features"]["b"]["psi"] >= r["features"]["b"]["threshold"]
    )
    assert r["features"]["b"]["wasserstein"] == pytest.approx(0.3, abs=0.08)


def test_price_up_ten_percent_and_a_doubled_category_are_flagged(ref: Reference) -> None:
    r = drift.check(ref, window(np.random.default_rng(3), events=10_000, price=1.1))
    assert r["features"]["price"]["drift"] and not r["features"]["category"]["drift"]
    r = drift.check(ref, window(np.random.default_rng(4), events=10_000, cat_p=(0.3, 0.3, 0.2, 0.2)))
    assert r["features"]["category"]["drift"] and not r["features"]["price"]["drift"]
    assert r["features"]["category"]["js"] > 0


def test_random_scores_are_score_drift_and_a_smaller_margin_a_confidence_drop(ref: Reference) -> None:
    r = drift.check(ref, window(np.random.default_rng(5), scores="random"))
    assert r["kinds"]["score"] and r["kinds"]["confidence"]
    r = drift.check(ref, window(np.random.default_rng(6), margin=0.4))
    assert r["kinds"]["confidence"] and r["confidence"]["drop"] > 0.3
    r = drift.check(ref, window(np.random.default_rng(7), margin=2.5))  # more confident: not an alarm
    assert not r["kinds"]["confidence"] and r["confidence"]["drop"] == 0.0


def test_a_validation_failure_spike_is_flagged_and_a_trickle_is_not(ref: Reference) -> None:
    assert drift.check(ref, window(np.random.default_rng(8), failures=200))["kinds"]["validation"]
    r = drift.check(ref, window(np.random.default_rng(9), failures=4))
    assert not r["kinds"]["validation"] and r["validation_failure_rate"] == pytest.approx(4 / 4004)


def test_one_refused_event_on_an_idle_instance_is_not_a_spike(ref: Reference) -> None:
    r = drift.check(ref, window(np.random.default_rng(14), lists=0, events=1, failures=1))
    assert not r["kinds"]["validation"] and r["validation"]["p_value"] is None


def test_a_window_too_small_to_test_is_reported_untested(ref: Reference) -> None:
    r = drift.check(ref, window(np.random.default_rng(10), lists=20, events=50, shift_b=2.0))
    assert not r["drift"]
    assert r["features"]["b"]["psi"] is None and r["features"]["b"]["n"] == 60


def test_thresholds_grow_for_small_windows_and_never_shrink(ref: Reference) -> None:
    n_cal = ref.calibrated_n["price"]
    assert drift.threshold(ref, "price", n_cal) == pytest.approx(ref.thresholds["price"])
    assert drift.threshold(ref, "price", n_cal // 4) > 2 * ref.thresholds["price"]
    assert drift.threshold(ref, "price", n_cal * 10) == pytest.approx(ref.thresholds["price"])


def test_an_unseen_category_counts_as_other(ref: Reference) -> None:
    rng = np.random.default_rng(11)
    w = window(rng, events=5000)
    w.category = ["garden"] * len(w.category)
    r = drift.check(ref, w)
    assert r["features"]["category"]["drift"]


def test_the_reference_survives_a_save(ref: Reference, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ref.save(tmp_path / "monitoring.npz")
    back = Reference.load(tmp_path / "monitoring.npz")
    w = window(np.random.default_rng(12), shift_b=0.3)
    a, b = drift.check(ref, w), drift.check(back, w)
    assert a["features"]["b"]["psi"] == pytest.approx(b["features"]["b"]["psi"], rel=1e-6)
    assert back.thresholds == ref.thresholds and back.calibrated_n == ref.calibrated_n


def wobbly(rng: np.random.Generator) -> Window:
    """A window of a shop whose traffic moves with the hour: each window's category mix and
    one feature's level wobble a little — no drift, but a large window's tests notice."""
    p = rng.dirichlet(np.array([0.4, 0.3, 0.2, 0.1]) * 300)
    return window(rng, events=20_000, shift_b=float(rng.normal(0, 0.04)), cat_p=tuple(p))


def test_calibration_on_a_moving_shop_keeps_its_false_alarms_low(ref: Reference) -> None:
    rng = np.random.default_rng(13)
    moving = drift.calibrate(
        reference_from(window(rng, 3000, 40_000), seed=1), [wobbly(rng) for _ in range(200)]
    )
    tests = [wobbly(rng) for _ in range(60)]
    assert sum(drift.check(moving, w)["drift"] for w in tests) <= 2
    # the significance tests alone (no effect-size threshold) would alarm on most of them
    moving.thresholds = dict.fromkeys(moving.thresholds, 0.0)
    assert sum(drift.check(moving, w)["drift"] for w in tests) >= 30
    # and the calibrated check still sees a real shift in such a shop
    moving = drift.calibrate(moving, [wobbly(rng) for _ in range(200)])
    assert drift.check(moving, window(rng, events=20_000, cat_p=(0.2, 0.3, 0.2, 0.3)))["features"][
        "category"
    ]["drift"]


def test_calibration_needs_windows(ref: Reference) -> None:
    with pytest.raises(ValueError, match="at least one window"):
        drift.calibrate(ref, [])
