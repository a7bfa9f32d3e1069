"""The streaming job's throughput and freshness, end to end: topic → Flink → the window store.

(a) throughput: a topic pre-filled with ``--events`` events (pre-serialised, produced straight to a
local Tansu broker in many batches), then the job starts from the earliest offset; events/s =
events / (the time the store's tiles count all of them − the time the source read its first
record), sampled each second from the job's records-in figure as well (the sustained rate).
(b) freshness at ``--rate`` events/s on the same running job, after ``--warmup`` seconds at that
rate (the watermark moves past the throughput run's tiles, which fire a last time as they close):
each ``--probe-every``-th event goes to a product of its own; freshness = the time from just
before it was produced to the first poll of the store whose tile of that product counts it; p50 /
p95 / p99.

The last line is ``throughput_eps=… freshness_p50_s=… freshness_p95_s=…``. Goals on the 2-core
machine: ≥ 20,000 events/s sustained for ≥ 60 s, freshness p95 ≤ 2 s at 1,000 events/s.

    .venv/bin/python benchmarks/bench_stream.py [--events 1500000] [--rate 1000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson
from confluent_kafka import Producer

from recommndr.streaming.broker import LocalBroker, create_topic
from recommndr.streaming.job import FeatureJob

KINDS = np.array(["view"] * 8 + ["add_to_cart", "purchase"])
PROBE_BASE = 10_000_000  # probe products: one each, above the catalogue's ids


def payloads(
    n: int, items: int, start_s: float, span_s: float, seed: int = 0
) -> tuple[list[tuple[bytes, bytes]], int]:
    """``n`` records ``(key, value)`` as the producer writes them (keyed by ``user_id``), products drawn by a Zipf-like popularity, event
    times spread over ``span_s`` seconds from ``start_s``; and how many distinct shopper marks
    they hold (a shopper's two events of one kind on one product in one millisecond are one)."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, items + 1)
    p = 1.0 / ranks**1.05
    item = rng.choice(items, size=n, p=p / p.sum()) + 1
    kind = KINDS[rng.integers(0, len(KINDS), size=n)]
    user = rng.integers(1, 200_000, size=n)
    ts_ms = (start_s * 1000 + np.arange(n) * (span_s * 1000 / n)).astype(np.int64)
    template = '{"event_id":"b%x","user_id":%d,"item_id":%d,"event_type":"%s","ts":"","ts_ms":%d}'
    kinds = np.unique(kind, return_inverse=True)[1]
    marks = len(np.unique(np.stack([user, item, kinds, ts_ms], 1), axis=0))
    rows = zip(user.tolist(), item.tolist(), kind.tolist(), ts_ms.tolist(), strict=True)
    return [
        (b"%d" % u, (template % (i, u, it, k, t)).encode()) for i, (u, it, k, t) in enumerate(rows)
    ], marks


def producer(bootstrap: str) -> Producer:
    return Producer({
        "bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 1_048_576, "acks": 1,
    })  # fmt: skip


def prefill(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], batch: int = 20_000) -> float:
    p = producer(bootstrap)
    t0 = time.perf_counter()
    for start in range(0, len(records), batch):
        for key, value in records[start : start + batch]:
            p.produce(topic, value, key)
        p.poll(0)
        p.flush(60)  # one batch at a time: Tansu moves the high-watermark per batch
    return len(records) / (time.perf_counter() - t0)


def counted(db: Path, sessions: bool = True, marks_per_event: float = 1.0) -> int:
    """Events the store's tiles count: the product tiles', and with ``sessions`` the fewer of theirs
    and the shopper tiles' marks over ``marks_per_event`` (the job is through an event once both
    count it)."""
    with sqlite3.connect(db, timeout=10) as c:
        row = c.execute(
            "SELECT COALESCE(SUM(views + carts + purchases), 0) FROM recommndr_product_realtime_tiles"
        )
        n = int(row.fetchone()[0])
        if sessions:
            try:
                row = c.execute("SELECT COALESCE(SUM(events), 0) FROM recommndr_user_session_tiles")
                n = min(n, round(int(row.fetchone()[0]) / marks_per_event))
            except sqlite3.OperationalError:  # no shopper tile yet
                n = 0
        return n


def records_in(job: FeatureJob) -> float | None:
    try:
        jid = next(j["jid"] for j in job.rest("/jobs/overview")["jobs"] if j["state"] == "RUNNING")
        for v in job.rest(f"/jobs/{jid}")["vertices"]:
            if v["name"].startswith("Source"):
                rows = job.rest(f"/jobs/{jid}/vertices/{v['id']}/subtasks/metrics?get=numRecordsOut&agg=sum")
                return float(rows[0]["sum"]) if rows else None
    except (OSError, ValueError, KeyError, StopIteration, IndexError):
        return None
    return None


def throughput(
    job: FeatureJob, db: Path, n: int, timeout_s: float, sessions: bool, marks: int
) -> tuple[float, float, list[float]]:
    """(events/s end to end, seconds, per-second source rates)."""
    t_first = None
    deadline = time.monotonic() + timeout_s
    rates: list[float] = []
    last: tuple[float, float] | None = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        if t_first is None and db.exists():
            try:
                if counted(db, sessions) > 0:
                    t_first = now  # the first tiles: the source has been reading for ~1 s
            except sqlite3.OperationalError:
                pass
        r = records_in(job)
        if r is not None:
            if last is not None and now > last[0] and r > last[1]:
                rates.append((r - last[1]) / (now - last[0]))
            last = (now, r)
        if t_first is not None and counted(db, sessions, marks / n) >= n:
            elapsed = now - t_first + 1.0  # + the first early fire's delay before the first tiles
            return n / elapsed, elapsed, rates
        time.sleep(1.0)
    raise SystemExit(
        f"the job did not count {n:,} events within {timeout_s:.0f} s (counted {counted(db, sessions, marks / n):,})"
    )


def freshness(
    bootstrap: str,
    topic: str,
    db: Path,
    rate: float,
    seconds: float,
    probe_every: int,
    first_probe: int = 0,
    run: str = "m",
) -> tuple[list[float], int]:
    """Produce at ``rate`` events/s for ``seconds``; the freshness of the probes, in seconds, and the
    last probe's number (probe products are numbered after ``first_probe``: a later run starting from
    that number uses products no earlier run used; ``run`` tags the filler events' ids)."""
    pending: dict[int, float] = {}
    seen: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def poll() -> None:
        # one range query over the probe products' tiles (each probe has a product of its own)
        conn = sqlite3.connect(db, timeout=10)
        while True:
            rows = conn.execute(
                "SELECT DISTINCT item_id FROM recommndr_product_realtime_tiles WHERE item_id > ?",
                (PROBE_BASE,),
            ).fetchall()
            t = time.perf_counter()
            with lock:
                for (item,) in rows:
                    t0 = pending.pop(item, None)
                    if t0 is not None:
                        seen.append(t - t0)
                left = len(pending)
            if done.is_set() and (not left or t > stop_at):
                break
            time.sleep(0.02)
        conn.close()

    stop_at = float("inf")
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    p = producer(bootstrap)
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    t_start = time.perf_counter()
    k, probe = 0, first_probe
    while time.perf_counter() - t_start < seconds:
        due = t_start + tick * (k // per_tick)
        if due > time.perf_counter():
            time.sleep(due - time.perf_counter())
        now_ms = int(time.time() * 1000)
        for _ in range(per_tick):
            k += 1
            if k % probe_every == 0:
                probe += 1
                item = PROBE_BASE + probe
                rec = orjson.dumps({"event_id": f"p{probe}", "user_id": 1, "item_id": item, "event_type": "view",
                                    "ts": "", "ts_ms": now_ms})  # fmt: skip
                t0 = time.perf_counter()
                with lock:
                    pending[item] = t0
                p.produce(topic, rec, b"1")
            else:
                rec = orjson.dumps({"event_id": f"f{run}-{k}", "user_id": k % 5000, "item_id": k % 2000 + 1,
                                    "event_type": "view", "ts": "", "ts_ms": now_ms})  # fmt: skip
                p.produce(topic, rec, b"%d" % (k % 5000))
        p.poll(0)
    p.flush(30)
    stop_at = time.perf_counter() + 15.0
    done.set()
    poller.join(20)
    missing = len(pending)
    if missing:
        print(f"  {missing} probes not seen within 15 s of the end", file=sys.stderr)
    return seen, probe


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_500_000, help="events pre-filled for the throughput run")
    ap.add_argument("--items", type=int, default=20_000, help="products of the throughput run")
    ap.add_argument("--rate", type=float, default=1000.0, help="events/s of the freshness run")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the freshness run")
    ap.add_argument("--probe-every", type=int, default=20)
    ap.add_argument("--warmup", type=float, default=75.0,
                    help="seconds at --rate before the freshness run: the throughput run's tiles close")  # fmt: skip
    ap.add_argument("--parallelism", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--sessions", action=argparse.BooleanOptionalAction, default=True,
                    help="the job computes the shoppers' sessions too (its default)")  # fmt: skip
    ap.add_argument("--early-fire", type=float, default=1.0, help="the job's --early-fire, seconds")
    ap.add_argument("--session-fire", type=float, default=FeatureJob.session_fire_s,
                    help="the job's --session-fire, seconds")  # fmt: skip
    ap.add_argument("--checkpoint-interval", type=float, default=FeatureJob.checkpoint_interval_s,
                    help="the job's --checkpoint-interval, seconds")  # fmt: skip
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp, LocalBroker() as broker:
        root = Path(tmp)
        topic = "bench"
        create_topic(broker.bootstrap, topic, partitions=a.partitions)
        span = a.events / 20_000  # event time as a live stream at 20,000 events/s would have it, ending now
        t_build = time.perf_counter()
        records, marks = payloads(a.events, a.items, time.time() - span, span)
        print(f"built {len(records):,} records in {time.perf_counter() - t_build:.1f} s", file=sys.stderr)
        eps_in = prefill(broker.bootstrap, topic, records)
        del records
        print(f"pre-filled the topic at {eps_in:,.0f} events/s", file=sys.stderr)
        db = root / "online.db"
        job = FeatureJob(
            bootstrap=broker.bootstrap, topic=topic, store="sqlite", store_path=db,
            checkpoint_dir=root / "chk", parallelism=a.parallelism, log_path=root / "job.log",
            sessions=a.sessions, early_fire_s=a.early_fire, session_fire_s=a.session_fire,
            checkpoint_interval_s=a.checkpoint_interval,
        )  # fmt: skip
        with job:
            eps, elapsed, rates = throughput(job, db, a.events, a.timeout, a.sessions, marks)
            steady = rates[2:-2] if len(rates) > 6 else rates
            print(
                f"throughput: {a.events:,} events in {elapsed:.1f} s = {eps:,.0f} events/s end to end; "
                f"source rate per second: median {statistics.median(steady) if steady else 0:,.0f}, "
                f"min {min(steady) if steady else 0:,.0f} over {len(steady)} s",
                file=sys.stderr,
            )
            # the throughput run's tiles close (and fire a last time) once events at the freshness
            # rate move the watermark past them: that burst is the backlog's, not the rate's
            _, last = freshness(broker.bootstrap, topic, db, a.rate, a.warmup, a.probe_every, run="w")
            print(f"warmed up at {a.rate:,.0f} events/s for {a.warmup:.0f} s", file=sys.stderr)
            seen, _ = freshness(
                broker.bootstrap, topic, db, a.rate, a.seconds, a.probe_every, first_probe=last
            )
        p50, p95, p99 = pct(seen, 50), pct(seen, 95), pct(seen, 99)
        print(
            f"freshness at {a.rate:,.0f} events/s for {a.seconds:.0f} s: {len(seen)} probes, "
            f"p50 {p50:.3f} s, p95 {p95:.3f} s, p99 {p99:.3f} s, max {max(seen, default=float('nan')):.3f} s",
        )
    print(f"throughput_eps={eps:.0f} freshness_p50_s={p50:.3f} freshness_p95_s={p95:.3f}")


if __name__ == "__main__":
    main()
