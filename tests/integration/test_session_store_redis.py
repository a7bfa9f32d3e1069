"""The Redis session store passes the session-store contract against a real redis-server; its
fields are Feast's layout (Feast's Redis online store reads them) and share the shopper's hash with
the API's ``user_realtime`` record without disturbing it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from recommndr.features.online import RedisOnlineStore, UserRealtime
from recommndr.features.schema import FIELDS, SESSION_FIELDS, SESSION_VIEW, VIEW
from recommndr.streaming.sessions import RedisSessionStore, user_tiles_of
from tests import session_store_contract as contract

pytestmark = pytest.mark.integration
T0, MIN_US = contract.T0, contract.MIN_US


@pytest.fixture
def store(redis_server: tuple[str, subprocess.Popen[bytes]]) -> RedisSessionStore:
    return RedisSessionStore(redis_server[0])


def test_firings_and_replays_leave_exact_sessions(store: RedisSessionStore) -> None:
    contract.check_firings_and_replays_leave_exact_sessions(store)


def test_marks_in_any_batches_and_replays_leave_exact_sessions(store: RedisSessionStore) -> None:
    contract.check_marks_in_any_batches_and_replays_leave_exact_sessions(store)


def test_a_pause_ends_a_session_and_a_late_event_can_join_two(store: RedisSessionStore) -> None:
    contract.check_a_pause_ends_a_session_and_a_late_event_can_join_two(store)


def test_a_long_session_is_cut_and_old_tiles_go(store: RedisSessionStore) -> None:
    contract.check_a_long_session_is_cut_and_old_tiles_go(store)


def test_a_tile_off_the_minute_is_refused(store: RedisSessionStore) -> None:
    contract.check_a_tile_off_the_minute_is_refused(store)


def test_the_shoppers_tiles_expire(store: RedisSessionStore) -> None:
    store.write_user_tiles(user_tiles_of([("a", 4, 1, "view", T0)]))
    ttl = store.client.ttl(store.tiles_key(4))
    assert 0 < ttl <= 2 * 86_400  # type: ignore[operator]


def test_feast_reads_the_redis_sessions_beside_the_apis_record(
    store: RedisSessionStore, redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    from recommndr.features.repo import apply, write_repo

    fs = apply(write_repo(tmp_path / "repo", "redis", tmp_path / "unused.db", redis_server[0]))
    online = RedisOnlineStore(redis_server[0])
    online.fold_events({5: [(11, "view", T0), (12, "add_to_cart", T0 + MIN_US)]})
    store.write_user_tiles(
        user_tiles_of([("a", 5, 11, "view", T0), ("b", 5, 12, "add_to_cart", T0 + MIN_US)]), {11: "Toys"}
    )
    online.fold_events({5: [(13, "purchase", T0 + 2 * MIN_US)]})  # the API's write after the job's
    got = fs.get_online_features(
        features=[f"{SESSION_VIEW}:{n}" for n in SESSION_FIELDS] + [f"{VIEW}:{n}" for n in FIELDS],
        entity_rows=[{"user_id": 5}],
    ).to_dict()
    ours = store.read_sessions([5])[5]
    assert {n: got[n][0] for n in SESSION_FIELDS} == ours.values()
    assert ours.session_items == [12, 11] and ours.session_categories == ["Toys"]
    rec = online.read(5)
    assert (
        isinstance(rec, UserRealtime)
        and rec.recent_items == [13, 12, 11]
        and got["recent_items"] == [[13, 12, 11]]
    )
