"""Recommndr's streaming feature job: Kafka source → Flink SQL one-minute tiles → the online store.

Runs in its own virtual environment (``make flink-env``: ``flink/.venv`` with PyFlink 2.0 and the
Kafka connector jars in ``flink/jars``) with the repository root on ``PYTHONPATH``, so that the sink
writes through ``recommndr.streaming.windows`` (stdlib, mmh3 and redis only), the module that defines
the tiles, their store layout and the reference the tests compare with. ``recommndr stream job``
starts it; ``recommndr.streaming.job.FeatureJob`` starts and stops it for tests and benchmarks.

The job only wires source → SQL → sink:

- source: the topic's JSON records as the producer writes them (``event_id``, ``user_id``,
  ``item_id``, ``event_type``, ``ts`` ISO, ``ts_ms`` epoch ms); event time is ``ts_ms`` (``ts`` parsed
  as UTC when it is absent), watermark = event time − ``--out-of-orderness``. Rows without ids and
  unknown event types are ignored; records that are not JSON are skipped. With ``--backfill`` the
  source is the given files instead (the API's JSON-lines event log, or the topic's records dumped
  one a line), read once: the same SQL, so the same tiles.
- windows: per product, one-minute ``TUMBLE`` tiles of event time counting ``DISTINCT event_id`` per
  type (the producer is at-least-once: a duplicate counts once), fired early every ``--early-fire``
  and again for late events up to ``--lateness`` after the tile's end (later ones are dropped).
  Every firing carries the tile's whole count, so writing it is idempotent.
- sessions (``--sessions``, the default): no window and no state per shopper in Flink. Each valid
  event's mark ``ts_ms:item_id:k`` goes, in Arrow batches, to a vectorised Python function
  (``session_marks``), one call per bundle (``--session-fire``, 2 s: Flink's bundle timer ends one every 1–2× that,
  sooner at a checkpoint barrier or SESSION_BUNDLE_MAX marks): it adds each batch's marks to
  the shoppers' tiles in the session store at once (``SessionStore.add_marks``: a set union, so a
  duplicate or a replay changes nothing) and recomputes the sessions of the shoppers it touched. An
  event is dropped as late by the product windows' rule (its tile's end − 1 ms + the lateness at or
  behind ``CURRENT_WATERMARK``, this query's own source's watermark). Categories come from
  ``--catalogue``. Each shopper has one writer while the topic is keyed by ``user_id`` (each partition
  is read by one subtask); a backfill with sessions therefore runs at parallelism 1.
- sink: a Python function that keeps the product tiles' +I/+U rows and writes them in batches with
  ``WindowStore.write_tiles``; it flushes at the end of each bundle, which Flink finishes before a
  checkpoint barrier passes (as it finishes the marks' bundle, whose call writes before it returns),
  so every row and mark emitted before a checkpoint is in the store when the checkpoint completes;
  those after it are emitted again after a restore (their events and timers come back with the
  state, the topic's offsets with the checkpoint). The driver writes a heartbeat every ~2 s while
  events can flow (``BeatGate``: the tasks running, none restarted in the last 30 s, the Kafka sources
  connected to the broker, the windows' source reading while events wait for it).
- checkpoints every ``--checkpoint-interval`` into ``--checkpoint-dir``, retained on cancellation;
  at start the job restores from the newest completed one there (Kafka offsets and window state
  together), so after ``kill -9`` and a restart the tiles equal an uninterrupted run's.
- metrics: a Prometheus exporter on ``--metrics-port`` (``recommndr_stream_*``) fed by Flink's REST
  API of the local cluster (``rest.port``): the sink's own counters travel as Flink user metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
JARS = Path(__file__).resolve().parent / "jars"
JAR_NAMES = ("flink-connector-kafka.jar", "kafka-clients.jar")
log = logging.getLogger("recommndr.flink.job")

# the store writes' latency histogram (the sink's and the sessions' function's): Flink has no
# histogram a Python function can feed whose buckets reach Prometheus, so each counts each bucket in
# a Flink counter and the exporter rebuilds the histogram from them
WRITE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METRIC_GROUP = "recommndr"
HEARTBEAT_S = 2.0


# --- options -----------------------------------------------------------------------------------


def duration_s(text: str) -> float:
    """``500ms``, ``5s``, ``10min``, ``1h`` or a bare number of seconds."""
    t = text.strip().lower().replace(" ", "")
    for suffix, scale in (("ms", 0.001), ("min", 60.0), ("m", 60.0), ("s", 1.0), ("h", 3600.0)):
        if t.endswith(suffix):
            return float(t[: -len(suffix)]) * scale
    return float(t)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="flink/job.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    p.add_argument("--topic", default="recommndr-events")
    p.add_argument(
        "--group", default="recommndr-feature-job", help="consumer group (offsets committed on checkpoints)"
    )
    p.add_argument(
        "--security",
        choices=("plaintext", "sasl_ssl"),
        default="plaintext",
        help="sasl_ssl: Event Hubs (PLAIN, password from RECOMMNDR_EVENT_BROKER_PASSWORD)",
    )
    p.add_argument("--username", default="$ConnectionString")
    p.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    p.add_argument("--store-path", type=Path, default=Path("data/online/features.db"))
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--lateness", type=duration_s, default=600.0, help="allowed lateness after a tile's end")
    p.add_argument("--out-of-orderness", type=duration_s, default=5.0, help="watermark delay")
    p.add_argument("--early-fire", type=duration_s, default=1.0, help="how often a changing tile is emitted")
    p.add_argument("--checkpoint-dir", type=Path, default=Path("data/flink/checkpoints"))
    # 30 s, not 5: the heap state backend writes all window state at every checkpoint, and with a
    # topic's worth of open tiles that took half the job's throughput (README's Streaming figures)
    p.add_argument("--checkpoint-interval", type=duration_s, default=30.0)
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument(
        "--startup",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a job without a checkpoint starts reading",
    )
    p.add_argument("--metrics-port", type=int, default=0, help="Prometheus exporter port (0: off)")
    p.add_argument("--rest-port", type=int, default=0, help="Flink's REST port (0: a free one)")
    p.add_argument("--bundle-ms", type=int, default=100, help="longest time a row waits in the Python sink")
    p.add_argument("--session-fire", type=duration_s, default=2.0,
                   help="the sessions' bundles: Flink ends one every 1-2x this (one store write per shopper each)")  # fmt: skip
    p.add_argument("--sessions", action=argparse.BooleanOptionalAction, default=True,
                   help="also compute the shoppers' sessions (the user_session view)")  # fmt: skip
    p.add_argument("--catalogue", type=Path, default=None,
                   help="products file (Parquet/CSV) or data folder: the sessions' categories")  # fmt: skip
    p.add_argument("--backfill", type=Path, nargs="+", metavar="PATH",
                   help="replay these event files (bounded) instead of reading the topic")  # fmt: skip
    a = p.parse_args(argv)
    if a.parallelism < 1:
        p.error("--parallelism must be at least 1")
    for name in ("lateness", "out_of_orderness", "early_fire", "session_fire", "checkpoint_interval"):
        if getattr(a, name) < 0 or (name not in ("lateness", "out_of_orderness") and getattr(a, name) <= 0):
            p.error(f"--{name.replace('_', '-')} must be positive")
    if a.catalogue is not None:
        from recommndr.streaming.sessions import load_categories

        try:
            load_categories(a.catalogue)  # the sink loads it again in its worker: fail here, clearly
        except ValueError as exc:
            p.error(f"--catalogue: {exc}")
    for path in a.backfill or []:
        if not path.exists():
            p.error(f"--backfill {path}: no such file or folder")
    if a.backfill and a.sessions and a.parallelism > 1:
        # files are split over the subtasks, so one shopper's events could reach two writers
        p.error("--backfill with sessions runs at --parallelism 1 (or pass --no-sessions)")
    return a


# --- SQL ---------------------------------------------------------------------------------------


def _ms(seconds: float) -> int:
    return max(round(seconds * 1000), 0)


EVENT_COLUMNS = "event_id STRING, user_id BIGINT, item_id BIGINT, event_type STRING, ts STRING, ts_ms BIGINT"


def event_time_columns(out_of_orderness_s: float) -> str:
    """Event time from ``ts_ms``, else ``ts`` (ISO, UTC, to the second: tiles are whole minutes)."""
    return (
        "rowtime AS CASE WHEN ts_ms IS NOT NULL THEN TO_TIMESTAMP_LTZ(ts_ms, 3) "
        "ELSE CAST(TO_TIMESTAMP(REPLACE(SUBSTRING(ts FROM 1 FOR 19), 'T', ' ')) AS TIMESTAMP_LTZ(3)) END, "
        f"WATERMARK FOR rowtime AS rowtime - INTERVAL '{_ms(out_of_orderness_s) / 1000:.3f}' SECOND"
    )


def _props(options: dict[str, str]) -> str:
    return ", ".join(f"'{k}' = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in options.items())


def kafka_table_ddl(a: argparse.Namespace) -> str:
    options = {
        "connector": "kafka",
        "topic": a.topic,
        "properties.bootstrap.servers": a.bootstrap,
        "properties.group.id": a.group,
        "scan.startup.mode": "earliest-offset" if a.startup == "earliest" else "latest-offset",
        "format": "json",
        "json.ignore-parse-errors": "true",
        "json.fail-on-missing-field": "false",
        "properties.fetch.max.wait.ms": "100",  # an idle-ish topic's fetch returns within 0.1 s (freshness)
    }
    if a.security == "sasl_ssl":
        password = os.environ.get("RECOMMNDR_EVENT_BROKER_PASSWORD", "")
        if not password:
            raise SystemExit("--security sasl_ssl needs RECOMMNDR_EVENT_BROKER_PASSWORD")
        jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{a.username}" password="{password}";'
        )
        options.update({
            "properties.security.protocol": "SASL_SSL",
            "properties.sasl.mechanism": "PLAIN",
            "properties.sasl.jaas.config": jaas,
        })  # fmt: skip
    return f"CREATE TABLE events ({EVENT_COLUMNS}, {event_time_columns(a.out_of_orderness)}) WITH ({_props(options)})"


def file_table_ddls(paths: Iterable[Path], out_of_orderness_s: float) -> list[str]:
    """One bounded filesystem table per path (a file or a folder of files), and the view ``events``
    over all of them: the same columns and event time as the topic's table."""
    ddls, names = [], []
    for n, path in enumerate(paths):
        name = f"events_file_{n}"
        names.append(name)
        options = {
            "connector": "filesystem",
            "path": path.resolve().as_uri(),
            "format": "json",
            "json.ignore-parse-errors": "true",
            "json.fail-on-missing-field": "false",
        }
        ddls.append(
            f"CREATE TABLE {name} ({EVENT_COLUMNS}, {event_time_columns(out_of_orderness_s)}) WITH ({_props(options)})"
        )
    union = " UNION ALL ".join(f"SELECT * FROM {n}" for n in names)
    ddls.append(f"CREATE TEMPORARY VIEW events AS {union}")
    return ddls


# Product tiles (key item_id, end_s): a, b, c the distinct views, carts and purchases. ``views`` is a
# reserved word in Flink SQL 2.x.
VALID_EVENT = """event_id IS NOT NULL AND event_id <> '' AND item_id IS NOT NULL AND item_id >= 0
  AND event_type IN ('view', 'add_to_cart', 'purchase')"""
TILE_END = "UNIX_TIMESTAMP(DATE_FORMAT(TUMBLE_END(rowtime, INTERVAL '1' MINUTE), 'yyyy-MM-dd HH:mm:ss'))"
TILES_SQL = f"""
SELECT
  item_id AS key,
  {TILE_END} AS end_s,
  COUNT(DISTINCT event_id) FILTER (WHERE event_type = 'view') AS a,
  COUNT(DISTINCT event_id) FILTER (WHERE event_type = 'add_to_cart') AS b,
  COUNT(DISTINCT event_id) FILTER (WHERE event_type = 'purchase') AS c
FROM events
WHERE {VALID_EVENT}
GROUP BY item_id, TUMBLE(rowtime, INTERVAL '1' MINUTE)
"""
# an event's time in ms: ts_ms, else ts to the second (as the event time column takes it)
EVENT_MS = "CASE WHEN ts_ms IS NOT NULL THEN ts_ms ELSE UNIX_TIMESTAMP(REPLACE(SUBSTRING(ts FROM 1 FOR 19), 'T', ' ')) * 1000 END"


# the shoppers' marks: no window (no state per shopper in Flink), each event's mark handed to the
# Python function in Arrow batches (``session_marks``, which adds them to the session store and
# returns 0, so no row leaves this query). Whether an event counts is one flag the function is given
# (Flink may call a Python function in a WHERE clause on rows its other conditions drop): valid, and
# not late by the products' windows' rule — dropped when its tile's end − 1 ms + the lateness is at
# or behind the watermark (this query's own source's: near the limit the two may differ). The ids
# come without NULLs (COALESCE), so that pandas keeps them int64, not float64
def session_marks_sql(lateness_s: float) -> str:
    return f"""
INSERT INTO session_marks_done
SELECT user_id
FROM events
WHERE session_marks(COALESCE(user_id, -1), COALESCE({EVENT_MS}, 0), COALESCE(item_id, -1),
  SUBSTRING(event_type FROM 1 FOR 1),
  {VALID_EVENT} AND user_id IS NOT NULL AND user_id >= 0 AND {EVENT_MS} IS NOT NULL AND rowtime IS NOT NULL
  AND (CURRENT_WATERMARK(rowtime) IS NULL OR CURRENT_WATERMARK(rowtime) < TO_TIMESTAMP_LTZ(
    {EVENT_MS} - MOD({EVENT_MS}, 60000) + {60_000 + _ms(lateness_s) - 1}, 3))) < 0
"""


# --- checkpoints -------------------------------------------------------------------------------


def latest_checkpoint(root: Path) -> Path | None:
    """The newest completed checkpoint under ``root`` (``<job id>/chk-<n>/_metadata``), or None."""
    best: tuple[float, int, Path] | None = None
    for meta in root.glob("*/chk-*/_metadata"):
        try:
            key = (meta.stat().st_mtime, int(meta.parent.name.split("-", 1)[1]), meta.parent)
        except (OSError, ValueError):
            continue
        if best is None or key[:2] > best[:2]:
            best = key
    return None if best is None else best[2]


def prune_checkpoints(root: Path, keep: Path | None) -> None:
    """Delete the job folders under ``root`` other than the one holding ``keep`` (older jobs' retained
    checkpoints: a restored job writes its own from then on)."""
    for job_dir in root.iterdir() if root.is_dir() else []:
        if job_dir.is_dir() and (keep is None or job_dir != keep.parent):
            shutil.rmtree(job_dir, ignore_errors=True)


# --- sink --------------------------------------------------------------------------------------


def open_store(store: str, store_path: str, redis_url: str) -> Any:
    from recommndr.streaming.windows import RedisWindowStore, SqliteWindowStore

    if store == "redis":
        return RedisWindowStore(redis_url, timeout_s=5.0)
    return SqliteWindowStore(Path(store_path))


def open_sessions(store: str, store_path: str, redis_url: str) -> Any:
    from recommndr.streaming.sessions import RedisSessionStore, SqliteSessionStore

    if store == "redis":
        return RedisSessionStore(redis_url, timeout_s=5.0)
    return SqliteSessionStore(Path(store_path))


class WriteMetrics:
    """The store writes' counters in a Flink metric group: how many, their total time, the
    histogram's buckets and the failed tries (the sink's and the sessions' function's: the exporter
    sums each name over the job's operators)."""

    def __init__(self, group: Any) -> None:
        self.count = group.counter("write_count")
        self.sum_us = group.counter("write_sum_us")
        self.buckets = [group.counter(f"write_le_{i}") for i in range(len(WRITE_BUCKETS_S))]
        self.errors = group.counter("write_errors")

    retry_s = 0.5  # the pause between tries while the store is down

    def write(self, what: str, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, timed. While it fails for an outage of the store
        (``is_transient_write_error``: a connection refused or timing out, a locked file, a full
        disk, a Redis failing over or loading) it is tried again every ``retry_s``: a store that
        is down holds the job back, nothing accepted is dropped. Any other error (a bug, a missing
        table, refused credentials) is counted, logged and raised: the task fails and Flink restarts it from
        the last checkpoint (the writes are idempotent, so the replay changes nothing written) and
        the driver's heartbeat stops while it is not running, where retrying it in place would
        stall the job for good behind a live-looking heartbeat."""
        from recommndr.streaming.windows import is_transient_write_error

        t0 = time.perf_counter()
        while True:
            try:
                out = fn(*args)
                break
            except Exception as exc:
                self.errors.inc(1)
                if not is_transient_write_error(exc):
                    log.error(
                        "%s write failed (not an outage of the store): the task fails", what, exc_info=True
                    )
                    raise
                log.warning("%s write failed; retrying", what, exc_info=True)
                time.sleep(self.retry_s)
        dt = time.perf_counter() - t0
        self.count.inc(1)
        self.sum_us.inc(int(dt * 1e6))
        for bound, counter in zip(WRITE_BUCKETS_S, self.buckets, strict=True):
            if dt <= bound:
                counter.inc(1)
        return out


SINK_BUNDLE_MAX = 100_000  # rows in one bundle of the product tiles' sink at most
SESSION_BUNDLE_MAX = 500_000  # marks in one call of the sessions' function at most


def _python_bundle(ms: int, rows: int) -> dict[str, str]:
    """PyFlink's settings for bundles of at most ``ms`` and ``rows``, each one Arrow batch."""
    return {
        "python.fn-execution.bundle.time": str(ms),
        "python.fn-execution.bundle.size": str(rows),
        "python.fn-execution.arrow.batch.size": str(rows),
    }


def make_session_function(store: str, store_path: str, redis_url: str, catalogue: str | None) -> Any:
    """The vectorised (pandas) function ``session_marks(user_id, ts_ms, item_id, k, counts)``: each
    call is one Arrow batch (a whole bundle, 1–2× ``--session-fire`` long: Flink finishes it, and so
    this call, before a checkpoint barrier passes), whose marks (of the rows whose ``counts`` is
    true) it adds to the session store at once (``SessionStore.add_marks``); it returns 0 for every
    row."""
    from pyflink.table import DataTypes
    from pyflink.table.udf import FunctionContext, ScalarFunction, udf

    class SessionMarks(ScalarFunction):  # type: ignore[misc]
        def open(self, function_context: FunctionContext) -> None:
            from recommndr.streaming.sessions import load_categories

            self.sessions = open_sessions(store, store_path, redis_url)
            self.category = load_categories(Path(catalogue)) if catalogue else None
            group = function_context.get_metric_group().add_group(METRIC_GROUP)
            self.m_marks = group.counter("session_marks_in")
            self.m_tiles = group.counter("user_tiles_written")
            self.m_write = WriteMetrics(group)

        def eval(self, user: Any, ts_ms: Any, item: Any, kind: Any, counts: Any) -> Any:
            import numpy as np
            import pandas as pd

            n = len(user)
            keep = counts.fillna(False).to_numpy(bool)
            users = user.to_numpy()[keep].astype(np.int64)
            ms = ts_ms.to_numpy()[keep].astype(np.int64)
            items = item.to_numpy()[keep].astype(np.int64)
            kinds = kind.to_numpy()[keep]
            ends = (ms // 60_000 + 1) * 60_000_000
            marks: dict[tuple[int, int], set[Any]] = {}
            rows = zip(
                users.tolist(), ends.tolist(), ms.tolist(), items.tolist(), kinds.tolist(), strict=True
            )
            for u, e, t, i, k in rows:
                got = marks.get((u, e))
                if got is None:
                    marks[(u, e)] = got = set()
                got.add((t, i, k))
            if marks:
                self.m_tiles.inc(self.m_write.write("session", self.sessions.add_marks, marks, self.category))
            self.m_marks.inc(len(users))
            return pd.Series(np.zeros(n, dtype=np.int32))

        def close(self) -> None:
            self.sessions.close()

        def is_deterministic(self) -> bool:
            return False  # it writes the store: never folded into a constant or called twice

    return udf(
        SessionMarks(),
        input_types=[
            DataTypes.BIGINT(),
            DataTypes.BIGINT(),
            DataTypes.BIGINT(),
            DataTypes.STRING(),
            DataTypes.BOOLEAN(),
        ],
        result_type=DataTypes.INT(),
        func_type="pandas",
        deterministic=False,
    )


_FLUSH_HOOKS: list[Any] = []


def _install_bundle_hook() -> None:
    """Call the sinks' flush at the end of every bundle of the Python worker. Flink finishes the
    bundle before a checkpoint barrier passes the operator (``prepareSnapshotPreBarrier``), so this
    is what makes "written before the checkpoint completed" hold; PyFlink has no public hook for it."""
    from pyflink.fn_execution.datastream.process import operations

    base = operations.Operation
    if getattr(base, "_recommndr_hooked", False):
        return
    original = base.finish

    def finish(self: Any) -> None:
        for hook in list(_FLUSH_HOOKS):
            hook()
        original(self)

    base.finish = finish  # type: ignore[method-assign]
    base._recommndr_hooked = True  # type: ignore[attr-defined]


def make_sink(store: str, store_path: str, redis_url: str) -> Any:
    """The product tiles' sink: writes them with ``WindowStore.write_tiles``."""
    from pyflink.common import Row, RowKind
    from pyflink.datastream import ProcessFunction, RuntimeContext

    class TileSink(ProcessFunction):  # type: ignore[misc]
        """Batches the +I/+U tile rows and writes them."""

        def open(self, runtime_context: RuntimeContext) -> None:
            from recommndr.streaming.windows import Tile

            self.Tile = Tile
            self.store = open_store(store, store_path, redis_url)
            self.buffer: dict[tuple[int, int], Any] = {}
            self.lock = threading.RLock()
            self.kept = (RowKind.INSERT, RowKind.UPDATE_AFTER)
            group = runtime_context.get_metrics_group().add_group(METRIC_GROUP)
            self.m_tiles = group.counter("tiles_written")
            self.m_rows = group.counter("rows_in")
            self.m_write = WriteMetrics(group)
            self.clock_us = 0
            group.gauge("clock_us", lambda: self.clock_us)
            _install_bundle_hook()
            _FLUSH_HOOKS.append(self.flush)
            # a safety net for freshness: rows older than this are written even if no bundle ends (seen
            # once with parallelism 2: one worker's rows sat in its buffer); the bundle hook is what
            # the checkpoint guarantee rests on
            self.stop = threading.Event()
            self.error: Exception | None = None  # the timed flush's, raised on the bundle's thread
            self.timer = threading.Thread(target=self._flush_every, args=(0.5,), name="flush", daemon=True)
            self.timer.start()

        def _flush_every(self, period_s: float) -> None:
            while not self.stop.wait(period_s):
                try:
                    self.flush()
                except Exception:
                    # not an outage (those are retried in the write): this thread cannot fail the
                    # task, so it stops and the bundle's thread raises the error (``self.error``)
                    # at its next row or flush; the rows stay in the buffer
                    log.warning("timed flush failed; the task fails at its next row", exc_info=True)
                    return

        def process_element(self, value: Row, ctx: ProcessFunction.Context) -> None:
            # once per row the job emits (about one per event with sessions): the row unpacked
            # once, and nothing returned (PyFlink iterates what is returned); the row is counted
            # here, on the bundle's thread: Beam drops a counter's increment made on another
            # thread (the timed flush's)
            if self.error is not None:
                raise self.error
            if value.get_row_kind() in self.kept:
                key, end, a, b, c = value
                with self.lock:  # the end of a bundle may flush from another operator's thread
                    self.buffer[(key, end)] = (a or 0, b or 0, c or 0)
                    full = len(self.buffer) >= 20_000
                self.m_rows.inc(1)
                if full:
                    self.flush()

        def flush(self) -> None:
            with self.lock:  # the timed flush, the bundle's end and a full buffer may flush at once
                if self.error is not None:
                    raise self.error
                if not self.buffer:
                    return
                tiles = [self.Tile(i, e * 1_000_000, *c) for (i, e), c in self.buffer.items()]
                # the buffer is emptied only once written: a write that fails leaves the rows in it,
                # so a flush cannot lose them, and the checkpoint fails with the task
                try:
                    self.m_write.write("tile", self.store.write_tiles, tiles)
                except Exception as exc:
                    self.error = exc  # the task fails: no later flush (nor close) writes again
                    raise
                self.buffer = {}
                self.clock_us = max(self.clock_us, *(t.end_us for t in tiles))
            self.m_tiles.inc(len(tiles))

        def close(self) -> None:
            self.stop.set()
            try:
                if self.error is None:  # after a failed write the task is failing: its rows replay
                    self.flush()
            finally:
                if self.flush in _FLUSH_HOOKS:
                    _FLUSH_HOOKS.remove(self.flush)
                self.store.close()

    return TileSink()


# --- metrics -----------------------------------------------------------------------------------


def wanted_metric(metric_id: str) -> bool:
    """The Flink metrics the exporter reads: the Kafka source's records out and lag, the window
    operator's input watermark, and the sink's own counters (Flink user metrics)."""
    op, _, name = metric_id.partition(".")
    if op.startswith("Source__"):
        return name in ("numRecordsOut", "pendingRecords") or name.endswith("records-lag-max")
    if op.startswith("GroupWindowAggregate"):
        return name == "currentInputWatermark"
    return name.startswith(METRIC_GROUP + ".")


class FlinkRest:
    """Reads the local cluster's REST API: the running job and its vertices' aggregated metrics."""

    def __init__(self, port: int, timeout_s: float = 2.0) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.timeout_s = timeout_s

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=self.timeout_s) as r:
            return json.loads(r.read())

    def job(self) -> tuple[str, str, list[dict[str, Any]]] | None:
        jobs = self.get("/jobs/overview").get("jobs", [])
        live = [j for j in jobs if j.get("state") in ("RUNNING", "CREATED", "INITIALIZING", "RESTARTING")]
        if not live:
            return None
        j = live[0]
        return j["jid"], j["state"], self.get(f"/jobs/{j['jid']}").get("vertices", [])

    def metrics(
        self, jid: str, vid: str, wanted: Callable[[str], bool] = wanted_metric, agg: str = "sum,max"
    ) -> dict[str, dict[str, float]]:
        """``{metric id: {"sum": .., "max": ..}}`` (the aggregates ``agg`` names) over the vertex's
        subtasks, for the metrics ``wanted`` keeps."""
        # listed at each call (a scrape): a Python operator registers its metrics only when it opens,
        # with its first bundle, after the vertex's other operators registered theirs
        ids = [m["id"] for m in self.get(f"/jobs/{jid}/vertices/{vid}/subtasks/metrics") if wanted(m["id"])]
        if not ids:  # metrics appear once the operators opened and the fetcher ran
            return {}
        q = urllib.request.quote(",".join(ids), safe=",")
        rows = self.get(f"/jobs/{jid}/vertices/{vid}/subtasks/metrics?get={q}&agg={agg}")
        return {r["id"]: r for r in rows}

    def sources(self, jid: str, vertices: list[dict[str, Any]]) -> dict[str, SourceFigures]:
        """Each Kafka source vertex's figures over its subtasks (one query per source vertex; the
        metrics appear once the source opened, and a backfill has none)."""
        out = {}
        for v in vertices:
            if not v.get("name", "").startswith("Source"):
                continue
            rows = self.metrics(jid, v["id"], _source_metric, "min,sum")
            fig = SourceFigures()
            for k, r in rows.items():
                if k.endswith("KafkaConsumer.connection-count"):
                    n = _finite(r.get("min"))
                    if n is not None:
                        fig.connections = n if fig.connections is None else min(fig.connections, n)
                elif k.endswith(".numRecordsOut"):
                    fig.records = _finite(r.get("sum"))
                elif k.endswith(".pendingRecords"):
                    fig.pending = _finite(r.get("sum"))
            out[v["id"]] = fig
        return out

    def source_connections(self, jid: str, vertices: list[dict[str, Any]]) -> float | None:
        """The fewest broker connections any Kafka source subtask of the job holds (the Kafka
        consumer's ``connection-count``: 0 once it lost the broker); None while no source reports
        it."""
        return fewest_connections(self.sources(jid, vertices))

    def window_sources(self, jid: str) -> set[str]:
        """The vertices whose records the product windows take (the inputs of the window
        operator, as the job's plan has them)."""
        nodes = self.get(f"/jobs/{jid}/plan").get("plan", {}).get("nodes", [])
        return {
            i["id"]
            for n in nodes
            if "GroupWindowAggregate" in str(n.get("description", ""))
            for i in n.get("inputs", [])
            if "id" in i
        }


@dataclass
class SourceFigures:
    """A Kafka source vertex's figures: the fewest broker connections of its subtasks, the records
    it emitted and those behind the topic's end (``pendingRecords``); None where not reported."""

    connections: float | None = None
    records: float | None = None
    pending: float | None = None


def fewest_connections(figures: dict[str, SourceFigures]) -> float | None:
    """The fewest broker connections of any source's subtasks; None while none reports it."""
    found = [f.connections for f in figures.values() if f.connections is not None]
    return min(found) if found else None


def _source_metric(metric_id: str) -> bool:
    op, _, name = metric_id.partition(".")
    return op.startswith("Source__") and (
        name in ("numRecordsOut", "pendingRecords") or name.endswith("KafkaConsumer.connection-count")
    )


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class BeatGate:
    """Whether the driver may write the heartbeat, which says events can flow into the windows:
    not while a task of the job is not running, for :attr:`hold_s` after the tasks run again
    after any restart (a task that fails at every try runs for seconds between tries, and its
    region's failover keeps the job RUNNING), nor while a Kafka source holds no connection to the
    broker, nor while the windows' source emits nothing for :attr:`stuck_s` with events waiting for
    it. When that cannot be told (the REST API not answering) it lets the beat through, as
    before, except inside a restart's hold."""

    hold_s = 30.0
    stuck_s = 30.0

    def __init__(self, rest: FlinkRest) -> None:
        self.rest = rest
        self.windows_of: tuple[str, set[str]] | None = None  # the job, its windows' source vertices
        # vertex -> (records, pending, stalled since; inf: not stalled)
        self.progress: dict[str, tuple[float, float, float]] = {}
        self.restarts = 0.0  # the driver submitted the job: it starts without restarts
        self.restarted_at = -math.inf  # when the tasks ran again after the newest restart seen
        self.restarting = False  # a restart seen, its tasks not yet all running
        self.reason: str | None = None  # why the beat is held, None while it is not

    def check(self, jid: str) -> str | None:
        """Why the beat is held now (None: beat); logs each change."""
        try:
            reason = self._reason(jid)
        except Exception:  # the REST API half-answering, an unexpected shape: cannot be told
            log.debug("the job's state could not be read", exc_info=True)
            reason = self._held(time.monotonic())
        if reason != self.reason:
            if reason:
                log.warning("heartbeat paused: %s", reason)
            else:
                log.info("heartbeat resumed")
            self.reason = reason
        return reason

    def _reason(self, jid: str) -> str | None:
        found = self.rest.job()
        if found is None or found[0] != jid:
            return None
        vertices = found[2]
        rows = self.rest.get(f"/jobs/{jid}/metrics?get=numRestarts")
        restarts = next((_finite(r.get("value")) for r in rows if r.get("id") == "numRestarts"), None)
        now = time.monotonic()
        if restarts is not None:
            if restarts > self.restarts:
                self.restarting = True
                self.progress = {}  # the restarted sources count from 0 again
            self.restarts = restarts
        idle = sorted({str(v.get("status")) for v in vertices} - {"RUNNING", "FINISHED"})
        if idle:
            return f"a task is {', '.join(idle).lower()}"
        if self.restarting:  # the hold starts once the tasks run again (a restart's delay may be long)
            self.restarting = False
            self.restarted_at = now
        held = self._held(now)
        if held:
            return held
        figures = self.rest.sources(jid, vertices)
        n = fewest_connections(figures)
        if n is not None and n <= 0:
            return "a Kafka source lost the broker"
        return self._stalled(jid, figures, now)

    def _stalled(self, jid: str, figures: dict[str, SourceFigures], now: float) -> str | None:
        """Held while the windows' source has emitted nothing for :attr:`stuck_s` with events
        waiting on the topic for it all that time (a hung operator downstream holds it back); an
        idle topic is not a stall."""
        if self.windows_of is None or self.windows_of[0] != jid:
            self.windows_of = (jid, self.rest.window_sources(jid))
            self.progress = {}
            if not self.windows_of[1] & set(figures):
                log.warning("the job's plan names no Kafka source of the windows: their stalls go unseen")
        for vid in sorted(self.windows_of[1]):
            f = figures.get(vid)
            if f is None or f.records is None or f.pending is None:
                continue
            last = self.progress.get(vid)
            moved = last is None or f.records != last[0] or f.pending < last[1]  # junk read: fewer waiting
            if moved or f.pending <= 0 or last is None or last[2] == math.inf:
                # the clock runs from the first look that saw events waiting and none read since
                self.progress[vid] = (f.records, f.pending, now if f.pending > 0 else math.inf)
            elif now - last[2] >= self.stuck_s:
                return (
                    f"the windows' source has read nothing for {now - last[2]:.0f} s "
                    f"with {f.pending:.0f} events waiting"
                )
        return None

    def _held(self, now: float) -> str | None:
        if self.restarting or now - self.restarted_at < self.hold_s:
            return f"the job restarted (held {self.hold_s:.0f} s after its tasks run again)"
        return None


def stream_figures(rest: FlinkRest) -> dict[str, Any] | None:
    """The figures the exporter serves, read from Flink's REST API; None when no job runs."""
    found = rest.job()
    if found is None:
        return None
    jid, state, vertices = found
    fig: dict[str, Any] = {
        "up": state == "RUNNING", "records_in": 0.0, "pending": None, "lag_max": None, "watermark_ms": None,
        "tiles": 0.0, "user_tiles": 0.0, "writes": 0.0, "write_sum_s": 0.0, "buckets": [0.0] * len(WRITE_BUCKETS_S),
    }  # fmt: skip
    # with sessions on, two sources read the same topic (one per query): their figures are each the
    # topic's, so the records read and the lag are the largest source's, not the sum
    for v in vertices:
        for k, r in rest.metrics(jid, v["id"]).items():
            name = k.partition(".")[2]
            total, top = _finite(r.get("sum")), _finite(r.get("max"))
            if name == "numRecordsOut" and total is not None:
                fig["records_in"] = max(fig["records_in"], total)
            elif name == "pendingRecords" and total is not None and total >= 0:
                fig["pending"] = max(fig["pending"] or 0.0, total)
            elif name.endswith("records-lag-max") and top is not None and top >= 0:
                fig["lag_max"] = max(fig["lag_max"] or 0.0, top)
            elif name == "currentInputWatermark" and top is not None and top > 0:
                fig["watermark_ms"] = max(fig["watermark_ms"] or 0.0, top)
            elif name == f"{METRIC_GROUP}.tiles_written":
                fig["tiles"] += total or 0.0
            elif name == f"{METRIC_GROUP}.user_tiles_written":
                fig["user_tiles"] += total or 0.0
            elif name == f"{METRIC_GROUP}.write_count":
                fig["writes"] += total or 0.0
            elif name == f"{METRIC_GROUP}.write_sum_us":
                fig["write_sum_s"] += (total or 0.0) / 1e6
            elif name.startswith(f"{METRIC_GROUP}.write_le_"):
                fig["buckets"][int(name.rsplit("_", 1)[1])] += total or 0.0
    return fig


def start_exporter(port: int, rest: FlinkRest) -> None:
    """Serve ``recommndr_stream_*`` on ``port``, read from Flink's REST API at each scrape."""
    from prometheus_client import start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.registry import REGISTRY, Collector

    class StreamCollector(Collector):
        def collect(self) -> Iterator[Any]:
            up = GaugeMetricFamily("recommndr_stream_up", "1 while the feature job runs in Flink")
            try:
                fig = stream_figures(rest)
            except (OSError, ValueError, KeyError):
                fig = None
            up.add_metric([], 1.0 if fig and fig["up"] else 0.0)
            yield up
            if fig is None:
                return
            yield CounterMetricFamily(
                "recommndr_stream_tiles_written",
                "Tile firings written to the window store",
                value=fig["tiles"],
            )
            yield CounterMetricFamily(
                "recommndr_stream_user_tiles_written",
                "Shopper tiles changed in the session store",
                value=fig["user_tiles"],
            )
            yield CounterMetricFamily(
                "recommndr_stream_records_in", "Records the Kafka source read", value=fig["records_in"]
            )
            lag = fig["pending"] if fig["pending"] is not None else fig["lag_max"]
            if lag is not None:
                yield GaugeMetricFamily(
                    "recommndr_stream_kafka_lag_records",
                    "Records on the topic not read yet (the source's pendingRecords, else records-lag-max)",
                    value=lag,
                )
            if fig["watermark_ms"] is not None:
                yield GaugeMetricFamily(
                    "recommndr_stream_clock_lag_seconds",
                    "Wall time minus the stream's clock (the windows' watermark: newest event time - out-of-orderness)",
                    value=max(time.time() - fig["watermark_ms"] / 1000.0, 0.0),
                )
            hist = HistogramMetricFamily(
                "recommndr_stream_write_seconds",
                "Duration of the store writes (product tiles and shopper marks)",
            )
            pairs = [(f"{b:g}", c) for b, c in zip(WRITE_BUCKETS_S, fig["buckets"], strict=True)]
            hist.add_metric([], [*pairs, ("+Inf", fig["writes"])], sum_value=fig["write_sum_s"])
            yield hist

    REGISTRY.register(StreamCollector())
    start_http_server(port, addr="127.0.0.1")


# --- wiring ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(a: argparse.Namespace, restore: Path | None) -> Any:
    from pyflink.common import Configuration, Types
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import ChangelogMode, StreamTableEnvironment

    missing = [n for n in JAR_NAMES if not (JARS / n).is_file()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)} in {JARS}: run make flink-env")
    conf = Configuration()
    conf.set_string("pipeline.jars", ";".join((JARS / n).as_uri() for n in JAR_NAMES))
    conf.set_string("pipeline.name", "recommndr-feature-job" + ("-backfill" if a.backfill else ""))
    conf.set_string("parallelism.default", str(a.parallelism))
    conf.set_string("rest.port", str(a.rest_port))
    conf.set_string("rest.address", "127.0.0.1")
    conf.set_string("rest.bind-address", "127.0.0.1")
    conf.set_string("python.executable", sys.executable)
    conf.set_string("python.client.executable", sys.executable)
    for key, value in _python_bundle(max(a.bundle_ms, 1), SINK_BUNDLE_MAX).items():
        conf.set_string(key, value)
    conf.set_string("python.pythonpath", os.environ.get("PYTHONPATH") or str(ROOT))
    conf.set_string("taskmanager.numberOfTaskSlots", str(a.parallelism))
    conf.set_string("table.local-time-zone", "UTC")
    conf.set_string("metrics.fetcher.update-interval", "1000")  # the exporter's figures: at most ~1 s old
    if not a.backfill:
        a.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        conf.set_string("execution.checkpointing.interval", f"{_ms(a.checkpoint_interval)} ms")
        conf.set_string("execution.checkpointing.dir", a.checkpoint_dir.resolve().as_uri())
        conf.set_string("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
        conf.set_string("execution.checkpointing.num-retained", "2")
        conf.set_string("execution.checkpointing.min-pause", "500 ms")
        if restore is not None:
            conf.set_string("execution.state-recovery.path", restore.resolve().as_uri())
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(a.parallelism)
    t_env = StreamTableEnvironment.create(env)
    tc = t_env.get_config()
    tc.set("table.local-time-zone", "UTC")
    # a bounded backfill ends before processing-time timers fire: there each tile fires when the
    # watermark passes it and each late event fires at once (delay 0), with the same SQL and lateness
    tc.set("table.exec.emit.early-fire.enabled", "false" if a.backfill else "true")
    tc.set("table.exec.emit.early-fire.delay", f"{_ms(a.early_fire)} ms")
    tc.set("table.exec.emit.late-fire.enabled", "true")
    tc.set("table.exec.emit.late-fire.delay", "0 ms" if a.backfill else f"{_ms(a.early_fire)} ms")
    tc.set("table.exec.emit.allow-lateness", f"{_ms(a.lateness)} ms")
    # a partition with no events for this long stops holding the watermark back (the min of all)
    tc.set("table.exec.source.idle-timeout", "10 s")
    if a.backfill:
        for ddl in file_table_ddls(a.backfill, a.out_of_orderness):
            t_env.execute_sql(ddl)
    else:
        t_env.execute_sql(kafka_table_ddl(a))
    # upsert: Flink drops the -U rows before they cross to Python (they would double the sink's input)
    stream = t_env.to_changelog_stream(t_env.sql_query(TILES_SQL), changelog_mode=ChangelogMode.upsert())
    if a.sessions:
        # the marks' function gets bundles of its own (--session-fire), each one Arrow batch: one call
        # and one store transaction for all of them, one write per shopper. A Table API Python
        # operator takes the table config's Python settings when its query is translated
        t_env.create_temporary_function(
            "session_marks",
            make_session_function(
                a.store, str(a.store_path), a.redis_url, str(a.catalogue) if a.catalogue else None
            ),
        )
        t_env.execute_sql(
            "CREATE TEMPORARY TABLE session_marks_done (user_id BIGINT) WITH ('connector' = 'blackhole')"
        )
        for key, value in _python_bundle(max(_ms(a.session_fire), 1), SESSION_BUNDLE_MAX).items():
            tc.set(key, value)
        t_env.create_statement_set().add_insert_sql(session_marks_sql(a.lateness)).attach_as_datastream()
        # ... but each translation also copies the table config into the environment's, whose
        # settings the DataStream sink takes at execute(): put the sink's back there (left at the
        # sessions', the product tiles waited as long as the marks: freshness p95 ~10 s)
        back = _python_bundle(max(a.bundle_ms, 1), SINK_BUNDLE_MAX)
        env_conf = Configuration()
        for key, value in back.items():
            tc.set(key, value)
            env_conf.set_string(key, value)
        env.configure(env_conf)
    sink = make_sink(a.store, str(a.store_path), a.redis_url)
    stream.process(sink, output_type=Types.INT()).name("tile-sink").uid("tile-sink").print()
    return env


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the job's own lines keep a handler of their own: building the job sets the root logger's level
    # to WARNING (PyFlink's imports), and Beam's loopback worker replaces the root's handlers
    if not log.handlers:
        own = logging.StreamHandler(sys.stderr)
        own.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(own)
    log.setLevel(logging.INFO)
    log.propagate = False
    a = parse_args(argv)
    if not a.rest_port:
        a.rest_port = free_port()
    # one folder per topology: Flink maps a checkpoint's state to operators by ids hashed from the
    # job graph, so a checkpoint of the job without sessions cannot restore the job with them (nor
    # the other way round); a job switched over starts afresh instead of failing at every start.
    # ``-2``: the topology of 2026-12-04 (sessions without windows), which the folders of the one
    # before cannot restore
    a.checkpoint_dir = a.checkpoint_dir / ("with-sessions-2" if a.sessions else "products-only-2")
    restore = None if a.backfill else latest_checkpoint(a.checkpoint_dir)
    if restore is not None:
        log.info("restoring from %s", restore)
        prune_checkpoints(a.checkpoint_dir, restore)
    env = build(a, restore)
    from pyflink.util.java_utils import get_j_env_configuration

    # what the DataStream sink will take at execute(): the sink's bundle, not the sessions'
    sink_ms = get_j_env_configuration(env._j_stream_execution_environment).getString(
        "python.fn-execution.bundle.time", "?"
    )
    log.info("python bundles: the sink's %s ms (as the environment gives it)", sink_ms)
    if a.sessions:
        log.info("python bundles: the sessions' %d ms (as set for their query)", max(_ms(a.session_fire), 1))
    if a.backfill:
        log.info("backfill of %s", ", ".join(map(str, a.backfill)))
        env.execute("recommndr-feature-job-backfill")
        log.info("backfill done")
        return 0
    if a.metrics_port:
        start_exporter(a.metrics_port, FlinkRest(a.rest_port))
    client = env.execute_async("recommndr-feature-job")
    jid = str(client.get_job_id())
    log.info(
        "job %s running (REST http://127.0.0.1:%d, metrics :%s)", jid, a.rest_port, a.metrics_port or "off"
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # the heartbeat comes from here, not from the sink: PyFlink opens a Python function only with its
    # first bundle, so a sink on a topic without events would never beat
    store = open_store(a.store, str(a.store_path), a.redis_url)
    gate = BeatGate(FlinkRest(a.rest_port))
    beat = 0.0
    while not stop.wait(0.5):
        status = client.get_job_status().result().name  # a JobStatus enum
        if status in ("FAILED", "CANCELED", "FINISHED"):
            log.error("job %s ended: %s", jid, status)
            return 1
        if status == "RUNNING" and time.monotonic() - beat >= HEARTBEAT_S:
            # the beat says events can flow: held while they cannot, so the API reads the windows
            # as down (batch, flagged) instead of frozen ones as live
            if gate.check(jid):
                beat = time.monotonic()  # asked again in HEARTBEAT_S
                continue
            try:
                store.heartbeat()
                beat = time.monotonic()
            except Exception:
                log.warning("heartbeat failed (the store is down?)", exc_info=True)
    store.close()
    log.info("stopping job %s (its last checkpoint is kept in %s)", jid, a.checkpoint_dir)
    try:
        client.cancel().result()
    except Exception:
        log.warning("cancel failed", exc_info=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
