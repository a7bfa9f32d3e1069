"""The streaming job's product windows as the API serves them: an in-memory snapshot that a
background task refreshes, so the request path reads memory only.

:class:`StreamFeed` opens the window store beside the online store (``recommndr.streaming.windows``,
the same ``online_store`` kind, path and Redis URL) and, every ``stream_refresh_s``, reads the
stream's status, the trending index's first ``stream_snapshot_products`` and their
:class:`ProductWindows` into a :class:`StreamSnapshot`, swapped in whole. The job is *live* while
the status' wall time (``updated_us``, the job's heartbeat every ~2 s) is at most
``stream_stale_s`` old; otherwise, with no status at all, or when the store fails (logged once per
outage, never a request's error), the snapshot is *down* and ``/trending``, ``/popular``, the
cold-start list and the popularity candidates serve the batch lists, saying so.

The consistency metric: the API counts the events it accepts per product in one-minute tiles of
event time (:class:`EventCounts`, a bounded ring: the last 64 minutes of at most
:data:`RING_PRODUCTS` products, the least recently touched dropped first) — the write-through's
view — and each refresh compares the job's 1 h counts with its own over the same tiles (the tiles
ending in ``(as_of - 1 h, as_of]`` of the stream's clock) for the snapshot's products that both
know: ``recommndr_stream_consistency_ratio = sum(job) / sum(API)``, 1 when they agree. It reads
above 1 when the job also counts events that did not come through this process: with several API
workers (``--workers N``) each worker sees only its share of the events (about N), and so does
the simulator producing straight to the topic; an event posted twice with the same ``event_id``
counts twice here and once in the job (it is distinct by id).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from recommndr.config import Settings
from recommndr.features.online import OnlineStore, UserRealtime, open_online_store
from recommndr.ranking.candidates import LivePopular
from recommndr.serving.catalogue import ProductCatalogue
from recommndr.serving.metrics import ApiMetrics
from recommndr.streaming.sessions import SessionStore, UserSession, open_session_store
from recommndr.streaming.windows import (
    EVENT_COUNT,
    TILE_US,
    WINDOWS_S,
    StreamStatus,
    WindowStore,
    open_window_store,
)

log = logging.getLogger(__name__)
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
RING_PRODUCTS = 4096  # products whose accepted events the API counts (the consistency metric)
RING_USERS = 512  # recently active shoppers kept for the session-agreement metric
RING_TILES = 64  # one-minute tiles kept per product: the last hour and a few minutes of lateness
HOUR_TILES = WINDOWS_S["1h"] * 1_000_000 // TILE_US


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class LiveView:
    """A snapshot in one catalogue's dense indices: the trending products it knows (best first)
    with their scores, and its products by events in the last hour (``LivePopular``)."""

    trending: I64
    trend: npt.NDArray[np.float32]
    popular: LivePopular


@dataclass(frozen=True)
class StreamSnapshot:
    """What the API knows of the stream at ``taken_us``: ``live``, or why not (``why``); the
    status; the trending products (``item_ids``, best first) with their trend scores and their
    events in the last hour. Built by the refresh, never changed after (the views it caches per
    catalogue aside)."""

    live: bool
    why: str | None
    status: StreamStatus | None
    item_ids: I64
    trend: F64
    events_1h: I64
    candidates: int
    taken_us: int
    _views: dict[int, tuple[ProductCatalogue, LiveView]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def down(cls, why: str, status: StreamStatus | None = None) -> StreamSnapshot:
        empty = np.zeros(0, np.int64)
        return cls(False, why, status, empty, np.zeros(0), empty, 0, _now_us())

    @property
    def source(self) -> str:
        return "live" if self.live else "batch"

    @property
    def as_of(self) -> str | None:
        """The stream's clock (event time) as ISO 8601 UTC while live, else None."""
        if not self.live or self.status is None:
            return None
        return datetime.fromtimestamp(self.status.as_of_us / 1e6, UTC).isoformat().replace("+00:00", "Z")

    def view(self, catalogue: ProductCatalogue) -> LiveView | None:
        """The snapshot in ``catalogue``'s dense indices (products it does not know dropped);
        None while down. Computed once per catalogue (a model swap brings a new one)."""
        if not self.live or self.item_ids.size == 0:
            return None
        hit = self._views.get(id(catalogue))
        if hit is not None and hit[0] is catalogue:
            return hit[1]
        ids = catalogue.item_ids
        pos = np.minimum(np.searchsorted(ids, self.item_ids), ids.shape[0] - 1)
        known = ids[pos] == self.item_ids
        dense, events = pos[known].astype(np.int64), self.events_1h[known]
        by_events = np.argsort(-events, kind="stable")  # ties: the trend order
        v = LiveView(
            dense,
            self.trend[known].astype(np.float32),
            LivePopular(dense[by_events], events[by_events].astype(np.float32), self.candidates),
        )
        self._views[id(catalogue)] = (catalogue, v)  # a benign race: two threads compute the same
        return v

    def popular(self, catalogue: ProductCatalogue) -> LivePopular | None:
        v = self.view(catalogue)
        return v.popular if v is not None else None


class EventCounts:
    """The API's own count of accepted events per product in one-minute tiles of event time: a
    ring of :data:`RING_TILES` tiles for each of at most ``capacity`` products (bounded memory:
    ``capacity x RING_TILES x 12`` bytes); a product arriving when it is full takes the row of
    the one whose newest event is oldest."""

    def __init__(self, capacity: int = RING_PRODUCTS) -> None:
        self.capacity = capacity
        self.counts = np.zeros((capacity, RING_TILES), np.int32)
        self.tiles = np.full((capacity, RING_TILES), -1, np.int64)  # the tile (end_us // TILE_US) held
        self.newest = np.full(capacity, -1, np.int64)
        self.row_of: dict[int, int] = {}
        self.item_of = np.full(capacity, -1, np.int64)
        self._lock = threading.Lock()

    def add(self, events: Sequence[tuple[int, int, str, int]]) -> None:
        """Accepted events ``(user_id, item_id, event_type, ts_us)`` (what the write-through gets)."""
        with self._lock:
            for _, item, kind, ts in events:
                if kind not in EVENT_COUNT or ts < 0:
                    continue
                tile = ts // TILE_US + 1  # the index of the tile's end, as windows.tile_end_us
                row = self.row_of.get(item)
                if row is None:
                    row = self._take_row(item)
                elif tile <= self.newest[row] - RING_TILES:
                    continue  # older than the ring holds: it would overwrite a tile of the last hour
                slot = tile % RING_TILES
                if self.tiles[row, slot] != tile:
                    self.tiles[row, slot] = tile
                    self.counts[row, slot] = 0
                self.counts[row, slot] += 1
                self.newest[row] = max(self.newest[row], tile)

    def _take_row(self, item: int) -> int:
        if len(self.row_of) < self.capacity:
            row = len(self.row_of)
        else:
            row = int(np.argmin(self.newest))
            del self.row_of[int(self.item_of[row])]
            self.counts[row] = 0
            self.tiles[row] = -1
            self.newest[row] = -1
        self.row_of[item] = row
        self.item_of[row] = item
        return row

    def last_hour(self, item_ids: I64, as_of_us: int) -> I64:
        """Each product's counted events in the tiles ending in ``(as_of - 1 h, as_of]`` (0 for a
        product not counted)."""
        end = as_of_us // TILE_US
        with self._lock:
            rows = np.array([self.row_of.get(int(i), -1) for i in item_ids.tolist()], dtype=np.int64)
            out = np.zeros(item_ids.shape[0], np.int64)
            have = rows >= 0
            t = self.tiles[rows[have]]
            inside = (t > end - HOUR_TILES) & (t <= end)
            out[have] = (self.counts[rows[have]] * inside).sum(axis=1)
        return out


def session_agreement(records: dict[int, UserRealtime], sessions: dict[int, UserSession]) -> tuple[int, int]:
    """(agreeing, compared): a shopper is compared when the write-through record and the job's
    session have the same newest event time, and agrees when the session's products are the newest
    products of the record (the session holds every event since its start, so its distinct products
    newest first are the record's first ones). Times compare to the millisecond, the job's precision."""
    agree = compared = 0
    for user, s in sessions.items():
        rec = records.get(user)
        if rec is None or not s.session_items or rec.last_event_us // 1000 != s.session_last_us // 1000:
            continue
        compared += 1
        agree += rec.recent_items[: len(s.session_items)] == s.session_items
    return agree, compared


def consistency(job: I64, api: I64) -> float:
    """sum(job) / sum(API) over the products both counted (API > 0); NaN when there are none."""
    both = api > 0
    total = int(api[both].sum())
    return float(job[both].sum()) / total if total else math.nan


class StreamFeed:
    """The window store, the snapshot the request path reads and the task that refreshes it."""

    def __init__(self, settings: Settings, metrics: ApiMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.counts = EventCounts()
        self.store: WindowStore | None = None
        self.sessions: SessionStore | None = None
        self.online: OnlineStore | None = None  # the write-through's records, read in the feed's thread
        self._users: dict[int, None] = {}  # recently active shoppers, oldest first (RING_USERS)
        self._users_lock = threading.Lock()
        self._session_outage: str | None = None
        off = settings.online_store == "off"
        self.snapshot = StreamSnapshot.down("streaming off (online_store=off)" if off else "not read yet")
        # one thread: the SQLite store keeps a connection per thread
        self._pool: ThreadPoolExecutor | None = None
        self._outage: str | None = None
        self._seen_updated_us: int | None = None  # the newest status write seen (for its age)
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.online_store != "off"

    def record(self, events: Sequence[tuple[int, int, str, int]]) -> None:
        """Accepted events, counted for the consistency metrics (the write-through calls this)."""
        self.counts.add(events)
        with self._users_lock:
            users = self._users
            for user, *_ in events:
                users.pop(user, None)
                users[user] = None
            while len(users) > RING_USERS:
                del users[next(iter(users))]

    async def start(self) -> None:
        if not self.enabled:
            self._gauges()
            return
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="stream")
        await self._in_thread(self.refresh)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._pool is not None:
            await self._in_thread(self._close)
            self._pool.shutdown(wait=True)
            self._pool = None

    async def _in_thread(self, fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stream_refresh_s)
            try:
                await self._in_thread(self.refresh)
            except Exception:  # refresh handles store errors itself: this is a bug, logged, not fatal
                log.exception("the stream snapshot was not refreshed")

    def _close(self) -> None:
        for name in ("store", "sessions", "online"):
            store = getattr(self, name)
            if store is not None:
                try:
                    store.close()
                except Exception as exc:
                    log.warning("%s not closed cleanly: %s", name, exc)
                setattr(self, name, None)

    def refresh(self) -> StreamSnapshot:
        """Read the store into a new snapshot (in the feed's thread, or a test's) and publish it."""
        s = self.settings
        try:
            if self.store is None:
                self.store = open_window_store(
                    s.online_store, s.online_store_path, s.redis_url, s.stream_timeout_s
                )
            snap = self._read() if self.store is not None else StreamSnapshot.down("streaming off")
        except Exception as exc:  # the store is down: batch lists, said once per outage
            why = f"window store error: {type(exc).__name__}: {exc}"
            if self._outage is None:
                log.warning("product windows unavailable (serving the batch lists): %s", why)
            self._outage = why
            snap = StreamSnapshot.down(why, self.snapshot.status)
        else:
            if self._outage is not None:
                log.info("product windows readable again")
                self._outage = None
        if snap.live != self.snapshot.live and snap.why != "not read yet":
            if snap.live:
                log.info("trending is live (the stream's clock %s)", snap.as_of)
            elif self._outage is None:
                log.warning("trending serves the batch lists: %s", snap.why)
        self.snapshot = snap
        self._gauges()
        return snap

    def _read(self) -> StreamSnapshot:
        assert self.store is not None
        s = self.settings
        status = self.store.status()
        if status is None:
            return StreamSnapshot.down("no stream has written yet")
        self._seen_updated_us = status.updated_us
        age_s = (_now_us() - status.updated_us) / 1e6
        if age_s > s.stream_stale_s:
            return StreamSnapshot.down(f"stream down: its last write is {age_s:.0f} s old", status)
        prev = self.snapshot
        if prev.live and prev.status == status:  # nothing written since: the same lists, still live
            snap = StreamSnapshot(True, None, status, prev.item_ids, prev.trend, prev.events_1h,
                                  prev.candidates, _now_us(), prev._views)  # fmt: skip
        else:
            top = self.store.top(s.stream_snapshot_products)
            windows = self.store.read([i for i, _ in top]) if top else {}
            ids = np.array([i for i, _ in top if i in windows], dtype=np.int64)
            trend = np.array([windows[i].trend for i, _ in top if i in windows], dtype=np.float64)
            events = np.array([windows[i].events_1h for i, _ in top if i in windows], dtype=np.int64)
            order = np.lexsort((ids, -trend))  # best first, as the index orders them
            snap = StreamSnapshot(True, None, status, ids[order], trend[order], events[order],
                                  s.stream_live_candidates, _now_us())  # fmt: skip
        self.metrics.stream_consistency.set(
            consistency(snap.events_1h, self.counts.last_hour(snap.item_ids, status.as_of_us))
        )
        self._compare_sessions()
        return snap

    def _compare_sessions(self) -> None:
        """The session-agreement gauges over the recently active shoppers (their write-through
        records against the job's sessions); a store that fails leaves them NaN, logged once."""
        s, m = self.settings, self.metrics
        with self._users_lock:
            users = list(self._users)
        if not users:
            m.session_agreement.set(math.nan)
            m.sessions_compared.set(0)
            return
        try:
            if self.sessions is None:
                self.sessions = open_session_store(
                    s.online_store, s.online_store_path, s.redis_url, s.stream_timeout_s
                )
            if self.online is None:
                self.online = open_online_store(
                    s.online_store, s.online_store_path, s.redis_url, s.stream_timeout_s
                )
            if self.sessions is None or self.online is None:
                return
            agree, compared = session_agreement(
                self.online.read_many(users), self.sessions.read_sessions(users)
            )
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            if self._session_outage is None:
                log.warning("sessions not compared (the stores failed): %s", why)
            self._session_outage = why
            m.session_agreement.set(math.nan)
            m.sessions_compared.set(0)
            return
        self._session_outage = None
        m.session_agreement.set(agree / compared if compared else math.nan)
        m.sessions_compared.set(compared)

    def _gauges(self) -> None:
        m, snap = self.metrics, self.snapshot
        m.stream_live.set(1 if snap.live else 0)
        m.stream_products.set(snap.item_ids.shape[0])
        seen = self._seen_updated_us
        m.stream_age.set(math.inf if seen is None else max(0.0, (_now_us() - seen) / 1e6))
        if not snap.live:  # nothing compared while the stream is down: no stale figure stays up
            m.stream_consistency.set(math.nan)
            m.session_agreement.set(math.nan)
            m.sessions_compared.set(0)

    def describe(self) -> str:
        """For /ready: ``live`` or ``batch (why)``."""
        snap = self.snapshot
        return "live" if snap.live else f"batch ({snap.why})"
