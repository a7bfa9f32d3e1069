"""The event producer: ``POST /events`` to a Kafka-protocol topic, with a durable spool behind it.

Chosen by settings alone (``event_broker`` and friends): the same code talks to a local Tansu
broker (plaintext) and to the Event Hubs Kafka endpoint (SASL_SSL, PLAIN, username
``$ConnectionString``, the namespace connection string as the password). :class:`BrokerProducer`
has the event log's interface (``start``, ``stop``, ``append(events) -> ids``, ``written``), so the
API serves the same way with either.

What a 202 means stays what it meant with the local log: the events are durably accepted.

- Each event is produced with ``acks=all`` (linger a few ms, one request in flight per broker so a
  retry never reorders), keyed by ``str(user_id)`` so a shopper's events stay in one partition, in
  order. Its value is the record the event log writes (``serving.events.event_records``) plus
  ``ts_ms``, the event time in epoch milliseconds, which the Flink job reads.
- The request waits for its delivery reports. Events the broker did not confirm within
  ``event_broker_timeout_ms`` (or that failed, or every event while the broker is known to be
  down) go to the spool, an event log in ``event_spool_dir`` (group commit, fsync), and the 202
  comes after that fsync. Only when the spool fails too is the answer a 503: nothing of the
  request is then acknowledged.
- A circuit breaker: after a failure, requests go straight to the spool for
  ``event_broker_cooldown_s`` (an outage does not cost every request the timeout); after that a
  request tries the broker again, and the drainer closes the breaker as soon as it ships.
- The drainer (a background task) ships the spool to the broker: the spool's files in name order,
  from a committed offset (``drain-offset.json``, fsynced, written only after the broker confirmed
  every event of the chunk), deleting each file it has shipped whole, backing off while the broker
  is down. With several API worker processes on one spool folder only one drains at a time: the
  one holding the ``flock`` on ``.drain.lock`` (another takes over when it ends).

Delivery is at least once. An event can reach the topic twice: a crash between the broker's
confirmation and the offset commit ships the chunk again; an event whose confirmation came after
the request's timeout is both on the topic and in the spool; a drained chunk that partly failed is
shipped again whole. Each copy carries the same ``event_id`` (and the same bytes), and the
streaming job counts DISTINCT ``event_id``, so none is duplicated downstream. Spooled events reach
the topic after the live ones produced since (event time orders them again: the job's allowed
lateness). Malformed events never get here: the route validates every event first.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson

from recommndr.files import fsync_dir, write_all

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

    from recommndr.config import Settings

log = logging.getLogger(__name__)

LINGER_MS = 5
OFFSET_FILE = "drain-offset.json"
LOCK_FILE = ".drain.lock"
SPOOL_GLOB = "events-*.jsonl"
DRAIN_CHUNK_BYTES = 1 << 20  # at most this much of the spool per shipment
DRAIN_IDLE_S = 0.5  # how often the drainer looks at an empty spool
BACKLOG_COUNT_S = 1.0  # how often the drainer counts the backlog (what changed since)
BACKLOG_RECOUNT_S = 60.0  # how often it counts the whole spool again
DRAIN_BACKOFF_S = (0.5, 10.0)  # first and longest wait after a failed shipment
STOP_FLUSH_S = 5.0


class Spool(Protocol):
    """What the producer needs of its spool (``serving.events.EventLog``)."""

    root: Path

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def append_lines(self, lines: list[str]) -> None: ...


class Inc(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class Settable(Protocol):
    def set(self, value: float) -> None: ...


@dataclass
class ProducerMetrics:
    """The Prometheus series the producer moves (``serving.metrics.ApiMetrics`` owns them)."""

    produced: Inc
    spooled: Inc
    drained: Inc
    backlog: Settable
    broker_up: Settable


# the event log's records: (events, now, ts_ms=True) -> (ids, JSON lines)
Records = Callable[..., tuple[list[str], list[str]]]


def kafka_config(settings: Settings) -> dict[str, Any]:
    """The client settings every Kafka client of the project uses (bootstrap and security):
    plaintext for a local broker, SASL_SSL + PLAIN for Event Hubs. Holds the password: never log it."""
    if not settings.event_broker:
        raise ValueError("event_broker is not set")
    cfg: dict[str, Any] = {"bootstrap.servers": settings.event_broker}
    if settings.event_broker_security == "sasl_ssl":
        password = settings.event_broker_password
        if password is None:
            raise ValueError("event_broker_security=sasl_ssl needs event_broker_password")
        cfg.update({
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "PLAIN",
            "sasl.username": settings.event_broker_username,
            "sasl.password": password.get_secret_value(),
        })  # fmt: skip
    else:
        cfg["security.protocol"] = "PLAINTEXT"
    return cfg


def producer_config(settings: Settings) -> dict[str, Any]:
    """``kafka_config`` plus what the API's producer needs: acks from every in-sync replica, a
    short linger, one request in flight per broker (a retry never reorders a shopper's events),
    and messages given up about when a request stops waiting (fewer late duplicates)."""
    timeout_ms = max(int(settings.event_broker_timeout_ms), LINGER_MS + 1)
    return {
        **kafka_config(settings),
        "acks": "all",
        "linger.ms": LINGER_MS,
        "max.in.flight.requests.per.connection": 1,
        "message.timeout.ms": max(timeout_ms, 1000),
        "socket.timeout.ms": max(timeout_ms, 10_000),
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 2000,
        "queue.buffering.max.messages": 1_000_000,
        "client.id": "recommndr-api",
    }


def describe(settings: Settings) -> str:
    """Where events go, for logs and ``/ready`` (no secret)."""
    return f"{settings.event_broker_security}://{settings.event_broker}/{settings.event_topic}"


class _Batch:
    """The delivery reports of one group of messages: ``ok[i]`` is None until message ``i`` is
    reported, then whether it was delivered. ``done`` is set (on the event loop) when all are."""

    def __init__(self, n: int, loop: asyncio.AbstractEventLoop) -> None:
        self.ok: list[bool | None] = [None] * n
        self.pending = n
        self.lock = threading.Lock()  # the poll thread and the loop both count down
        self.error: str | None = None  # the first failure, in full (for the log)
        self.error_kind: str | None = None  # its kind alone (for /ready, which anyone may read)
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()
        if n == 0:
            self.done.set_result(None)

    def report(self, i: int, err: KafkaError | str | None) -> None:
        """Message ``i`` delivered (``err`` None) or not; from the poll thread or the loop."""
        with self.lock:
            self.ok[i] = err is None
            if err is not None and self.error is None:
                self.error = err if isinstance(err, str) else err.str()
                self.error_kind = err.split(":", 1)[0] if isinstance(err, str) else err.name()
            self.pending -= 1
            last = self.pending == 0
        if last:
            self.loop.call_soon_threadsafe(_settle, self.done)

    def callback(self, i: int) -> Callable[[KafkaError | None, Message], None]:
        return lambda err, _msg: self.report(i, err)


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _key(line: str | bytes) -> bytes:
    return str(orjson.loads(line)["user_id"]).encode()


class BrokerProducer:
    """``POST /events``' sink when ``event_broker`` is set (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        metrics: ProducerMetrics,
        records: Records,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.topic = settings.event_topic
        self.timeout_s = settings.event_broker_timeout_ms / 1000.0
        self.cooldown_s = settings.event_broker_cooldown_s
        self.spool = spool
        self.metrics = metrics
        self._records = records
        self._clock = clock
        self._producer: Producer | None = None
        self._poller: threading.Thread | None = None
        self._stop_polling = threading.Event()
        self._drainer: SpoolDrainer | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._down_until = 0.0  # monotonic: the breaker is open until then
        self.down_reason: str | None = None
        self.written = 0  # events acknowledged by this process (confirmed or spooled)

    # --- life ---

    async def start(self) -> None:
        """Open the spool first (a folder it cannot write fails the start: a 202 must mean
        stored), then the producer; a broker that is down now only sends events to the spool."""
        from confluent_kafka import Producer

        await self.spool.start()
        cfg = producer_config(self.settings)
        cfg["error_cb"] = self._on_error
        cfg["logger"] = logging.getLogger("recommndr.streaming.librdkafka")
        self._producer = Producer(cfg)
        self._stop_polling.clear()
        self._poller = threading.Thread(target=self._poll, name="event-producer-poll", daemon=True)
        self._poller.start()
        self.metrics.broker_up.set(1)
        self._drainer = SpoolDrainer(self.spool.root, self._ship, self.metrics, on_shipped=self._mark_up)
        self._drain_task = asyncio.create_task(self._drainer.run())
        log.info("events go to %s (spool: %s)", describe(self.settings), self.spool.root)

    async def stop(self) -> None:
        """Stop draining, wait a little for messages in flight, then close the spool."""
        if self._drain_task is not None:
            self._drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain_task
            self._drain_task = None
        if self._drainer is not None:
            self._drainer.close()
            self._drainer = None
        if self._producer is not None:
            left = await asyncio.to_thread(self._producer.flush, STOP_FLUSH_S)
            if left:
                log.warning("%d events still unconfirmed at stop (each is in the spool too)", left)
            self._stop_polling.set()
            if self._poller is not None:
                await asyncio.to_thread(self._poller.join, 5.0)
            self._producer = None
        await self.spool.stop()

    def _poll(self) -> None:
        while not self._stop_polling.is_set():
            producer = self._producer
            if producer is None:
                return
            producer.poll(0.05)  # delivery reports and errors are served here

    # --- the breaker ---

    @property
    def broker_up(self) -> bool:
        return time.monotonic() >= self._down_until

    def _mark_down(self, reason: str, detail: str | None = None) -> None:
        """The breaker opens. ``reason`` is the failure's kind (an error code's name), which
        ``/ready`` shows to anyone; ``detail`` (the client's message: broker addresses, the
        namespace) goes to the log only."""
        was_up = self.down_reason is None
        self._down_until = time.monotonic() + self.cooldown_s
        self.down_reason = reason
        self.metrics.broker_up.set(0)
        if was_up:
            log.warning("event broker %s down (%s): events go to the spool %s",
                        describe(self.settings), detail or reason, self.spool.root)  # fmt: skip

    def _mark_up(self) -> None:
        if self.down_reason is not None:
            log.info("event broker %s is back", describe(self.settings))
        self._down_until = 0.0
        self.down_reason = None
        self.metrics.broker_up.set(1)

    def _on_error(self, err: KafkaError) -> None:  # the poll thread
        from confluent_kafka import KafkaError

        if err.code() == KafkaError._ALL_BROKERS_DOWN or err.fatal():
            self._mark_down(err.name(), err.str())
        else:
            log.debug("event broker: %s", err.str())

    def status(self) -> dict[str, Any]:
        """For ``/ready``: where events go, the broker's state as this process sees it, and the
        spool's backlog (None where another worker process drains it)."""
        drainer = self._drainer
        backlog = drainer.backlog if drainer is not None and drainer.holds_lock else None
        state = "up" if self.down_reason is None else f"down ({self.down_reason})"
        return {"sink": "broker", "topic": self.topic, "broker": state, "spool_backlog": backlog}

    # --- the request path ---

    async def append(self, events: Sequence[Any]) -> list[str]:
        """Produce the events and wait for their confirmation; what is not confirmed in time goes
        to the spool. Returns their ids once all are confirmed or spooled; raises ``OSError``
        when the spool failed (nothing acknowledged)."""
        if self._producer is None:
            raise RuntimeError("event producer not started")
        ids, lines = self._records(list(events), self._clock(), ts_ms=True)
        keys = [str(e.user_id).encode() for e in events]
        unconfirmed = lines
        if self.broker_up:
            batch = self._produce(lines, keys)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(batch.done), self.timeout_s)
            ok = list(batch.ok)  # a report after this moment: the event is spooled too (a duplicate)
            unconfirmed = [line for line, good in zip(lines, ok, strict=True) if not good]
            confirmed = len(lines) - len(unconfirmed)
            if confirmed:
                self.metrics.produced.inc(confirmed)
            if unconfirmed:
                self._mark_down(
                    batch.error_kind or f"no acks within {self.timeout_s * 1000:.0f} ms", batch.error
                )
            elif self.down_reason is not None:
                self._mark_up()
        if unconfirmed:
            await self.spool.append_lines(unconfirmed)  # OSError: the route's 503
            self.metrics.spooled.inc(len(unconfirmed))
            if self._drainer is not None:
                self._drainer.added(len(unconfirmed))
        self.written += len(lines)
        return ids

    def _produce(self, lines: Sequence[str | bytes], keys: Sequence[bytes]) -> _Batch:
        """Hand the messages to the client; one that it refuses (a full queue) fails at once."""
        from confluent_kafka import KafkaException

        assert self._producer is not None
        batch = _Batch(len(lines), asyncio.get_running_loop())
        for i, (line, key) in enumerate(zip(lines, keys, strict=True)):
            try:
                self._producer.produce(self.topic, line, key, on_delivery=batch.callback(i))
            except (BufferError, KafkaException) as exc:
                batch.report(i, f"{type(exc).__name__}: {exc}")
        return batch

    async def _ship(self, lines: list[bytes]) -> bool:
        """The drainer's shipment: True once the broker confirmed every line."""
        if self._producer is None:
            return False
        batch = self._produce(lines, [_key(line) for line in lines])
        wait_s = producer_config(self.settings)["message.timeout.ms"] / 1000.0 + 5.0
        try:
            await asyncio.wait_for(asyncio.shield(batch.done), wait_s)
        except TimeoutError:
            return False
        if not all(batch.ok):
            log.info("spool shipment of %d events failed (%s); retried later", len(lines), batch.error)
            return False
        return True


# --- the drainer ---


@dataclass(frozen=True)
class Offset:
    """How far the spool is shipped: ``offset`` bytes of ``file``; every other spool file from
    its start. ``file`` None: every file from its start."""

    file: str | None = None
    offset: int = 0


def read_offset(root: Path) -> Offset:
    try:
        raw = json.loads((root / OFFSET_FILE).read_bytes())
        return Offset(raw.get("file"), int(raw.get("offset", 0)))
    except FileNotFoundError:
        return Offset()
    except (ValueError, TypeError, AttributeError) as exc:  # never lose events over a bad file:
        log.error("%s unreadable (%s): the spool is shipped again from the start", root / OFFSET_FILE, exc)
        return Offset()


def write_offset(root: Path, off: Offset) -> None:
    """Replace the offset file durably (write, fsync, rename, fsync the folder)."""
    tmp = root / f".{OFFSET_FILE}.{os.getpid()}.tmp"
    data = json.dumps({"file": off.file, "offset": off.offset}).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, data)  # one os.write may write fewer bytes, and a short offset file is unreadable
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(root / OFFSET_FILE)
    fsync_dir(root)


@dataclass
class _Chunk:
    file: str
    start: int
    end: int  # past the last complete line read
    lines: list[bytes]
    at_end: bool  # nothing but (at most) a torn tail is left after ``end``


def _read_chunk(path: Path, start: int, limit: int) -> _Chunk | None:
    """Complete lines of ``path`` from ``start`` (at most ``limit`` bytes; one longer line whole),
    read under a shared lock so no batch is seen half-written. None: the file is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        size = os.fstat(fd).st_size
        data = os.pread(fd, max(0, min(size - start, limit)), start) if size > start else b""
        cut = data.rfind(b"\n") + 1
        if cut == 0 and start + len(data) < size:  # one line longer than the limit: read it whole
            data = os.pread(fd, size - start, start)
            cut = data.rfind(b"\n") + 1
    finally:
        os.close(fd)
    end = start + cut
    lines = [line for line in data[:cut].split(b"\n") if line]
    return _Chunk(path.name, start, end, lines, at_end=end >= size or b"\n" not in data[cut:])


def _remove_if_shipped(root: Path, name: str, shipped_to: int) -> bool:
    """Delete a spool file shipped to ``shipped_to`` if nothing was appended since, under its
    exclusive lock (a writer waiting for it opens the name anew). The offset is reset first: a
    crash between that and the removal ships the file again (duplicates, never a loss)."""
    path = root / name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        if st.st_nlink == 0:
            return True
        tail = os.pread(fd, st.st_size - shipped_to, shipped_to) if st.st_size > shipped_to else b""
        if b"\n" in tail:  # appended since: keep shipping
            return False
        write_offset(root, Offset())
        path.unlink()
        fsync_dir(root)
        if tail:
            log.warning("%s: a torn tail of %d bytes (never acknowledged) removed with it", path, len(tail))
        return True
    finally:
        os.close(fd)


def _newlines(fd: int, start: int, end: int) -> int:
    n = 0
    while start < end:
        data = os.pread(fd, min(end - start, DRAIN_CHUNK_BYTES), start)
        if not data:
            break
        n += data.count(b"\n")
        start += len(data)
    return n


def count_backlog(root: Path, off: Offset) -> int:
    """Complete lines in the spool past the offset, every byte read (:class:`BacklogCounter`
    reads what changed)."""
    n = 0
    for path in sorted(root.glob(SPOOL_GLOB)):
        start = off.offset if path.name == off.file else 0
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            n += _newlines(fd, start, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    return n


_MARK_BYTES = 256  # the bytes before a counted position that say the file is still the one counted


@dataclass(frozen=True)
class _Counted:
    inode: int
    at: int  # bytes counted
    lines: int  # newlines in them
    mark: bytes  # the bytes before ``at``


class BacklogCounter:
    """:func:`count_backlog`, reading only what changed since the last count: each spool file's
    lines up to a byte stay counted while the file only grows, and the lines before the offset
    while the offset moves forward in its file. A file that shrank, or whose bytes before the
    counted position changed (made anew under its name, maybe with the inode back: events have
    ids), is counted from its start. Its size and those bytes are read under the file's shared
    lock (writers append whole batches under the exclusive one and cut a failed batch back before
    letting go, so a size seen under it holds only whole batches), the lines up to that size
    without it: a long count never holds a writer back. ``read_bytes``: what the counts read."""

    def __init__(self) -> None:
        self._files: dict[str, _Counted] = {}
        self._before: tuple[str, _Counted] | None = None  # the offset's file, and the lines before it
        self.read_bytes = 0

    def _mark(self, fd: int, at: int) -> bytes:
        data = os.pread(fd, min(at, _MARK_BYTES), max(at - _MARK_BYTES, 0))
        self.read_bytes += len(data)
        return data

    def _count(self, fd: int, kept: _Counted | None, inode: int, to: int, mark: bytes) -> _Counted:
        """Lines up to ``to`` (whose preceding bytes are ``mark``), from ``kept`` where it still holds."""
        start, lines = 0, 0
        if kept is not None and kept.inode == inode and kept.at <= to:
            if kept.at == to and kept.mark == mark:
                return kept
            if self._mark(fd, kept.at) == kept.mark:
                start, lines = kept.at, kept.lines
        lines += _newlines(fd, start, to)
        self.read_bytes += to - start
        return _Counted(inode, to, lines, mark)

    def count(self, root: Path, off: Offset) -> int:
        files: dict[str, _Counted] = {}
        total = before = 0
        for path in sorted(root.glob(SPOOL_GLOB)):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                st = os.fstat(fd)
                if st.st_nlink == 0:  # removed (shipped) since the folder was listed
                    continue
                size, to = st.st_size, min(off.offset, st.st_size) if path.name == off.file else 0
                mark_size, mark_to = (
                    self._mark(fd, size),
                    self._mark(fd, to) if path.name == off.file else b"",
                )
                fcntl.flock(fd, fcntl.LOCK_UN)
                c = files[path.name] = self._count(fd, self._files.get(path.name), st.st_ino, size, mark_size)
                total += c.lines
                if path.name == off.file:
                    b = self._before
                    kept = b[1] if b is not None and b[0] == path.name else None
                    c = self._count(fd, kept, st.st_ino, to, mark_to)
                    self._before = (path.name, c)
                    before = c.lines
            finally:
                os.close(fd)
        self._files = files
        return total - before


class SpoolDrainer:
    """Ships a spool folder with ``ship`` (True when the broker confirmed every line), one chunk
    at a time, while this process holds the folder's drain lock (see the module's docstring)."""

    def __init__(
        self,
        root: Path,
        ship: Callable[[list[bytes]], Any],
        metrics: ProducerMetrics,
        *,
        on_shipped: Callable[[], None] | None = None,
        idle_s: float = DRAIN_IDLE_S,
        backoff_s: tuple[float, float] = DRAIN_BACKOFF_S,
    ) -> None:
        self.root = Path(root)
        self.ship = ship
        self.metrics = metrics
        self.on_shipped = on_shipped
        self.idle_s = idle_s
        self.backoff_s = backoff_s
        self._lock_fd: int | None = None
        self.backlog = 0
        self.drained = 0
        self._counted_at = -math.inf
        self._counter = BacklogCounter()
        self._recounted_at = time.monotonic()

    @property
    def holds_lock(self) -> bool:
        return self._lock_fd is not None

    def try_lock(self) -> bool:
        """Take the folder's drain lock if no other process holds it."""
        if self._lock_fd is not None:
            return True
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        self._lock_fd = fd
        log.info("this process (pid %d) drains the spool %s", os.getpid(), self.root)
        return True

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock: another worker takes over
            self._lock_fd = None

    def next_chunk(self) -> _Chunk | None:
        """The next complete lines to ship, removing the files shipped whole on the way; None
        when the spool is empty."""
        off = read_offset(self.root)
        files = sorted(self.root.glob(SPOOL_GLOB))
        for path in files:
            start = off.offset if path.name == off.file else 0
            chunk = _read_chunk(path, start, DRAIN_CHUNK_BYTES)
            if chunk is None:
                continue
            if chunk.lines:
                return chunk
            if chunk.at_end:  # shipped whole (at most a torn tail, never acknowledged, is left)
                _remove_if_shipped(self.root, path.name, start)
        return None

    def added(self, n: int) -> None:
        """This process spooled ``n`` events (the backlog shows them before the next count)."""
        if self.holds_lock:
            self.backlog += n
            self.metrics.backlog.set(self.backlog)

    def count(self) -> None:
        """Count the backlog (every spooled event of every process): what changed since the last
        count, and every ``BACKLOG_RECOUNT_S`` the whole spool again."""
        if time.monotonic() - self._recounted_at >= BACKLOG_RECOUNT_S:
            self._counter = BacklogCounter()
            self._recounted_at = time.monotonic()
        self.backlog = self._counter.count(self.root, read_offset(self.root))
        self.metrics.backlog.set(self.backlog)
        self._counted_at = time.monotonic()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, counting the backlog every ``BACKLOG_COUNT_S`` meanwhile (other workers spool)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, BACKLOG_COUNT_S))
            if self.holds_lock and time.monotonic() - self._counted_at >= BACKLOG_COUNT_S:
                await asyncio.to_thread(self.count)

    def commit(self, chunk: _Chunk) -> None:
        write_offset(self.root, Offset(chunk.file, chunk.end))

    async def drain_once(self) -> Literal["empty", "shipped", "failed"]:
        """Ship one chunk (this process must hold the lock)."""
        chunk = await asyncio.to_thread(self.next_chunk)
        if chunk is None:
            self.backlog = 0
            self.metrics.backlog.set(0)
            return "empty"
        if not await self.ship(chunk.lines):
            return "failed"
        await asyncio.to_thread(self.commit, chunk)
        n = len(chunk.lines)
        self.drained += n
        self.backlog = max(0, self.backlog - n)
        self.metrics.drained.inc(n)
        self.metrics.backlog.set(self.backlog)
        if self.on_shipped is not None:
            self.on_shipped()
        return "shipped"

    async def run(self) -> None:
        """Drain while this process holds the lock; look for it again every ``idle_s``."""
        backoff = self.backoff_s[0]
        while True:
            try:
                if not await asyncio.to_thread(self.try_lock):
                    await asyncio.sleep(self.idle_s)
                    continue
                if time.monotonic() - self._counted_at >= BACKLOG_COUNT_S:  # a count now and then
                    await asyncio.to_thread(self.count)
                outcome = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or an I/O error: said, and tried again later
                log.exception("draining the spool %s failed", self.root)
                outcome = "failed"
            if outcome == "shipped":
                backoff = self.backoff_s[0]
                continue
            if outcome == "failed":
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.backoff_s[1])
            else:
                backoff = self.backoff_s[0]
                await self._sleep(self.idle_s)
