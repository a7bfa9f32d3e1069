"""The API reading the streaming job's product windows from a real SqliteWindowStore (the online
store's file, as the job writes it): /trending live and flagged, a burst of views leading it, a
stale status or a failing store falling back to the batch lists (never a 5xx), the category filter,
unknown products skipped, live popularity for the cold-start list and /popular, the metrics and
the consistency ratio against the API's own count of accepted events."""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.serving.app import create_app
from recommndr.serving.runtime import ServingState
from recommndr.serving.stream import EventCounts, consistency
from recommndr.streaming.windows import TILE_US, SqliteWindowStore, Tile, tile_end_us

pytestmark = pytest.mark.unit
UNKNOWN = 999_999_999  # a product the served catalogue does not know


def now_tile() -> int:
    return tile_end_us(time.time_ns() // 1000)


@pytest.fixture
def client(artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("RECOMMNDR_STREAM_REFRESH_S", "60")  # the tests refresh by hand
    get_settings.cache_clear()
    with TestClient(create_app(artifacts, tmp_path / "events")) as c:
        yield c


def state(c: TestClient) -> ServingState:
    s: ServingState = c.app.state.recommndr  # type: ignore[attr-defined]
    return s


def store() -> SqliteWindowStore:
    return SqliteWindowStore(get_settings().online_store_path)


def products(c: TestClient) -> dict[str, list[int]]:
    """The served catalogue's product ids per top-level category."""
    m = state(c).slots.champion
    assert m is not None
    out: dict[str, list[int]] = {}
    for idx, item in enumerate(m.catalogue.item_ids.tolist()):
        out.setdefault(m.catalogue.category_l1(idx), []).append(int(item))
    return out


def metric(c: TestClient, name: str) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_without_a_stream_trending_is_the_batch_list_and_says_so(client: TestClient) -> None:
    r = client.get("/trending", params={"k": 5}).json()
    assert r["source"] == "batch" and r["as_of"] is None and r["items"]
    assert client.get("/popular", params={"k": 5}).json()["source"] == "batch"
    assert client.get("/ready").json()["trending"] == "batch (no stream has written yet)"
    assert metric(client, "recommndr_stream_live") == 0
    assert metric(client, "recommndr_stream_status_age_seconds") == math.inf
    schema = client.get("/openapi.json").json()["components"]["schemas"]["CategoryListOut"]["properties"]
    assert schema["source"]["enum"] == ["live", "batch"] and "as_of" in schema


def test_live_trending_lists_the_written_windows_best_first_unknown_products_skipped(
    client: TestClient,
) -> None:
    batch = client.get("/trending", params={"k": 10}).json()["items"]
    cats = products(client)
    a, b, c = next(iter(cats.values()))[:3]
    end = now_tile()
    s = store()
    s.write_tiles([Tile(a, end, 5, 1, 0), Tile(b, end, 20, 2, 1), Tile(c, end, 3, 0, 0),
                   Tile(UNKNOWN, end, 90, 0, 0), Tile(c, end - 30 * TILE_US, 40, 0, 0)])  # fmt: skip
    snap = state(client).stream.refresh()
    assert snap.live and UNKNOWN in snap.item_ids.tolist()
    r = client.get("/trending", params={"k": 10})
    assert r.status_code == 200
    body = r.json()
    assert body["source"] == "live" and body["as_of"].endswith("Z")
    want = sorted(s.read([a, b, c]).values(), key=lambda w: -w.trend)
    assert [i["item_id"] for i in body["items"]] == [w.item_id for w in want]  # UNKNOWN skipped
    assert [i["score"] for i in body["items"]] == [round(w.trend, 6) for w in want]
    assert all(i["reason"] == "trending" for i in body["items"])
    assert body["items"] != batch
    assert client.get("/trending", params={"k": 2}).json()["items"] == body["items"][:2]
    assert client.get("/ready").json()["trending"] == "live"
    assert metric(client, "recommndr_stream_live") == 1
    assert metric(client, "recommndr_stream_snapshot_products") == 4
    assert 0 <= metric(client, "recommndr_stream_status_age_seconds") < 30


def test_a_burst_of_views_puts_a_product_first_in_trending_popular_and_the_cold_start_list(
    client: TestClient,
) -> None:
    m = state(client).slots.champion
    assert m is not None
    by_pop = m.catalogue.item_ids[np.argsort(-m.pop.pop, kind="stable")].tolist()
    steady, burst = by_pop[-8:], by_pop[20]  # quiet products, steady all day; a popular-enough one bursts
    end = now_tile()
    tiles = [Tile(p, end - h * 60 * TILE_US, 3, 0, 0) for p in steady for h in range(24)]  # a steady day
    store().write_tiles(tiles)
    state(client).stream.refresh()
    assert client.get("/trending").json()["items"][0]["item_id"] != burst
    store().write_tiles([*tiles, Tile(burst, end, 60, 0, 0)])
    state(client).stream.refresh()
    trending = client.get("/trending").json()
    assert trending["source"] == "live" and trending["items"][0]["item_id"] == burst
    popular = client.get("/popular").json()
    assert popular["source"] == "live" and popular["items"][0]["item_id"] == burst
    scores = [i["score"] for i in popular["items"]]
    assert scores == sorted(scores, reverse=True)
    cold = client.get("/recommendations/-5").json()
    assert cold["cold_start"] and cold["items"][0]["item_id"] == burst


def test_a_stale_status_serves_the_batch_lists_flagged(
    artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOMMNDR_STREAM_REFRESH_S", "60")
    monkeypatch.setenv("RECOMMNDR_STREAM_STALE_S", "0.5")
    get_settings.cache_clear()
    with TestClient(create_app(artifacts, tmp_path / "events")) as c:
        batch = c.get("/trending").json()
        popular = c.get("/popular").json()
        item = products(c)[next(iter(products(c)))][0]
        store().write_tiles([Tile(item, now_tile(), 50, 0, 0)])
        assert state(c).stream.refresh().live
        assert c.get("/trending").json()["items"][0]["item_id"] == item
        time.sleep(0.6)  # the job wrote nothing since: its heartbeat stopped
        snap = state(c).stream.refresh()
        assert not snap.live and snap.why is not None and snap.why.startswith("stream down")
        r = c.get("/trending").json()
        assert (r["source"], r["as_of"], r["items"]) == ("batch", None, batch["items"])
        assert c.get("/popular").json() == popular
        assert c.get("/ready").json()["trending"].startswith("batch (stream down: its last write is")
        assert metric(c, "recommndr_stream_live") == 0
        assert metric(c, "recommndr_stream_status_age_seconds") >= 0.5


def test_a_failing_store_serves_the_batch_lists_logs_once_and_recovers(
    client: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = client.get("/trending").json()["items"]
    item = products(client)[next(iter(products(client)))][0]
    store().write_tiles([Tile(item, now_tile(), 50, 0, 0)])
    feed = state(client).stream
    assert feed.refresh().live
    assert feed.store is not None

    def broken() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(feed.store, "status", broken)
    with caplog.at_level(logging.WARNING, logger="recommndr.serving.stream"):
        for _ in range(3):
            assert not feed.refresh().live
    outage = [r for r in caplog.records if "product windows unavailable" in r.getMessage()]
    assert len(outage) == 1 and "disk I/O error" in outage[0].getMessage()
    for path in ("/trending", "/popular", "/recommendations/-1", "/ready"):
        assert client.get(path).status_code == 200, path
    r = client.get("/trending").json()
    assert r["source"] == "batch" and r["items"] == batch
    assert "window store error: OperationalError: disk I/O error" in client.get("/ready").json()["trending"]
    assert metric(client, "recommndr_stream_live") == 0
    monkeypatch.undo()
    assert feed.refresh().live and client.get("/trending").json()["source"] == "live"


def test_the_category_filter_applies_to_the_live_list(client: TestClient) -> None:
    cats = products(client)
    (c1, in1), (c2, in2) = list(cats.items())[:2]
    end = now_tile()
    store().write_tiles([Tile(in1[0], end, 9, 0, 0), Tile(in2[0], end, 30, 0, 0), Tile(in2[1], end, 4, 0, 0)])
    state(client).stream.refresh()
    only1 = client.get("/trending", params={"category": c1}).json()
    assert only1["source"] == "live" and [i["item_id"] for i in only1["items"]] == [in1[0]]
    only2 = client.get("/trending", params={"category": c2}).json()
    assert [i["item_id"] for i in only2["items"]] == [in2[0], in2[1]]
    everything = client.get("/trending").json()
    assert [i["item_id"] for i in everything["items"]] == [in2[0], in1[0], in2[1]]
    pop1 = client.get("/popular", params={"category": c1, "k": 100}).json()
    assert pop1["source"] == "live" and in2[0] not in [i["item_id"] for i in pop1["items"]]
    assert len(cats) > 2  # a category nothing trends in live: its batch list, flagged, not an empty one
    none_live = client.get("/trending", params={"category": list(cats)[2]}).json()
    assert none_live["source"] == "batch" and none_live["as_of"] is None


def test_the_background_task_picks_up_the_stream(
    artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOMMNDR_STREAM_REFRESH_S", "0.05")
    get_settings.cache_clear()
    with TestClient(create_app(artifacts, tmp_path / "events")) as c:
        assert c.get("/trending").json()["source"] == "batch"
        item = products(c)[next(iter(products(c)))][0]
        store().write_tiles([Tile(item, now_tile(), 50, 0, 0)])
        deadline = time.monotonic() + 10
        while c.get("/trending").json()["source"] != "live":
            assert time.monotonic() < deadline, "the snapshot was never refreshed"
            time.sleep(0.05)
        assert c.get("/trending").json()["items"][0]["item_id"] == item


def test_consistency_compares_the_job_with_the_api_write_through(client: TestClient) -> None:
    a, b = products(client)[next(iter(products(client)))][:2]
    ts_us = time.time_ns() // 1000 - 1_000_000
    end = tile_end_us(ts_us)
    iso = datetime.fromtimestamp(ts_us / 1e6, UTC).isoformat()
    events = [{"user_id": 7, "item_id": a, "event_type": "view", "ts": iso}] * 4 + [
        {"user_id": 8, "item_id": b, "event_type": "add_to_cart", "ts": iso}
    ] * 3
    assert client.post("/events", json=events).status_code == 202
    store().write_tiles([Tile(a, end, 4, 0, 0), Tile(b, end, 0, 3, 0)])
    state(client).stream.refresh()
    assert metric(client, "recommndr_stream_consistency_ratio") == 1.0
    store().write_tiles([Tile(a, end, 8, 0, 0), Tile(b, end, 0, 6, 0)])  # the job saw twice as many
    state(client).stream.refresh()
    assert metric(client, "recommndr_stream_consistency_ratio") == 2.0


def test_session_agreement_compares_the_jobs_sessions_with_the_write_through(client: TestClient) -> None:
    from recommndr.streaming.sessions import SqliteSessionStore, UserTile, user_tiles_of

    a, b, c = products(client)[next(iter(products(client)))][:3]
    t0 = (time.time_ns() // 1000 - 5_000_000) // 1000 * 1000  # to the millisecond, the job's precision
    evs = [(7, a, "view", t0), (7, b, "add_to_cart", t0 + 1000), (8, c, "view", t0), (9, a, "view", t0)]
    body = [
        {"user_id": u, "item_id": i, "event_type": k, "ts": datetime.fromtimestamp(ts / 1e6, UTC).isoformat()}
        for u, i, k, ts in evs
    ]
    assert client.post("/events", json=body).status_code == 202
    store().write_tiles([Tile(a, tile_end_us(t0), 2, 0, 0)])  # the stream is live
    sessions = SqliteSessionStore(get_settings().online_store_path)
    tiles = user_tiles_of((f"e{n}", u, i, k, ts) for n, (u, i, k, ts) in enumerate(evs))
    sessions.write_user_tiles([t for t in tiles if t.user_id != 9])  # the job has not seen 9's event yet
    state(client).stream.refresh()
    assert metric(client, "recommndr_stream_session_agreement_ratio") == 1.0
    assert metric(client, "recommndr_stream_sessions_compared") == 2.0
    # the job's session of shopper 8 names another product at the same time: they disagree
    sessions.write_user_tiles([UserTile(8, tile_end_us(t0), 1, ((t0 // 1000, a, "v"),))])
    state(client).stream.refresh()
    assert metric(client, "recommndr_stream_session_agreement_ratio") == 0.5
    # the stream goes down (an hour-old heartbeat): the figures are no longer claimed
    with sqlite3.connect(get_settings().online_store_path) as conn:
        conn.execute("UPDATE recommndr_product_realtime_status SET updated_us = updated_us - 3600000000")
    state(client).stream.refresh()
    assert math.isnan(metric(client, "recommndr_stream_session_agreement_ratio"))
    assert metric(client, "recommndr_stream_sessions_compared") == 0.0


def test_an_event_without_ts_has_one_time_in_the_log_and_the_write_through(
    client: TestClient, tmp_path: Path
) -> None:
    """The receipt time stamps the log (and the topic) and the shopper's record alike, to the
    microsecond, so the job's session and the record can be compared for such events too."""
    import json

    item = products(client)[next(iter(products(client)))][0]
    assert (
        client.post("/events", json={"user_id": 31, "item_id": item, "event_type": "view"}).status_code == 202
    )
    lines = [
        json.loads(x)
        for f in sorted((tmp_path / "events").rglob("*.jsonl"))
        for x in f.read_text().splitlines()
    ]
    ts = datetime.fromisoformat(next(r["ts"] for r in lines if r["user_id"] == 31))
    online = state(client).online
    assert online is not None
    rec = online.store.read(31)
    assert rec is not None and rec.last_event_us == (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )


def test_the_event_ring_counts_the_last_hour_and_stays_bounded() -> None:
    ring = EventCounts(capacity=3)
    end = 1_000 * TILE_US
    ring.add([(1, 10, "view", end - 1), (1, 10, "purchase", end - 1), (1, 10, "view", end - 61 * TILE_US)])
    ring.add([(1, 11, "view", end - 30 * TILE_US), (1, 11, "bogus", end - 1)])
    got = ring.last_hour(np.array([10, 11, 12]), end)
    assert got.tolist() == [2, 1, 0]  # the 61-minute-old view is outside the hour
    ring.add([(1, 10, "view", end - 128 * TILE_US - 1)])  # older than the ring: its slot is the live tile's
    assert ring.last_hour(np.array([10]), end).tolist() == [2]
    ring.add([(1, 12, "view", end - 1), (1, 13, "view", end - 1)])  # full: 11 (oldest newest event) goes
    assert ring.last_hour(np.array([10, 11, 12, 13]), end).tolist() == [2, 0, 1, 1]
    assert consistency(np.array([4, 9]), np.array([2, 0])) == 2.0  # 9: a product the API never counted
    assert math.isnan(consistency(np.array([4]), np.array([0])))
