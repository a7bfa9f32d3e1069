"""The API's bounded window: uniform samples per time bucket, merged at one rate, old buckets
dropped, memory bounded, and a JSON form that round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.monitoring import window as wmod
from recommndr.monitoring.window import LiveWindow, Window
from recommndr.ranking.two_stage import TOP_FEATURE_ROWS

pytestmark = pytest.mark.unit
NAMES = ("x", "y")
T0 = 1_000_000 * wmod.BUCKET_S  # a bucket boundary


def offer(w: LiveWindow, value: float, n: int, now: float) -> None:
    for _ in range(n):
        w.record_list(np.full((3, 2), value, np.float32), np.array([value, value - 1.0], np.float32),
                      np.array([1, 2], np.uint8), now=now)  # fmt: skip


def test_rows_per_list_is_the_rankers_top_feature_rows() -> None:
    assert wmod.ROWS_PER_LIST == TOP_FEATURE_ROWS


def test_a_list_is_kept_whole() -> None:
    w = LiveWindow(NAMES)
    w.record_list(np.array([[1, 2], [3, 4]], np.float32), np.array([0.9, 0.5, 0.1], np.float32),
                  np.array([1, 3, 8], np.uint8), now=T0)  # fmt: skip
    s = w.snapshot(60, now=T0 + 1)
    assert s.lists_seen == 1 and s.scores.shape == (1, wmod.SCORES_PER_LIST)
    np.testing.assert_allclose(s.scores[0, :3], [0.9, 0.5, 0.1])
    assert np.isnan(s.scores[0, 3:]).all()
    assert s.sources[0].tolist() == [1, 3, 8] + [0] * 7
    assert s.margin[0] == pytest.approx(0.4)
    np.testing.assert_allclose(s.features[:2], [[1, 2], [3, 4]])
    assert np.isnan(s.features[2]).all()  # a list with two products: the third row is empty


def test_the_reservoir_is_bounded_and_uniform() -> None:
    w = LiveWindow(NAMES, seed=1)
    for i in range(20_000):
        w.record_list(np.zeros((1, 2), np.float32), np.array([float(i), 0.0], np.float32), np.ones(2, np.uint8),
                      now=T0 + 1)  # fmt: skip
    s = w.snapshot(wmod.BUCKET_S, now=T0 + 2)
    assert s.scores.shape[0] == wmod.LISTS_PER_BUCKET and s.lists_seen == 20_000
    assert s.scores[:, 0].mean() == pytest.approx(
        10_000, rel=0.08
    )  # uniform over 0..19,999, not the first 500


def test_buckets_merge_at_one_rate_so_a_busy_bucket_keeps_its_share() -> None:
    w = LiveWindow(NAMES, seed=2)
    offer(w, 1.0, 5000, T0 + 1)  # busy: 5,000 lists, LISTS_PER_BUCKET kept
    offer(w, 2.0, 250, T0 + wmod.BUCKET_S + 1)  # quiet: 250 lists, all kept
    s = w.snapshot(2 * wmod.BUCKET_S, now=T0 + wmod.BUCKET_S + 2)
    share = float(np.mean(s.scores[:, 0] == 2.0))
    assert share == pytest.approx(250 / 5250, abs=0.02)


def test_the_window_looks_back_only_as_far_as_asked_and_forgets_old_buckets() -> None:
    w = LiveWindow(NAMES)
    offer(w, 1.0, 3, T0 + 1)
    offer(w, 2.0, 3, T0 + 3 * wmod.BUCKET_S + 1)
    assert set(w.snapshot(wmod.BUCKET_S, now=T0 + 3 * wmod.BUCKET_S + 2).scores[:, 0].tolist()) == {2.0}
    assert set(w.snapshot(4 * wmod.BUCKET_S, now=T0 + 3 * wmod.BUCKET_S + 2).scores[:, 0].tolist()) == {
        1.0,
        2.0,
    }
    offer(w, 3.0, 1, T0 + (wmod.N_BUCKETS + 5) * wmod.BUCKET_S)
    assert len(w._buckets) <= wmod.N_BUCKETS
    later = w.snapshot(wmod.MAX_WINDOW_S, now=T0 + (wmod.N_BUCKETS + 5) * wmod.BUCKET_S + 1)
    assert set(later.scores[:, 0].tolist()) == {3.0}


def test_events_and_refusals_are_counted() -> None:
    w = LiveWindow(NAMES)
    w.record_events([(10.0, "shoes", "view"), (20.0, "books", "purchase")], now=T0)
    w.record_events([], failures=3, now=T0)
    s = w.snapshot(60, now=T0 + 1)
    assert sorted(s.price.tolist()) == [10.0, 20.0] and sorted(s.category) == ["books", "shoes"]
    assert s.failures == 3 and s.events_seen == 5


def test_memory_is_bounded_by_the_stated_capacity() -> None:
    w = LiveWindow(tuple(f"f{i}" for i in range(29)))
    for b in range(wmod.N_BUCKETS + 2):
        now = T0 + b * wmod.BUCKET_S
        offer_n = wmod.LISTS_PER_BUCKET * 2
        for _ in range(offer_n):
            w.record_list(
                np.zeros((3, 29), np.float32), np.zeros(10, np.float32), np.ones(10, np.uint8), now=now
            )
        w.record_events([(1.0, "c", "view")] * (wmod.EVENTS_PER_BUCKET * 2), now=now)
    held = sum(b.lists.rows.nbytes + b.events.rows.nbytes for b in w._buckets)
    assert held <= LiveWindow.capacity_bytes(29) < 2_000_000


def test_the_json_form_round_trips_and_refuses_garbage() -> None:
    w = LiveWindow(NAMES)
    offer(w, 1.5, 4, T0)
    w.record_events([(10.0, "shoes", "view")], failures=1, now=T0)
    s = w.snapshot(60, now=T0 + 1)
    back = Window.from_json(s.to_json())
    np.testing.assert_array_equal(back.scores, s.scores)
    np.testing.assert_array_equal(back.features, s.features)
    assert back.category == s.category and back.failures == 1 and back.events_seen == 2
    for bad in ({}, {**s.to_json(), "scores": [[1, 2, 3]]}, {**s.to_json(), "category": []}):
        with pytest.raises(ValueError, match="not a monitoring window"):
            Window.from_json(bad)


def test_labels_past_the_limit_read_as_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wmod, "MAX_LABELS", 3)
    w = LiveWindow(NAMES)
    w.record_events(
        [(1.0, "a", "view"), (1.0, "b", "view"), (1.0, "c", "view"), (1.0, "d", "purchase")], now=T0
    )
    s = w.snapshot(60, now=T0 + 1)
    assert sorted(zip(s.category, s.event_type, strict=True)) == [
        ("(other)", "(other)"), ("(other)", "view"), ("a", "view"), ("b", "view")]  # fmt: skip


def test_a_malformed_list_is_not_recorded_and_does_not_raise() -> None:
    w = LiveWindow(NAMES)
    w.record_list(np.zeros(2, np.float32), np.ones(3, np.float32), np.ones(3, np.uint8), now=T0)  # 1-D rows
    w.record_list(
        np.zeros((3, 2), np.float32), np.ones(3, np.float32), np.ones(1, np.uint8), now=T0
    )  # sources short
    assert w.snapshot(60, now=T0 + 1).lists_seen == 0


@pytest.mark.parametrize(
    "change",
    [
        {"failures": float("inf")},
        {"failures": 10, "events_seen": 1},
        {"sources": [[2**70] * 10]},
        {"sources": [[300] * 10]},
        {"scores": []},
    ],
)
def test_hostile_json_is_refused_by_name(change: dict[str, object]) -> None:
    w = LiveWindow(NAMES)
    offer(w, 1.5, 1, T0)
    with pytest.raises(ValueError, match="not a monitoring window"):
        Window.from_json({**w.snapshot(60, now=T0 + 1).to_json(), **change})
