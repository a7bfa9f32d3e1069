"""Product windows: what the streaming job computes and writes, and what the API reads back.

The job (``flink/``) counts each product's events in one-minute tiles of event time (Flink SQL
``TUMBLE``, distinct ``event_id``: an event the producer delivered twice counts once), firing each
tile early every second and again for late events within the allowed lateness. Every firing is a
:class:`Tile` carrying the tile's *whole* count so far, never an increment, so writing it is
idempotent by (product, tile end): a replay, or a restart from a checkpoint that fires a tile again,
writes the same values.

:meth:`WindowStore.write_tiles` stores the tiles and recomputes each touched product's windows
from its stored tiles, as of the stream's clock ``as_of_us`` (the newest tile end seen): views,
add-to-carts and purchases over the last hour and day, and a trending score. A tile counts in a
window of ``w`` seconds when its end lies in ``(as_of - w, as_of]``. When the clock passes into a
new tile, the products with a tile in the last hour (or so) are recomputed too, so a product nobody
touches any more falls out of the last hour as time goes on; its day count stays as of the last
recompute (``window_end_us`` says when) until its tiles are a day old, then it is recomputed once
more (to zero) and its tiles are deleted.

The rows are Feast's layout of the ``product_realtime`` view (``features.schema``): in Redis one
hash per product (entity key with join key ``item_id`` + project, a murmur3 field per feature,
``_ts:product_realtime``), in SQLite the table ``recommndr_product_realtime``. Beside them, for
the API's /trending without a scan: the trending index (a Redis sorted set / an SQLite table of
the products with at least :data:`TRENDING_MIN_EVENTS` events in the last hour, by score) and the
stream's status (the clock and the wall time of the last write, which tells the API whether the
job is alive). This module imports only the standard library, ``mmh3`` and ``redis`` (lazily): the
job runs it in its own virtual environment.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from recommndr.features.online import (
    _mmh3,
    _timestamp,
    decode_double,
    decode_value,
    encode_double,
    encode_value,
    entity_key,
)
from recommndr.features.schema import PRODUCT_FIELDS, PRODUCT_JOIN_KEY, PRODUCT_VIEW, PROJECT
from recommndr.sqlite_wal import connect_wal

log = logging.getLogger(__name__)

TILE_S = 60  # the job's tile: one minute of event time
TILE_US = TILE_S * 1_000_000
WINDOWS_S = {"1h": 3600, "24h": 86_400}
KEEP_US = WINDOWS_S["24h"] * 1_000_000 + TILE_US  # tiles older than this behind the clock are deleted
COUNTS = ("views", "carts", "purchases")  # a tile's counts, in this order
EVENT_COUNT = {"view": "views", "add_to_cart": "carts", "purchase": "purchases"}
MAX_AHEAD_US = (
    10 * 60 * 1_000_000
)  # a tile may end this far after the wall clock (clock skew; the API refuses events 5 min ahead)
TRENDING_MIN_EVENTS = 3  # events in the last hour before a product can trend (a rise from nothing is noise)
TREND_PRIOR = 1.0  # events added to both rates: a smoothed ratio


@dataclass(frozen=True, slots=True)
class Tile:
    """One product's counts in the minute of event time ending at ``end_us`` (exclusive)."""

    item_id: int
    end_us: int
    views: int
    carts: int
    purchases: int


@dataclass(frozen=True, slots=True)
class ProductWindows:
    """One product's windows, as of ``window_end_us``."""

    item_id: int
    views_1h: int
    carts_1h: int
    purchases_1h: int
    views_24h: int
    carts_24h: int
    purchases_24h: int
    trend: float
    window_end_us: int

    @property
    def events_1h(self) -> int:
        return self.views_1h + self.carts_1h + self.purchases_1h

    @property
    def events_24h(self) -> int:
        return self.views_24h + self.carts_24h + self.purchases_24h

    @property
    def trending(self) -> bool:
        return self.events_1h >= TRENDING_MIN_EVENTS

    def values(self) -> dict[str, int | float]:
        return {name: getattr(self, name) for name in PRODUCT_FIELDS}


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """The stream's clock (newest tile end seen, event time) and when it last wrote (wall time)."""

    as_of_us: int
    updated_us: int


def trend_score(events_1h: int, events_24h: int) -> float:
    """The last hour's events against the day's hourly average, smoothed by :data:`TREND_PRIOR`:
    1 for a steady product, above 1 for one that is rising (the batch ``item_trend``'s live twin)."""
    return (events_1h + TREND_PRIOR) / (events_24h / 24.0 + TREND_PRIOR)


def windows_of(item_id: int, tiles: Mapping[int, Sequence[int]], as_of_us: int) -> ProductWindows:
    """``item_id``'s windows from its tiles ``{end_us: (views, carts, purchases)}`` as of ``as_of_us``."""
    sums = {w: [0, 0, 0] for w in WINDOWS_S}
    for end, counts in tiles.items():
        if end > as_of_us:
            continue  # a tile from the clock's future (another writer's newer clock): next time
        for w, seconds in WINDOWS_S.items():
            if end > as_of_us - seconds * 1_000_000:
                s = sums[w]
                s[0] += counts[0]
                s[1] += counts[1]
                s[2] += counts[2]
    h, d = sums["1h"], sums["24h"]
    return ProductWindows(
        item_id, h[0], h[1], h[2], d[0], d[1], d[2], round(trend_score(sum(h), sum(d)), 6), as_of_us
    )


def tile_end_us(ts_us: int) -> int:
    """The end of the tile holding an event at ``ts_us``."""
    return (ts_us // TILE_US + 1) * TILE_US


def tiles_of(events: Iterable[tuple[str, int, str, int]]) -> list[Tile]:
    """Reference tiles of ``(event_id, item_id, event_type, ts_us)`` events, distinct by event id:
    what the job must produce for them (the tests' and the backfill check's yardstick)."""
    seen: set[str] = set()
    counts: dict[tuple[int, int], list[int]] = {}
    for eid, item, kind, ts in events:
        if eid in seen or kind not in EVENT_COUNT:
            continue
        seen.add(eid)
        c = counts.setdefault((item, tile_end_us(ts)), [0, 0, 0])
        c[COUNTS.index(EVENT_COUNT[kind])] += 1
    return [Tile(i, e, *c) for (i, e), c in sorted(counts.items())]


class WindowStore(Protocol):
    """Where the job writes product windows and the API reads them."""

    name: str

    def write_tiles(self, tiles: Iterable[Tile]) -> int: ...

    def tiles(self, item_id: int) -> dict[int, tuple[int, int, int]]: ...

    def read(self, item_ids: Sequence[int]) -> dict[int, ProductWindows]: ...

    def top(self, n: int) -> list[tuple[int, float]]: ...

    def status(self) -> StreamStatus | None: ...

    def heartbeat(self) -> None: ...

    def close(self) -> None: ...


def _latest(tiles: Iterable[Tile]) -> dict[tuple[int, int], Tile]:
    """The last firing of each (product, tile) in a batch (a later firing has the fuller count).
    A tile ending more than :data:`MAX_AHEAD_US` after the wall clock is left out (logged): one
    event stamped in the future would otherwise move the stream's clock past every real event."""
    out: dict[tuple[int, int], Tile] = {}
    limit = _now_us() + MAX_AHEAD_US
    ahead = 0
    for t in tiles:
        if t.item_id < 0 or t.end_us % TILE_US:
            raise ValueError(f"not a tile of product windows: {t}")
        if t.end_us > limit:
            ahead += 1
            continue
        out[(t.item_id, t.end_us)] = t
    if ahead:
        log.warning(
            "%d tile(s) ending more than %d s after the wall clock left out", ahead, MAX_AHEAD_US // 10**6
        )
    return out


def _encode(w: ProductWindows) -> dict[str, bytes]:
    return {
        name: encode_double(float(v)) if PRODUCT_FIELDS[name] == "double" else encode_value(int(v))
        for name, v in w.values().items()
    }


def _decode(item_id: int, values: Mapping[str, bytes | None]) -> ProductWindows | None:
    if all(values.get(n) is None for n in PRODUCT_FIELDS):
        return None
    out: dict[str, Any] = {}
    for name, kind in PRODUCT_FIELDS.items():
        raw = values.get(name)
        if kind == "double":
            out[name] = (decode_double(raw) if raw else None) or 0.0
        else:
            v = decode_value(raw) if raw else None
            out[name] = v if isinstance(v, int) else 0
    return ProductWindows(item_id=item_id, **out)


# Keep the stream's clock the newest any writer has seen. KEYS[1] the status hash; ARGV[1] as_of_us;
# ARGV[2] updated_us. Returns the clock kept (as its decimal text: Lua's numbers are doubles).
_CLOCK_LUA = """
local cur = redis.call('HGET', KEYS[1], 'as_of_us') or '0'
if tonumber(ARGV[1]) > tonumber(cur) then cur = ARGV[1] end
redis.call('HSET', KEYS[1], 'as_of_us', cur, 'updated_us', ARGV[2])
return cur
"""


class RedisWindowStore:
    """Product windows in Redis, beside the API's ``user_realtime`` records (same database)."""

    name = "redis"

    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.names = list(PRODUCT_FIELDS)
        self.fields = [_mmh3(f"{PRODUCT_VIEW}:{n}") for n in self.names]
        self.ts_field = f"_ts:{PRODUCT_VIEW}"
        self.index_key = f"{PROJECT}:{PRODUCT_VIEW}:trend"
        self.status_key = f"{PROJECT}:{PRODUCT_VIEW}:status"
        self.active_key = f"{PROJECT}:{PRODUCT_VIEW}:active"  # products by their newest tile's end
        self._clock = self.client.register_script(_CLOCK_LUA)
        self._as_of = 0

    @staticmethod
    def key(item_id: int) -> bytes:
        return entity_key(item_id, PRODUCT_JOIN_KEY) + PROJECT.encode()

    @staticmethod
    def tiles_key(item_id: int) -> str:
        return f"{PROJECT}:{PRODUCT_VIEW}:tiles:{item_id}"

    def tiles(self, item_id: int) -> dict[int, tuple[int, int, int]]:
        raw: Any = self.client.hgetall(self.tiles_key(item_id))
        return {int(k): _counts(v) for k, v in raw.items()}

    def write_tiles(self, tiles: Iterable[Tile]) -> int:
        latest = _latest(tiles)
        if not latest:
            return 0
        items = sorted({i for i, _ in latest})
        newest = max(e for _, e in latest)
        pipe = self.client.pipeline(transaction=False)
        for (item, end), t in latest.items():
            pipe.hset(self.tiles_key(item), str(end), f"{t.views},{t.carts},{t.purchases}")
            pipe.zadd(self.active_key, {str(item): end}, gt=True)
        pipe.execute()
        before = self._as_of
        self._as_of = int(self._clock(keys=[self.status_key], args=[newest, _now_us()]))
        touched = set(items)
        gone: list[int] = []
        if self._as_of // TILE_US != before // TILE_US:  # the clock moved on: what it changes
            decaying: Any = self.client.zrangebyscore(self.active_key, _decaying_after(before), "+inf")
            expired: Any = self.client.zrangebyscore(self.active_key, "-inf", self._as_of - KEEP_US)
            gone = [int(m) for m in expired]
            touched.update(int(m) for m in decaying)
            touched.update(gone)
        self._recompute(sorted(touched))
        if gone:
            self.client.zrem(self.active_key, *(str(i) for i in gone))
        return len(items)

    def _recompute(self, items: list[int]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            pipe.hgetall(self.tiles_key(item))
        all_tiles: list[Any] = pipe.execute()
        as_of, ts = self._as_of, _timestamp(self._as_of)
        pipe = self.client.pipeline(transaction=False)
        for item, raw in zip(items, all_tiles, strict=True):
            tiles = {int(k): _counts(v) for k, v in raw.items()}
            old = [str(e) for e in tiles if e <= as_of - KEEP_US]
            if old:
                pipe.hdel(self.tiles_key(item), *old)
            w = windows_of(item, tiles, as_of)
            enc = _encode(w)
            mapping: dict[bytes | str, bytes] = {self.ts_field: ts}
            for f, name in zip(self.fields, self.names, strict=True):
                mapping[f] = enc[name]
            pipe.hset(self.key(item), mapping=mapping)  # type: ignore[arg-type]
            if w.trending:
                pipe.zadd(self.index_key, {str(item): w.trend})
            else:
                pipe.zrem(self.index_key, str(item))
        pipe.execute()

    def read(self, item_ids: Sequence[int]) -> dict[int, ProductWindows]:
        pipe = self.client.pipeline(transaction=False)
        for i in item_ids:
            pipe.hmget(self.key(i), self.fields)  # type: ignore[arg-type]
        out = {}
        for i, values in zip(item_ids, pipe.execute(), strict=True):
            w = _decode(i, dict(zip(self.names, values, strict=True)))
            if w is not None:
                out[i] = w
        return out

    def top(self, n: int) -> list[tuple[int, float]]:
        """The ``n`` products of the trending index with the highest scores, best first."""
        raw: Any = self.client.zrevrange(self.index_key, 0, max(n, 1) - 1, withscores=True)
        return [(int(m), float(s)) for m, s in raw]

    def status(self) -> StreamStatus | None:
        raw: Any = self.client.hmget(self.status_key, ["as_of_us", "updated_us"])
        if raw[0] is None:
            return None
        return StreamStatus(int(raw[0]), int(raw[1] or 0))

    def heartbeat(self) -> None:
        """Say the job is alive (``updated_us`` = now) without moving the clock: the job calls it every
        few seconds, with or without events, so the API tells "no events" from "job down". Before the
        first tile the status reads as ``as_of_us`` 0."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hsetnx(self.status_key, "as_of_us", "0")
        pipe.hset(self.status_key, "updated_us", str(_now_us()))
        pipe.execute()

    def close(self) -> None:
        self.client.close()


def _decaying_after(before_us: int) -> int:
    """Products with a tile ending after this had it in their last hour as of the clock before its
    move (``before_us``; 0 for a writer that just started: every product is then recomputed once),
    so the move may change their hour however far it jumps."""
    return before_us - WINDOWS_S["1h"] * 1_000_000 - TILE_US


def _counts(v: bytes | str) -> tuple[int, int, int]:
    text = v.decode() if isinstance(v, bytes) else v
    a, b, c = (int(x) for x in text.split(","))
    return a, b, c


# SQLite's primary result codes of a store that is busy, locked, short of disk or unreachable
_SQLITE_TRANSIENT = frozenset(
    getattr(sqlite3, n)
    for n in (
        "SQLITE_BUSY",
        "SQLITE_LOCKED",
        "SQLITE_IOERR",
        "SQLITE_FULL",
        "SQLITE_CANTOPEN",
        "SQLITE_PROTOCOL",
    )
)
# Redis errors of a server that is failing over, loading, out of memory or unable to persist
_REDIS_TRANSIENT = (
    "ReadOnlyError",
    "TryAgainError",
    "ClusterDownError",
    "OutOfMemoryError",
    "BusyLoadingError",
)
_REDIS_TRANSIENT_REPLIES = ("MISCONF", "LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "OOM")


def is_transient_write_error(exc: BaseException) -> bool:
    """Whether a store write failed for the store's state, worth trying again as it is (an
    outage: a connection refused or timing out, a locked file, a full disk, a Redis failing over,
    loading, out of memory or unable to persist), as opposed to an error the same write meets again
    (a bug, a missing table or column, refused credentials or permissions)."""
    if isinstance(exc, sqlite3.OperationalError):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_TRANSIENT
    if isinstance(exc, sqlite3.Error | PermissionError):
        return False
    errors = sys.modules.get("redis.exceptions")  # loaded if a Redis error can exist at all
    if errors is not None and isinstance(exc, errors.RedisError):
        return not isinstance(exc, errors.AuthenticationError | errors.AuthorizationError) and (
            isinstance(exc, errors.ConnectionError | errors.TimeoutError)
            or any(isinstance(exc, getattr(errors, n, ())) for n in _REDIS_TRANSIENT)
            or (isinstance(exc, errors.ResponseError) and str(exc).startswith(_REDIS_TRANSIENT_REPLIES))
        )
    return isinstance(exc, OSError)  # incl. ConnectionError, TimeoutError


def _now_us() -> int:
    return time.time_ns() // 1000


class SqliteFeastFile:
    """What the SQLite stores of the streaming job share: a connection per thread to the online store
    file (WAL), one Feast view's table ``<project>_<view>`` (Feast's own columns), its upsert and
    its chunked read by entity key."""

    def __init__(self, path: Path, view: str, timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.table = f'"{PROJECT}_{view}"'
        self._local = threading.local()
        self._conn().execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (entity_key BLOB, feature_name TEXT, value BLOB, "
            "value_text TEXT, vector_value BLOB, event_ts timestamp, created_ts timestamp, "
            "PRIMARY KEY(entity_key, feature_name))"
        )

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_wal(self.path, self.timeout_s)
            self._local.conn = conn
        return conn

    def _upsert_feast(self, c: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Feast rows ``(entity_key, feature_name, value, value_text, event_ts, created_ts)``."""
        c.executemany(
            f"INSERT INTO {self.table} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, event_ts = excluded.event_ts, created_ts = excluded.created_ts",
            rows,
        )

    def _read_feast(self, keys: Mapping[bytes, int]) -> dict[int, dict[str, bytes | None]]:
        """``{id: {feature: value}}`` of the entities ``keys`` maps (entity key → id) that have rows."""
        found: dict[int, dict[str, bytes | None]] = {}
        klist = list(keys)
        for start in range(0, len(klist), 400):
            chunk = klist[start : start + 400]
            rows = self._conn().execute(
                f"SELECT entity_key, feature_name, value FROM {self.table} "
                f"WHERE entity_key IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for k, name, value in rows:
                found.setdefault(keys[k], {})[name] = value
        return found

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class SqliteWindowStore(SqliteFeastFile):
    """Product windows in the SQLite online store file (Feast's table ``recommndr_product_realtime``),
    with the tiles, the trending index and the status in tables of their own beside it."""

    name = "sqlite"

    def __init__(self, path: Path, timeout_s: float = 5.0) -> None:
        super().__init__(path, PRODUCT_VIEW, timeout_s)
        self._as_of = 0
        with self._conn() as c:
            c.execute(
                f'CREATE TABLE IF NOT EXISTS "{PROJECT}_{PRODUCT_VIEW}_tiles" (item_id INTEGER, end_us INTEGER, '
                "views INTEGER, carts INTEGER, purchases INTEGER, PRIMARY KEY(item_id, end_us))"
            )
            c.execute(
                f'CREATE INDEX IF NOT EXISTS "{PROJECT}_{PRODUCT_VIEW}_tiles_by_end" '
                f'ON "{PROJECT}_{PRODUCT_VIEW}_tiles" (end_us)'
            )
            c.execute(
                f'CREATE TABLE IF NOT EXISTS "{PROJECT}_{PRODUCT_VIEW}_trend" '
                "(item_id INTEGER PRIMARY KEY, trend REAL)"
            )
            c.execute(
                f'CREATE INDEX IF NOT EXISTS "{PROJECT}_{PRODUCT_VIEW}_trend_by_score" '
                f'ON "{PROJECT}_{PRODUCT_VIEW}_trend" (trend DESC)'
            )
            c.execute(
                f'CREATE TABLE IF NOT EXISTS "{PROJECT}_{PRODUCT_VIEW}_status" '
                "(id INTEGER PRIMARY KEY CHECK (id = 0), as_of_us INTEGER, updated_us INTEGER)"
            )
        self.tiles_table = f'"{PROJECT}_{PRODUCT_VIEW}_tiles"'
        self.trend_table = f'"{PROJECT}_{PRODUCT_VIEW}_trend"'
        self.status_table = f'"{PROJECT}_{PRODUCT_VIEW}_status"'

    @staticmethod
    def key(item_id: int) -> bytes:
        return entity_key(item_id, PRODUCT_JOIN_KEY)

    def tiles(self, item_id: int) -> dict[int, tuple[int, int, int]]:
        rows = self._conn().execute(
            f"SELECT end_us, views, carts, purchases FROM {self.tiles_table} WHERE item_id = ?", (item_id,)
        )
        return {e: (v, c, p) for e, v, c, p in rows}

    def write_tiles(self, tiles: Iterable[Tile]) -> int:
        latest = _latest(tiles)
        if not latest:
            return 0
        items = sorted({i for i, _ in latest})
        newest = max(e for _, e in latest)
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany(
                f"INSERT INTO {self.tiles_table} VALUES (?, ?, ?, ?, ?) ON CONFLICT(item_id, end_us) DO UPDATE "
                "SET views = excluded.views, carts = excluded.carts, purchases = excluded.purchases",
                [(t.item_id, t.end_us, t.views, t.carts, t.purchases) for t in latest.values()],
            )
            row = c.execute(f"SELECT as_of_us FROM {self.status_table} WHERE id = 0").fetchone()
            before = self._as_of
            self._as_of = max(newest, row[0] if row else 0)
            c.execute(
                f"INSERT INTO {self.status_table} VALUES (0, ?, ?) ON CONFLICT(id) DO UPDATE "
                "SET as_of_us = excluded.as_of_us, updated_us = excluded.updated_us",
                (self._as_of, _now_us()),
            )
            touched = set(items)
            if self._as_of // TILE_US != before // TILE_US:  # the clock moved on: what it changes
                for sql, arg in ((f"SELECT DISTINCT item_id FROM {self.tiles_table} WHERE end_us > ?",
                                  _decaying_after(before)),
                                 (f"SELECT DISTINCT item_id FROM {self.tiles_table} WHERE end_us <= ?",
                                  self._as_of - KEEP_US)):  # fmt: skip
                    touched.update(i for (i,) in c.execute(sql, (arg,)))
            self._recompute(c, sorted(touched))
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return len(items)

    def _recompute(self, c: sqlite3.Connection, items: list[int]) -> None:
        as_of = self._as_of
        c.execute(f"DELETE FROM {self.tiles_table} WHERE end_us <= ?", (as_of - KEEP_US,))
        by_item: dict[int, dict[int, tuple[int, int, int]]] = {i: {} for i in items}
        for start in range(0, len(items), 400):
            chunk = items[start : start + 400]
            rows = c.execute(
                f"SELECT item_id, end_us, views, carts, purchases FROM {self.tiles_table} "
                f"WHERE item_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for i, e, v, ca, p in rows:
                by_item[i][e] = (v, ca, p)
        now_s = int(time.time())
        feast_rows: list[tuple[Any, ...]] = []
        trend_rows: list[tuple[int, float]] = []
        not_trending: list[tuple[int]] = []
        for item in items:
            w = windows_of(item, by_item[item], as_of)
            key = self.key(item)
            feast_rows.extend(
                (key, name, value, None, as_of // 1_000_000, now_s) for name, value in _encode(w).items()
            )
            if w.trending:
                trend_rows.append((item, w.trend))
            else:
                not_trending.append((item,))
        self._upsert_feast(c, feast_rows)
        c.executemany(
            f"INSERT INTO {self.trend_table} VALUES (?, ?) ON CONFLICT(item_id) DO UPDATE SET trend = excluded.trend",
            trend_rows,
        )
        c.executemany(f"DELETE FROM {self.trend_table} WHERE item_id = ?", not_trending)

    def read(self, item_ids: Sequence[int]) -> dict[int, ProductWindows]:
        found = self._read_feast({self.key(i): i for i in item_ids})
        out = {}
        for i in item_ids:
            if i in found:
                w = _decode(i, found[i])
                if w is not None:
                    out[i] = w
        return out

    def top(self, n: int) -> list[tuple[int, float]]:
        rows = self._conn().execute(
            f"SELECT item_id, trend FROM {self.trend_table} ORDER BY trend DESC, item_id LIMIT ?",
            (max(n, 1),),
        )
        return [(int(i), float(t)) for i, t in rows]

    def status(self) -> StreamStatus | None:
        row = (
            self._conn()
            .execute(f"SELECT as_of_us, updated_us FROM {self.status_table} WHERE id = 0")
            .fetchone()
        )
        return None if row is None else StreamStatus(int(row[0]), int(row[1]))

    def heartbeat(self) -> None:
        """Say the job is alive (``updated_us`` = now) without moving the clock (see
        :meth:`RedisWindowStore.heartbeat`)."""
        self._conn().execute(
            f"INSERT INTO {self.status_table} VALUES (0, 0, ?) ON CONFLICT(id) DO UPDATE "
            "SET updated_us = excluded.updated_us",
            (_now_us(),),
        )


def open_window_store(kind: str, path: Path, redis_url: str, timeout_s: float = 1.0) -> WindowStore | None:
    """The product-window store beside the online store of ``kind`` (None when it is ``off``)."""
    if kind == "off":
        return None
    if kind == "redis":
        return RedisWindowStore(redis_url, timeout_s)
    return SqliteWindowStore(path)
