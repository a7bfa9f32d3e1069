"""``POST /events`` to a real Kafka-protocol broker (Tansu, started here on a free port), with the
durable spool behind it: against the real API process (``recommndr serve``) with
``RECOMMNDR_EVENT_BROKER`` set.

The topic is read with an assigned partition list (no consumer group: a group's first join takes
~20 s), from the beginning, until the expected events are there or a deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recommndr.serving.events import EventIn, EventLog, event_records
from recommndr.streaming.broker import LocalBroker, create_topic
from tests.integration.test_event_durability import _serve_cmd
from tests.ports import free_port

pytestmark = pytest.mark.integration

TOPIC = "events-test"
PARTITIONS = 2


def consume(bootstrap: str, want: int, timeout_s: float = 30.0, topic: str = TOPIC) -> list[Any]:
    """The topic's messages (every partition, from the start) once ``want`` are there, or what
    came before the deadline; each as (key, value dict, raw value)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < want and time.monotonic() < deadline:
            for m in c.consume(10_000, 0.3):
                if m.error() is None:
                    got.append((m.key(), json.loads(m.value() or b"null"), m.value()))
        time.sleep(0.3)  # anything beyond what was wanted (a duplicate, a stray) shows too
        for m in c.consume(10_000, 0.5):
            if m.error() is None:
                got.append((m.key(), json.loads(m.value() or b"null"), m.value()))
        return got
    finally:
        c.close()


def events(prefix: str, n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"user_id": i % 7, "item_id": 100 + i, "event_type": ("view", "add_to_cart", "purchase")[i % 3],
             "event_id": f"{prefix}-{i}", "ts": f"2026-12-01T10:00:{i % 60:02d}+00:00", **extra}
            for i in range(n)]  # fmt: skip


def post(base: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"{base}/events", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(base: str, path: str) -> Any:
    with urllib.request.urlopen(f"{base}{path}", timeout=15) as r:
        return json.loads(r.read()) if path != "/metrics" else r.read().decode()


class Api:
    """``recommndr serve`` producing to ``bootstrap``, in its own process group."""

    def __init__(self, artifacts: Path, tmp: Path, bootstrap: str, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_dir = tmp / "events"
        self.spool = tmp / "spool"
        self.out = tmp / f"serve-{self.port}.log"
        e = {k: v for k, v in os.environ.items() if not k.startswith("RECOMMNDR_")}
        e.update(
            OPENBLAS_NUM_THREADS="1",
            RECOMMNDR_EVENT_LOG_DIR=str(self.log_dir),
            RECOMMNDR_EVENT_SPOOL_DIR=str(self.spool),
            RECOMMNDR_EVENT_BROKER=bootstrap,
            RECOMMNDR_EVENT_TOPIC=TOPIC,
            RECOMMNDR_EVENT_BROKER_TIMEOUT_MS="500",
            RECOMMNDR_EVENT_BROKER_COOLDOWN_S="1",
            RECOMMNDR_ONLINE_STORE="off",
            RECOMMNDR_TRAFFIC_FILE=str(tmp / "traffic.json"),
            RECOMMNDR_RELOAD_INTERVAL_S="0",
        )
        e.update(env)  # a test's own settings win (the online store, say)
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [*_serve_cmd(), "serve", "--artifacts", str(artifacts), "--port", str(self.port),
                 "--workers", "1"],
                env=e, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, f"serve exited:\n{self.output()}"
            try:
                get(self.base, "/ready")
                return
            except OSError:
                assert time.monotonic() < deadline, f"serve not ready:\n{self.output()}"
                time.sleep(0.2)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def ready(self) -> dict[str, Any]:
        events: dict[str, Any] = get(self.base, "/ready")["events"]
        return events

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@contextlib.contextmanager
def api(*args: Any, **kwargs: Any) -> Iterator[Api]:
    a = Api(*args, **kwargs)
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    b = LocalBroker(log_path=tmp_path / "tansu.log").start()
    create_topic(b.bootstrap, TOPIC, PARTITIONS)
    try:
        yield b
    finally:
        b.stop()


def spooled_ids(spool: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for f in sorted(spool.glob("events-*.jsonl")):
        for line in f.read_bytes().splitlines():
            ids[json.loads(line)["event_id"]] += 1
    return ids


def wait_for(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_accepted_events_are_on_the_topic_exactly_and_malformed_ones_never(
    artifacts: Path, tmp_path: Path, broker: LocalBroker
) -> None:
    with api(artifacts, tmp_path, broker.bootstrap) as a:
        sent = events("up", 40)
        for i in range(0, 40, 10):  # several produce batches (Tansu's high-watermark moves per batch)
            status, body = post(a.base, sent[i : i + 10])
            assert status == 202, body
            assert body["event_ids"] == [e["event_id"] for e in sent[i : i + 10]]
        bad = [*events("bad", 2), {"user_id": "x", "item_id": 1, "event_type": "view", "event_id": "bad-x"}]
        status, body = post(a.base, bad)
        assert status == 422 and "events[2].user_id" in body["error"]["message"]
        status, _ = post(a.base, {"user_id": 1, "item_id": 2, "event_type": "teleport", "event_id": "bad-t"})
        assert status == 422
        assert a.ready() == {"sink": "broker", "topic": TOPIC, "broker": "up", "spool_backlog": 0}
        metrics = get(a.base, "/metrics")
    got = consume(broker.bootstrap, 40)
    by_id = {v["event_id"]: (k, v) for k, v, _ in got}
    assert len(got) == 40 and set(by_id) == {e["event_id"] for e in sent}, "exactly the accepted events"
    for e in sent:
        key, v = by_id[e["event_id"]]
        assert key == str(e["user_id"]).encode()
        assert (v["user_id"], v["item_id"], v["event_type"], v["ts"]) == (
            e["user_id"], e["item_id"], e["event_type"], e["ts"])  # fmt: skip
        assert v["ts_ms"] == int(datetime.fromisoformat(e["ts"]).timestamp()) * 1000
        assert "received_at" in v
    assert not spooled_ids(a.spool)
    assert "recommndr_events_produced_total 40.0" in metrics
    assert "recommndr_event_broker_up 1.0" in metrics


def test_broker_down_still_202_spooled_then_drained_to_a_new_broker_none_lost(
    artifacts: Path, tmp_path: Path, broker: LocalBroker
) -> None:
    with api(artifacts, tmp_path, broker.bootstrap) as a:
        assert post(a.base, events("before", 5))[0] == 202
        port = broker.port
        broker.stop()
        down = events("down", 60)
        t0 = time.monotonic()
        for i in range(0, 60, 5):  # 12 requests: 6 s if each waited for the 0.5 s timeout
            status, body = post(a.base, down[i : i + 5])
            assert status == 202, body
        assert time.monotonic() - t0 < 3, "the breaker sends requests to the spool without the timeout"
        assert set(spooled_ids(a.spool)) == {e["event_id"] for e in down}, "every event while down is spooled"
        r = a.ready()
        assert r["broker"].startswith("down") and r["spool_backlog"] == 60, r
        # /ready is public: the failure's kind, never the client's message with the broker's address
        assert "127.0.0.1" not in r["broker"] and str(port) not in r["broker"], r
        metrics = get(a.base, "/metrics")
        assert "recommndr_event_broker_up 0.0" in metrics and "recommndr_events_spooled_total 60.0" in metrics
        # a new, empty broker on the same port
        back = LocalBroker(port=port, log_path=tmp_path / "tansu2.log").start()
        try:
            create_topic(back.bootstrap, TOPIC, PARTITIONS)
            wait_for(lambda: not list(a.spool.glob("events-*.jsonl")), 60, "the spool to drain")
            wait_for(lambda: a.ready()["spool_backlog"] == 0, 10, "the backlog to be 0")
            after = events("after", 10)
            assert post(a.base, after)[0] == 202
            wait_for(lambda: a.ready()["broker"] == "up", 10, "the broker to be up")
            got = consume(back.bootstrap, 70)
            assert "recommndr_events_drained_total 60.0" in get(a.base, "/metrics")
        finally:
            back.stop()
    ids = Counter(v["event_id"] for _, v, _ in got)
    expected = {e["event_id"] for e in down + after}
    assert expected <= set(ids), f"lost: {sorted(expected - set(ids))[:5]}"
    assert set(ids) == expected, "nothing else (the first broker's events died with it)"
    assert "this process" in a.output() and "drains the spool" in a.output()


def test_spool_unwritable_and_broker_down_is_a_503(
    artifacts: Path, tmp_path: Path, broker: LocalBroker
) -> None:
    with api(artifacts, tmp_path, broker.bootstrap) as a:
        broker.stop()
        shutil.rmtree(a.spool)
        a.spool.write_text("not a folder")  # the spool's day file cannot be created any more
        status, body = post(a.base, events("lost", 3))
        assert status == 503 and body["error"]["code"] == "events_unavailable", body
        a.spool.unlink()
        a.spool.mkdir()
        status, _ = post(a.base, events("kept", 3))
        assert status == 202
        assert set(spooled_ids(a.spool)) == {"kept-0", "kept-1", "kept-2"}


def test_a_duplicate_spool_shipment_carries_the_same_event_ids(tmp_path: Path, broker: LocalBroker) -> None:
    """A crash between the broker's confirmation and the offset commit ships a chunk twice: each
    copy is the same bytes, with the same event_id, so counting DISTINCT event_id counts it once."""
    from recommndr.config import Settings
    from recommndr.streaming.producer import BrokerProducer, ProducerMetrics, SpoolDrainer

    class Nop:
        def inc(self, amount: float = 1) -> None: ...
        def set(self, value: float) -> None: ...

    metrics = ProducerMetrics(Nop(), Nop(), Nop(), Nop(), Nop())
    settings = Settings(event_broker=broker.bootstrap, event_topic=TOPIC, event_log_dir=tmp_path / "log")
    spool_dir = tmp_path / "spool"

    async def go() -> None:
        spool = EventLog(spool_dir, flush_ms=0)
        await spool.start()
        evs = [EventIn.model_validate(e) for e in events("dup", 30)]
        _, lines = event_records(evs, datetime.now(UTC), ts_ms=True)
        await spool.append_lines(lines)
        await spool.stop()
        producer = BrokerProducer(settings, EventLog(tmp_path / "unused"), metrics, event_records)
        await producer.start()
        assert producer._drainer is not None
        assert producer._drain_task is not None
        producer._drain_task.cancel()  # the drainer is driven by hand below
        drainer = SpoolDrainer(spool_dir, producer._ship, metrics)
        assert drainer.try_lock()
        chunk = drainer.next_chunk()
        assert chunk is not None and len(chunk.lines) == 30
        assert await producer._ship(chunk.lines)  # shipped; "crash" before the commit
        assert await drainer.drain_once() == "shipped"  # the restart ships it again, commits
        assert await drainer.drain_once() == "empty"
        assert not list(spool_dir.glob("events-*.jsonl")), "a file shipped whole is removed"
        drainer.close()
        await producer.stop()

    asyncio.run(go())
    got = consume(broker.bootstrap, 60)
    assert len(got) == 60
    raw = Counter(r for _, _, r in got)
    assert set(raw.values()) == {2}, "each event twice, byte for byte the same"
    assert len({v["event_id"] for _, v, _ in got}) == 30


def test_simulate_direct_mode_lands_every_event_on_the_topic(tiny_dataset: Path, broker: LocalBroker) -> None:
    from typer.testing import CliRunner

    from recommndr.cli import app

    r = CliRunner().invoke(app, ["stream", "simulate", "--broker", broker.bootstrap, "--topic", TOPIC,
                                 "--data", str(tiny_dataset), "--rate", "2000", "--seconds", "1.5",
                                 "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["sent"] >= 2000 and result["delivered"] == result["sent"] and result["errors"] == 0
    got = consume(broker.bootstrap, result["sent"])
    ids = Counter(v["event_id"] for _, v, _ in got)
    assert len(got) == result["sent"] and max(ids.values()) == 1, "each event once"
    kinds = Counter(v["event_type"] for _, v, _ in got)
    assert kinds["view"] > kinds["add_to_cart"] > 0, kinds
    assert all(k == str(v["user_id"]).encode() and isinstance(v["ts_ms"], int) for k, v, _ in got)
    bad = CliRunner().invoke(app, ["stream", "simulate", "--broker", "127.0.0.1:1", "--data", str(tiny_dataset),
                                   "--rate", "100", "--seconds", "1"])  # fmt: skip
    assert bad.exit_code != 0 and "cannot be reached" in str(bad.exception)  # main() prints it
    zero = CliRunner().invoke(app, ["stream", "simulate", "--broker", broker.bootstrap, "--data",
                                    str(tiny_dataset), "--rate", "0"])  # fmt: skip
    assert zero.exit_code != 0 and "rate" in zero.output
