"""The streaming feature job for real: a Tansu broker, Flink (flink/.venv), SQLite and redis-server.

Known events go to a topic in several batches (Tansu moves a partition's high-watermark once per
produced batch); the tiles the job writes must equal ``tiles_of`` the same events, and the 1 h / 24 h
windows the counts one gets by hand. One JVM per job start (~10-25 s here): each test starts the
fewest jobs it can. ``pytest -m stream`` selects them.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recommndr.streaming.broker import LocalBroker, create_topic, free_port
from recommndr.streaming.job import FeatureJob
from recommndr.streaming.sessions import RedisSessionStore, SessionStore, SqliteSessionStore, sessions_of
from recommndr.streaming.windows import (
    RedisWindowStore,
    SqliteWindowStore,
    Tile,
    WindowStore,
    tiles_of,
    windows_of,
)
from tests.flink_job import load_flink_job

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.stream]

KINDS = ("view", "view", "view", "add_to_cart", "view", "view", "view", "purchase", "view", "view")
# the tests' event time: an hour before now, on a minute (any time works: the job's clock is event time)
BASE_S = (int(time.time()) // 60 - 60) * 60


def event(eid: str, item: int, kind: str, ts_s: float, user: int = 1, ts_ms: bool = True) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "event_id": eid,
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "ts": datetime.fromtimestamp(ts_s, UTC).isoformat(),
    }
    if ts_ms:
        rec["ts_ms"] = int(ts_s * 1000)
    return rec


def known_events() -> list[dict[str, Any]]:
    """Three views two hours back (in the day, not the hour), then ten minutes of events over six
    products with all three types."""
    old = [event(f"old-{i}", 1, "view", BASE_S - 7200 + i) for i in range(3)]
    recent = [event(f"e-{k}", k % 6 + 1, KINDS[k % 10], BASE_S + k, user=k % 17) for k in range(600)]
    return old + recent


def reference(events: list[dict[str, Any]]) -> dict[int, dict[int, tuple[int, int, int]]]:
    """``{item: {end_us: counts}}`` of ``tiles_of`` the events (the contract's yardstick)."""
    out: dict[int, dict[int, tuple[int, int, int]]] = {}
    for t in tiles_of((e["event_id"], e["item_id"], e["event_type"], e["ts_ms"] * 1000) for e in events):
        out.setdefault(t.item_id, {})[t.end_us] = (t.views, t.carts, t.purchases)
    return out


def stored(store: WindowStore, items: list[int]) -> dict[int, dict[int, tuple[int, int, int]]]:
    return {i: t for i in items if (t := store.tiles(i))}


def session_reference(events: list[dict[str, Any]], category: dict[int, str] | None = None) -> dict[int, Any]:
    """``sessions_of`` the events: each shopper's latest session (the contract's yardstick)."""
    return sessions_of(
        ((e["event_id"], e["user_id"], e["item_id"], e["event_type"], e["ts_ms"] * 1000) for e in events),
        category,
    )


def stored_sessions(store: SessionStore, users: range = range(20)) -> dict[int, Any]:
    return store.read_sessions(list(users))


def wait_for(check: Callable[[], Any], want: Any, timeout_s: float = 90.0) -> Any:
    """Poll ``check()`` until it returns ``want``; returns the last value (the caller asserts it)."""
    deadline = time.monotonic() + timeout_s
    got = check()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.5)
        got = check()
    return got


def produce(bootstrap: str, topic: str, records: list[Any], batches: int = 3) -> None:
    """``records`` (dicts as JSON, bytes as they are) in ``batches`` flushed batches."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    size = max(1, -(-len(records) // batches))
    for start in range(0, len(records), size):
        for r in records[start : start + size]:
            value = r if isinstance(r, bytes) else json.dumps(r).encode()
            key = str(r.get("user_id", 0)).encode() if isinstance(r, dict) else b"0"
            p.produce(topic, value, key=key)
        assert p.flush(10) == 0


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(recommndr_stream_[a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as b:
        yield b


def test_known_events_exact_tiles_windows_duplicates_and_lateness(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """SQLite store. Exact tiles and 1 h / 24 h counts; a duplicate event id counts once; late events
    inside the allowed lateness count, outside it they are dropped; junk is ignored; the heartbeat
    moves without events; Flink's and the sink's figures reach the exporter."""
    topic = "known"
    create_topic(broker.bootstrap, topic)
    events = known_events()
    store = SqliteWindowStore(tmp_path / "online.db")
    port = free_port()
    job = FeatureJob(
        bootstrap=broker.bootstrap, topic=topic, store="sqlite", store_path=tmp_path / "online.db",
        checkpoint_dir=tmp_path / "chk", lateness_s=180, metrics_port=port, log_path=tmp_path / "job.log",
    )  # fmt: skip
    sessions = SqliteSessionStore(tmp_path / "online.db")
    items = list(range(1, 10))
    with job:
        dups = events[100:150]  # delivered again (an at-least-once producer): counted once
        produce(broker.bootstrap, topic, events[:300], batches=3)
        produce(broker.bootstrap, topic, dups + events[300:], batches=3)
        want = reference(events)
        got = wait_for(lambda: stored(store, items), want)
        assert got == want, (tmp_path / "job.log").read_text()[-3000:]
        # the product tiles' sink keeps its 100-ms bundles beside the sessions' (default 2 s)
        assert (
            "python bundles: the sink's 100 ms (as the environment gives it)"
            in (tmp_path / "job.log").read_text()
        )

        # the watermark is now ~BASE+594 s: a tile ending at BASE+480 is 114 s late (inside 180 s),
        # one ending at BASE+300 is 294 s late (outside: dropped, product 9 never appears)
        inside = [event(f"late-in-{i}", 1, "view", BASE_S + 450 + i) for i in range(5)]
        outside = [event(f"late-out-{i}", item, "view", BASE_S + 250 + i) for i, item in enumerate((2, 9, 9))]
        junk: list[Any] = [
            b"not json",
            event("odd-kind", 3, "wishlist", BASE_S + 590),
            {k: v for k, v in event("no-id", 3, "view", BASE_S + 590).items() if k != "event_id"},
            {k: v for k, v in event("no-item", 3, "view", BASE_S + 590).items() if k != "item_id"},
        ]
        tail = [event(f"tail-{i}", 3, "purchase", BASE_S + 600 + i) for i in range(4)]
        produce(broker.bootstrap, topic, inside + outside + junk, batches=2)
        produce(broker.bootstrap, topic, tail, batches=1)
        want = reference(events + inside + tail)
        got = wait_for(lambda: stored(store, items), want)
        assert got == want
        assert 9 not in got and got[2][(BASE_S + 300) * 1_000_000] == want[2][(BASE_S + 300) * 1_000_000]
        # the shoppers' sessions of the same events (the late ones outside the lateness dropped too)
        want_sessions = session_reference(events + inside + tail)
        assert wait_for(lambda: stored_sessions(sessions), want_sessions) == want_sessions
        assert want_sessions[1].session_events == sum(
            1 for e in events + inside + tail if e["user_id"] == 1 and e["ts_ms"] >= BASE_S * 1000
        )  # user 1's three old views are two hours back: another session
        assert got[1][(BASE_S + 480) * 1_000_000][0] == sum(
            1
            for e in events + inside
            if e["item_id"] == 1 and BASE_S + 420 <= e["ts_ms"] / 1000 < BASE_S + 480
        )

        # 1 h and 24 h windows as of the stream's clock (the newest tile end): counted by hand
        status = store.status()
        assert status is not None and status.as_of_us == (BASE_S + 660) * 1_000_000
        read = store.read(items)
        counted = events + inside + tail
        for item in range(1, 7):
            w = read[item]
            mine = [e for e in counted if e["item_id"] == item]
            hour = [e for e in mine if e["ts_ms"] / 1000 >= BASE_S + 660 - 3600]
            assert (w.views_1h, w.carts_1h, w.purchases_1h) == tuple(
                sum(e["event_type"] == k for e in hour) for k in ("view", "add_to_cart", "purchase")
            )
            assert (w.views_24h, w.carts_24h, w.purchases_24h) == tuple(
                sum(e["event_type"] == k for e in mine) for k in ("view", "add_to_cart", "purchase")
            )
            assert w == windows_of(item, want[item], status.as_of_us)
        assert read[1].views_24h == read[1].views_1h + 3  # the three old views: in the day, not the hour

        # the heartbeat moves while no events come; the exporter has Flink's and the sink's figures
        before = store.status()
        assert before is not None
        time.sleep(4.5)
        after = store.status()
        assert (
            after is not None and after.updated_us > before.updated_us and after.as_of_us == before.as_of_us
        )
        produced = len(events) + len(dups) + len(inside) + len(outside) + 3 + len(tail)  # + 3 JSON junk rows
        m = wait_for(lambda: metrics(port).get("recommndr_stream_records_in_total"), produced, timeout_s=30)
        assert m == produced  # every JSON record the source read (junk rows included, "not json" skipped)
        # what the driver's stall rule reads (BeatGate): of the two sources (windows, sessions) the
        # windows' one, its records emitted and none waiting
        rest = load_flink_job().FlinkRest(job.rest_port)
        jid, _, vertices = rest.job()
        (windows,) = rest.window_sources(jid)
        names = {v["id"]: v["name"] for v in vertices}
        assert sum(n.startswith("Source") for n in names.values()) == 2 and names[windows].startswith(
            "Source"
        )
        assert "PythonCalc" not in names[windows]  # not the sessions' (their function is chained to it)

        # (the figures Flink's fetcher last gathered: up to a second behind the exporter's)
        def read_and_waiting() -> tuple[float | None, float | None]:
            f = rest.sources(jid, vertices)[windows]
            return f.records, f.pending

        wait_for(read_and_waiting, (produced, 0.0))
        fig = rest.sources(jid, vertices)[windows]
        assert (
            (fig.records, fig.pending) == (produced, 0.0)
            and fig.connections is not None
            and fig.connections > 0
        )
        m = metrics(port)
        assert m["recommndr_stream_up"] == 1.0
        assert m["recommndr_stream_tiles_written_total"] >= sum(len(t) for t in want.values())
        assert m["recommndr_stream_user_tiles_written_total"] >= len(
            {(e["user_id"], e["ts_ms"] // 60_000) for e in counted}
        )
        assert m["recommndr_stream_write_seconds_count"] >= 1
        assert (
            m['recommndr_stream_write_seconds_bucket{le="+Inf"}'] == m["recommndr_stream_write_seconds_count"]
        )
        assert m["recommndr_stream_kafka_lag_records"] == 0.0
        assert m["recommndr_stream_clock_lag_seconds"] > 3000  # the events are an hour old
    assert job.proc is None
    with pytest.raises(OSError):  # the exporter went with the job
        metrics(port)
    store.close()
    sessions.close()


def test_kill_9_mid_stream_restart_from_checkpoint_same_tiles(
    broker: LocalBroker, redis_server: tuple[str, Any], tmp_path: Path
) -> None:
    """Redis store. ``kill -9`` of the whole job mid-stream, events produced while it is down, a
    restart from the newest checkpoint: the tiles equal an uninterrupted run's. The job reads from
    the *latest* offset when it has no checkpoint, so without the restore the events produced while
    it was down would be missed."""
    url, _ = redis_server
    topic = "kill"
    create_topic(broker.bootstrap, topic)
    store = RedisWindowStore(url)
    events = [event(f"k-{k}", k % 5 + 1, KINDS[k % 10], BASE_S + k * 0.5, user=k % 11) for k in range(900)]
    job = FeatureJob(
        bootstrap=broker.bootstrap, topic=topic, store="redis", redis_url=url, checkpoint_dir=tmp_path / "chk",
        checkpoint_interval_s=1.0, startup="latest", log_path=tmp_path / "job.log",
    )  # fmt: skip
    sessions = RedisSessionStore(url)
    items = list(range(1, 6))
    job.start()
    try:
        time.sleep(1.0)  # the source has taken its (latest) offsets
        produce(broker.bootstrap, topic, events[:300], batches=3)
        want = reference(events[:300])
        assert wait_for(lambda: stored(store, items), want) == want
        job.wait_checkpoint(after=job.checkpoints())
        produce(broker.bootstrap, topic, events[300:450], batches=2)
        time.sleep(0.3)
        job.kill()  # mid-stream: some of these read, some tiles written after the last checkpoint
        produce(broker.bootstrap, topic, events[450:], batches=3)
        job.start()
        want = reference(events)
        got = wait_for(lambda: stored(store, items), want)
        assert got == want
        want_sessions = session_reference(events)
        assert wait_for(lambda: stored_sessions(sessions), want_sessions) == want_sessions
        assert "restoring from" in (tmp_path / "job.log").read_text()
        before = store.status()
        assert before is not None
        # the Redis store's heartbeat too, once the restored tasks all run (held while one initialises:
        # seconds, more on a loaded machine)
        assert wait_for(lambda: (store.status() or before).updated_us > before.updated_us, True, timeout_s=60)
    finally:
        job.stop()
        store.close()
        sessions.close()


def test_parallelism_2_keyed_topic_exact_tiles_and_sessions(broker: LocalBroker, tmp_path: Path) -> None:
    """SQLite store, parallelism 2 over a topic of two partitions keyed by ``user_id`` (as the
    producers key it): two writers in one file, each shopper's marks read, merged and written by one
    of them (a shopper on both would lose marks when both merge at once); the tiles and every
    shopper's session equal the reference's."""
    topic = "two"
    create_topic(broker.bootstrap, topic, partitions=2)
    # 40 shoppers, each with events in every batch: both writers busy with their own ones at once
    events = [event(f"p2-{k}", k % 7 + 1, KINDS[k % 10], BASE_S + k * 0.25, user=k % 40) for k in range(2400)]
    job = FeatureJob(
        bootstrap=broker.bootstrap, topic=topic, store="sqlite", store_path=tmp_path / "online.db",
        checkpoint_dir=tmp_path / "chk", parallelism=2, session_fire_s=0.2, log_path=tmp_path / "job.log",
    )  # fmt: skip
    store = SqliteWindowStore(tmp_path / "online.db")
    sessions = SqliteSessionStore(tmp_path / "online.db")
    with job:
        produce(broker.bootstrap, topic, events, batches=12)
        want = reference(events)
        got = wait_for(lambda: stored(store, list(range(1, 8))), want)
        assert got == want, (tmp_path / "job.log").read_text()[-3000:]
        want_sessions = session_reference(events)
        assert len(want_sessions) == 40
        got_sessions = wait_for(lambda: stored_sessions(sessions, range(40)), want_sessions)
        assert got_sessions == want_sessions
    store.close()
    sessions.close()


def test_heartbeat_pauses_while_the_source_has_lost_the_broker(tmp_path: Path) -> None:
    """The heartbeat says events can flow: it stops once the job's Kafka source holds no connection
    to the broker (the API then reads the windows as down, not frozen ones as live) and comes back
    with a broker on the same address."""
    port = free_port()
    first = LocalBroker(port=port).start()
    second: LocalBroker | None = None
    create_topic(first.bootstrap, "hb")
    db = tmp_path / "online.db"
    job = FeatureJob(
        bootstrap=first.bootstrap, topic="hb", store="sqlite", store_path=db, checkpoint_dir=tmp_path / "chk",
        sessions=False, log_path=tmp_path / "job.log",
    )  # fmt: skip
    store = SqliteWindowStore(db)

    def beat() -> int:
        s = store.status()
        return s.updated_us if s else 0

    def beats_within(timeout_s: float) -> bool:
        seen, deadline = beat(), time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if beat() > seen:
                return True
        return False

    try:
        with job:
            produce(first.bootstrap, "hb", [event("hb-1", 1, "view", BASE_S)], batches=1)
            assert wait_for(lambda: bool(store.tiles(1)), True), (tmp_path / "job.log").read_text()[-3000:]
            assert beats_within(10)
            first.stop()
            paused, deadline = False, time.monotonic() + 90
            while not paused and time.monotonic() < deadline:
                paused = not beats_within(6)  # 3 beats missed
            log = (tmp_path / "job.log").read_text()
            assert paused and "heartbeat paused: a Kafka source lost the broker" in log, log[-3000:]
            second = LocalBroker(port=port).start()
            create_topic(second.bootstrap, "hb")
            assert beats_within(90), (tmp_path / "job.log").read_text()[-3000:]
            log = (tmp_path / "job.log").read_text()
            assert log.rindex("heartbeat resumed") > log.index("lost the broker")
    finally:
        store.close()
        first.stop()
        if second is not None:
            second.stop()


def test_a_write_failing_at_every_try_fails_the_task_holds_the_heartbeat_and_loses_nothing(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """A write the store refuses for good (here a trigger that aborts every tile insert: a
    constraint error, not an outage) fails the task at each try instead of being retried in place:
    Flink restarts it from the checkpoint, the status' wall time stands still the while (no beat,
    no write), and once the store takes writes again the tiles equal the reference (nothing lost)
    and the status moves again."""
    import sqlite3

    topic = "poison"
    create_topic(broker.bootstrap, topic)
    db = tmp_path / "online.db"
    store = SqliteWindowStore(db)
    with sqlite3.connect(db) as c:
        c.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON recommndr_product_realtime_tiles "
            "BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )
    events = [event(f"x-{k}", k % 3 + 1, KINDS[k % 10], BASE_S + k) for k in range(120)]
    job = FeatureJob(
        bootstrap=broker.bootstrap, topic=topic, store="sqlite", store_path=db, checkpoint_dir=tmp_path / "chk",
        sessions=False, log_path=tmp_path / "job.log",
    )  # fmt: skip
    log_path = tmp_path / "job.log"

    def beat() -> int:
        s = store.status()
        return s.updated_us if s else 0

    with job:
        produce(broker.bootstrap, topic, events, batches=2)
        assert wait_for(lambda: log_path.read_text().count("not an outage of the store") >= 2, True), (
            log_path.read_text()[-3000:]
        )
        held_from = beat()
        time.sleep(8)  # 4 beats' time, the task failing and restarting meanwhile
        assert beat() == held_from, log_path.read_text()[-3000:]
        assert "heartbeat paused" in log_path.read_text()
        assert not store.tiles(1)
        with sqlite3.connect(db) as c:
            c.execute("DROP TRIGGER poison")
        want = reference(events)
        assert wait_for(lambda: stored(store, [1, 2, 3]), want) == want, log_path.read_text()[-3000:]
        assert wait_for(lambda: beat() > held_from, True, timeout_s=60), log_path.read_text()[-3000:]
    store.close()


def test_backfill_from_files_identical_tiles(tmp_path: Path) -> None:
    """The same known events (plus the late ones inside the lateness) replayed from event files —
    the API's log lines (``ts`` only, no ``ts_ms``) and the topic's records — give identical tiles
    and windows."""
    events = known_events() + [event(f"late-in-{i}", 1, "view", BASE_S + 450 + i) for i in range(5)]
    logs = tmp_path / "events"
    logs.mkdir()
    half = len(events) // 2
    with (logs / "events-a.jsonl").open("w") as f:  # the API's event log: no ts_ms, ts parsed
        for e in events[:half]:
            f.write(
                json.dumps({k: v for k, v in e.items() if k != "ts_ms"} | {"received_at": e["ts"]}) + "\n"
            )
    topic_dump = tmp_path / "topic.jsonl"
    with topic_dump.open("w") as f:
        for e in events[half:] + events[10:20]:  # with a few duplicates
            f.write(json.dumps(e) + "\n")
        f.write("not json\n")
    store_path = tmp_path / "backfill.db"
    products = tmp_path / "products.csv"  # the sessions' categories
    products.write_text(
        "item_id,title,category_l2\n" + "".join(f"{i},p{i},cat-{i % 3}\n" for i in range(1, 7))
    )
    FeatureJob(
        store="sqlite", store_path=store_path, backfill=[logs, topic_dump], lateness_s=180,
        checkpoint_dir=tmp_path / "chk", log_path=tmp_path / "job.log", catalogue=products,
    ).run_backfill()  # fmt: skip
    store = SqliteWindowStore(store_path)
    want = reference(events)
    assert stored(store, list(range(1, 10))) == want
    status = store.status()
    assert status is not None
    read = store.read(list(want))
    for item, tiles in want.items():
        assert read[item] == windows_of(item, tiles, status.as_of_us)
    assert sum(t[0] for t in want[1].values()) == sum(
        1 for e in events if e["item_id"] == 1 and e["event_type"] == "view"
    )
    sessions = SqliteSessionStore(store_path)
    want_sessions = session_reference(events, {i: f"cat-{i % 3}" for i in range(1, 7)})
    assert stored_sessions(sessions) == want_sessions and want_sessions[3].session_categories
    store.close()
    sessions.close()


def test_tile_rows_are_whole_counts() -> None:
    """The reference the job is compared with counts distinct ids (a guard on the yardstick itself)."""
    evs = [("a", 1, "view", 1_000_000), ("a", 1, "view", 1_000_000), ("b", 1, "purchase", 61_000_000)]
    assert tiles_of(evs) == [Tile(1, 60_000_000, 1, 0, 0), Tile(1, 120_000_000, 0, 0, 1)]
