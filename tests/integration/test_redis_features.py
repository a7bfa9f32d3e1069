"""Online features from a real redis-server: Feast's Redis layout both ways, the API reading and
updating them, the circuit breaker tripping on an outage, and the API degrading to batch features
when Redis goes away (the store contract itself: ``test_online_store_contract.py``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.features.online import OnlineFeatures, RedisOnlineStore, UserRealtime
from recommndr.features.schema import FIELDS, VIEW
from recommndr.serving.app import create_app
from tests.ports import free_port

pytestmark = pytest.mark.integration
Redis = tuple[str, "subprocess.Popen[bytes]"]


def test_redis_store_reads_what_feast_writes_and_feast_reads_what_it_writes(
    redis_server: Redis, tmp_path: Path
) -> None:
    from recommndr.features.repo import apply, push, write_repo

    url, _ = redis_server
    fs = apply(write_repo(tmp_path / "repo", "redis", tmp_path / "unused.db", url))
    pushed = {5: UserRealtime([3, 2, 1], [2], 1_700_000_000_123_456, 7, [3]), 9: UserRealtime([], [], 5, 1)}
    push(fs, pushed, 1_700_000_000_000_000)
    ours = RedisOnlineStore(url)
    assert ours.read(5) == pushed[5] and ours.read(9) == pushed[9] and ours.read(1) is None
    assert ours.read_many([9, 1, 5]) == {9: pushed[9], 5: pushed[5]}
    ours.write({11: UserRealtime([8, 4], [4], 1_700_000_001_000_000, 2, [8])}, 1_700_000_001_000_000)
    ours.fold_events({9: [(4, "purchase", 1_700_000_002_000_000)], 12: [(6, "view", 1_700_000_003_000_000)]})
    got = fs.get_online_features(
        features=[f"{VIEW}:{n}" for n in FIELDS],
        entity_rows=[{"user_id": 11}, {"user_id": 5}, {"user_id": 9}, {"user_id": 12}],
    ).to_dict()
    assert got["recent_items"] == [[8, 4], [3, 2, 1], [4], [6]]
    assert got["purchased_items"] == [[4], [2], [4], []] and got["events"] == [2, 7, 2, 1]
    assert got["carted_items"] == [[8], [3], [], []]
    assert got["last_event_us"] == [
        1_700_000_001_000_000,
        1_700_000_000_123_456,
        1_700_000_002_000_000,
        1_700_000_003_000_000,
    ]


def test_record_loads_its_script_again_after_a_script_flush(redis_server: Redis) -> None:
    url, _ = redis_server
    online = OnlineFeatures(RedisOnlineStore(url, timeout_s=5.0))
    assert online.record([(1, 10, "view", 100)])
    redis.Redis.from_url(url).script_flush()  # e.g. a restarted or failed-over Redis
    assert online.record([(1, 11, "view", 200)]) and online.available
    assert online.get(1) == (UserRealtime([11, 10], [], 200, 2), True)


def test_a_stopped_redis_trips_the_breaker(redis_server: Redis) -> None:
    url, proc = redis_server
    online = OnlineFeatures(RedisOnlineStore(url, timeout_s=0.5), cooldown_s=60)
    assert online.record([(1, 10, "view", 100)]) and online.get(1)[1]
    proc.terminate()
    proc.wait(timeout=10)
    assert online.record([(1, 11, "view", 200)]) is False
    assert not online.available and "ConnectionError" in (online.last_error or "")
    assert online.get(1) == (None, False) and online.get(2) == (None, False)


@pytest.mark.parametrize("call", ["get", "record"])
def test_redis_on_a_wrong_port_trips_the_breaker(call: str) -> None:
    online = OnlineFeatures(
        RedisOnlineStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5), cooldown_s=60
    )
    if call == "get":
        assert online.get(1) == (None, False)
    else:
        assert online.record([(1, 10, "view", 100)]) is False
    assert not online.available and "ConnectionError" in (online.last_error or "")


def test_api_reads_and_updates_redis_and_degrades_when_it_stops(
    redis_server: Redis, artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, proc = redis_server
    art = artifacts
    monkeypatch.setenv("RECOMMNDR_ONLINE_STORE", "redis")
    monkeypatch.setenv("RECOMMNDR_REDIS_URL", url)
    get_settings.cache_clear()
    user = 555_000_111
    with TestClient(create_app(art, tmp_path / "events")) as c:
        assert c.get("/ready").json()["online_store"] == "redis"
        assert c.get(f"/recommendations/{user}").json()["cold_start"] is True
        item = c.get("/products", params={"page_size": 1}).json()["items"][0]["item_id"]
        assert (
            c.post(
                "/events", json={"user_id": user, "item_id": item, "event_type": "add_to_cart"}
            ).status_code
            == 202
        )
        stored = RedisOnlineStore(url).read(user)
        assert stored is not None and stored.recent_items == [item] and stored.events == 1
        warm = c.get(f"/recommendations/{user}").json()
        assert warm["cold_start"] is False and warm["degraded"] == []
        proc.terminate()
        proc.wait(timeout=10)
        down = c.get(f"/recommendations/{user}")
        assert down.status_code == 200 and down.json()["degraded"] == ["online_features_unavailable"]
        assert len(down.json()["items"]) == 10
        # accepted events are still durable (the log) while the store is down
        ev = c.post("/events", json={"user_id": user, "item_id": item, "event_type": "view"})
        assert ev.status_code == 202
        assert "unavailable" in c.get("/ready").json()["online_store"]
