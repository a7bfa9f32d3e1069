"""What every shopper-session store must do (``recommndr.streaming.sessions``): the SQLite store's
unit tests and the Redis store's integration tests run the same checks."""

from __future__ import annotations

import random
import time

from recommndr.streaming.sessions import (
    SESSION_GAP_S,
    SESSION_MAX_S,
    SessionStore,
    UserTile,
    marks_of,
    sessions_of,
    user_tiles_of,
)
from recommndr.streaming.windows import TILE_US

T0 = 1_699_999_980_000_000  # a whole minute, in the past
MIN_US = 60 * 1_000_000
Event = tuple[str, int, int, str, int]  # event_id, user_id, item_id, event_type, ts_us


def random_events(n: int = 3000, users: int = 12, seed: int = 2) -> list[Event]:
    """Shoppers with bursts of activity separated by pauses, some shorter and some longer than the
    session gap, over about five hours (longer than a session may be)."""
    rng = random.Random(seed)
    kinds = ["view", "view", "view", "add_to_cart", "purchase"]
    out: list[Event] = []
    for u in range(users):
        ts = T0 + rng.randrange(20 * MIN_US)
        for k in range(n // users):
            pause = rng.choice(
                [rng.randrange(90_000_000), rng.randrange(90_000_000), rng.randrange(45 * MIN_US)]
            )
            ts += pause
            out.append((f"u{u}-{k}", u, rng.randrange(40), rng.choice(kinds), ts))
    rng.shuffle(out)
    return out


def _by_user(tiles: list[UserTile]) -> dict[int, dict[int, tuple[int, tuple]]]:
    out: dict[int, dict[int, tuple[int, tuple]]] = {}
    for t in tiles:
        out.setdefault(t.user_id, {})[t.end_us] = (t.events, t.marks)
    return out


def _kept(tiles: dict[int, tuple[int, tuple]]) -> dict[int, tuple[int, tuple]]:
    """The tiles a store keeps of a shopper: those within SESSION_MAX_S of the newest."""
    newest = max(tiles)
    return {e: v for e, v in tiles.items() if e > newest - SESSION_MAX_S * 1_000_000}


def check_firings_and_replays_leave_exact_sessions(store: SessionStore) -> None:
    """Tiles fired early (partial), then whole, in batches, then some fired again (a replay): the
    stored tiles and sessions are exactly those of the events; duplicates count once."""
    events = random_events()
    events += events[:150]  # delivered twice
    category = {i: f"cat{i % 7}" for i in range(40)}
    partial = user_tiles_of(events[: len(events) // 2])
    whole = user_tiles_of(events)
    order = sorted(whole, key=lambda t: t.end_us)
    store.write_user_tiles(partial[:300], category)
    for k in range(0, len(order), 40):
        store.write_user_tiles(order[k : k + 40], category)
    store.write_user_tiles(order[-100:], category)  # a replay after a restore: the same values again
    want = _by_user(whole)
    for user, tiles in want.items():
        assert store.user_tiles(user) == _kept(tiles), user
    got = store.read_sessions(sorted(want))
    ref = sessions_of(events, category)
    assert got == ref
    assert any(s.session_events < sum(1 for e in set(events) if e[1] == u) for u, s in ref.items())
    assert all(s.session_categories and len(s.session_items) <= 20 for s in got.values())
    assert store.read_sessions([10_000]) == {}


def check_marks_in_any_batches_and_replays_leave_exact_sessions(store: SessionStore) -> None:
    """The job's way: each event's mark added in batches of any size, in arrival order, then a
    stretch of them again (a replay after a restore): the tiles and sessions are the events'."""
    events = random_events(seed=5)
    rng = random.Random(5)
    k = 0
    while k < len(events):
        step = rng.choice([1, 7, 60, 400])
        store.add_marks(marks_of(user_tiles_of(events[k : k + step])))
        k += step
    assert store.add_marks(marks_of(user_tiles_of(events[-700:]))) == 0  # a replay changes nothing
    want = _by_user(user_tiles_of(events))
    for user, tiles in want.items():
        assert store.user_tiles(user) == _kept(tiles), user
    assert store.read_sessions(sorted(want)) == sessions_of(events)


def check_a_pause_ends_a_session_and_a_late_event_can_join_two(store: SessionStore) -> None:
    gap = SESSION_GAP_S * 1_000_000
    evs: list[Event] = [
        ("a", 7, 1, "view", T0),
        ("b", 7, 2, "add_to_cart", T0 + 10 * MIN_US),
        ("c", 7, 3, "view", T0 + 10 * MIN_US + gap + MIN_US),  # a pause of 31 min: a new session
        ("d", 7, 3, "purchase", T0 + 12 * MIN_US + gap),
    ]
    store.write_user_tiles(user_tiles_of(evs))
    s = store.read_sessions([7])[7]
    assert (s.session_items, s.session_events) == ([3], 2)
    assert (s.session_start_us, s.session_last_us) == (
        (T0 + 10 * MIN_US + gap + MIN_US),
        T0 + 12 * MIN_US + gap,
    )
    late = ("e", 7, 4, "view", T0 + 25 * MIN_US)  # arrives late, in the pause: 15 + 16 min, one session
    store.write_user_tiles(user_tiles_of([*evs, late]))
    s = store.read_sessions([7])[7]
    assert (s.session_items, s.session_events, s.session_start_us) == ([3, 4, 2, 1], 5, T0)
    assert s == sessions_of([*evs, late])[7]


def check_a_long_session_is_cut_and_old_tiles_go(store: SessionStore) -> None:
    """A shopper active every 10 minutes for six hours: the session holds the last four hours'
    tiles only, and the older tiles are deleted from the store."""
    evs: list[Event] = [(f"x{k}", 3, k % 25, "view", T0 + k * 10 * MIN_US) for k in range(37)]
    store.write_user_tiles(user_tiles_of(evs))
    tiles = store.user_tiles(3)
    newest = T0 + 36 * 10 * MIN_US
    assert min(tiles) > newest - SESSION_MAX_S * 1_000_000 and len(tiles) == SESSION_MAX_S // 600
    s = store.read_sessions([3])[3]
    assert s.session_events == 24 and s.session_last_us == newest
    assert s.session_items[:3] == [36 % 25, 35 % 25, 34 % 25] and len(s.session_items) == 20


def check_a_tile_off_the_minute_is_refused(store: SessionStore) -> None:
    import pytest

    with pytest.raises(ValueError, match="not a tile"):
        store.write_user_tiles([UserTile(1, T0 + 5, 1, ((T0 // 1000, 1, "v"),))])
    with pytest.raises(ValueError, match="not a tile"):
        store.write_user_tiles([UserTile(-1, T0 + TILE_US, 1, ((T0 // 1000, 1, "v"),))])
    assert store.read_sessions([1]) == {}
    # a tile from far in the future is left out: the real ones after it still make the session
    far = (time.time_ns() // 1000 // TILE_US + 24 * 60) * TILE_US  # a day after the wall clock
    future = UserTile(2, far, 1, ((far // 1000 - 1, 9, "v"),))
    store.write_user_tiles([future, *user_tiles_of([("r", 2, 5, "view", T0)])])
    s = store.read_sessions([2])[2]
    assert s.session_items == [5] and list(store.user_tiles(2)) == [T0 + TILE_US]
