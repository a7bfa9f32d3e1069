"""The request path's access to the online store, in Feast's own record layout.

Feast writes ``user_realtime`` rows into its SQLite online store (the embedded default) or Redis
(the real one). Its Python ``get_online_features`` costs ~5 ms for 100 entities and importing Feast
~4-7 s, too much for a request budget of ~1 ms and a Functions cold start, so the API reads the
same records directly: one indexed ``SELECT`` (SQLite) or one ``HMGET`` (Redis) for the user, and
decodes the two Feast value types the view uses. ``tests`` check both directions against Feast
itself (Feast reads what this writes; this reads what Feast writes).

A store that fails is skipped for ``cooldown_s`` (a circuit breaker), so a Redis outage costs one
timeout, not one per request; the API then serves batch features only and flags it.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import mmh3

from recommndr.features.schema import FIELDS, JOIN_KEY, PROJECT, RECENT_MAX, VIEW

log = logging.getLogger(__name__)

STRING, INT64 = 2, 4  # Feast ValueType numbers used in entity keys


@dataclass
class UserRealtime:
    """One shopper's online features (product ids, not model indices)."""

    recent_items: list[int] = field(default_factory=list)  # newest first
    purchased_items: list[int] = field(default_factory=list)
    last_event_us: int = 0
    events: int = 0

    def to_values(self) -> dict[str, int | list[int]]:
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> UserRealtime:
        return cls(**{k: v for k, v in values.items() if k in FIELDS})

    def add(self, item_id: int, event_type: str, ts_us: int) -> None:
        self.recent_items = _push_front(self.recent_items, item_id)
        if event_type == "purchase":
            self.purchased_items = _push_front(self.purchased_items, item_id)
        self.last_event_us = max(self.last_event_us, ts_us)
        self.events += 1


def _push_front(items: list[int], item: int) -> list[int]:
    return [item, *(i for i in items if i != item)][:RECENT_MAX]


# --- Feast's encodings ------------------------------------------------------------------------
def entity_key(user_id: int) -> bytes:
    """Feast's entity key serialisation (version 3) for one int64 join key."""
    k = JOIN_KEY.encode()
    return (
        struct.pack("<II", 1, STRING) + struct.pack("<I", len(k)) + k + struct.pack("<IIq", INT64, 8, user_id)
    )


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 -> ten-byte two's complement, as protobuf does
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    return (result - (1 << 64) if result >= 1 << 63 else result), pos


def encode_value(value: int | Sequence[int]) -> bytes:
    """A Feast ``Value`` proto: ``int64_val`` (field 4) or ``int64_list_val`` (field 14, packed)."""
    if isinstance(value, int):
        return b"\x20" + _varint(value)
    packed = b"".join(_varint(v) for v in value)
    inner = (b"\x0a" + _varint(len(packed)) + packed) if packed else b""
    return b"\x72" + _varint(len(inner)) + inner


def decode_value(buf: bytes) -> int | list[int] | None:
    """The int64 or int64 list in a Feast ``Value`` proto (None for an unset value)."""
    if not buf:
        return None
    tag, pos = _read_varint(buf, 0)
    if tag == 0x20:
        return _read_varint(buf, pos)[0]
    if tag != 0x72:
        raise ValueError(f"unsupported Feast value (tag {tag})")
    n, pos = _read_varint(buf, pos)
    end, out = pos + n, []
    while pos < end:
        t, pos = _read_varint(buf, pos)
        if t == 0x0A:  # packed
            m, pos = _read_varint(buf, pos)
            stop = pos + m
            while pos < stop:
                v, pos = _read_varint(buf, pos)
                out.append(v)
        elif t == 0x08:  # unpacked element
            v, pos = _read_varint(buf, pos)
            out.append(v)
        else:
            raise ValueError(f"unsupported Feast list encoding (tag {t})")
    return out


def _timestamp(ts_us: int) -> bytes:
    """A ``google.protobuf.Timestamp`` (Feast's ``_ts:<view>`` hash field in Redis)."""
    s, us = divmod(ts_us, 1_000_000)
    return b"\x08" + _varint(s) + (b"\x10" + _varint(us * 1000) if us else b"")


# --- stores -------------------------------------------------------------------------------------
class OnlineStore(Protocol):
    name: str

    def read(self, user_id: int) -> UserRealtime | None: ...

    def read_many(self, user_ids: Sequence[int]) -> dict[int, UserRealtime]: ...

    def write(self, records: dict[int, UserRealtime], ts_us: int) -> None: ...

    def close(self) -> None: ...


class SqliteOnlineStore:
    """Feast's SQLite online store file: table ``<project>_<view>``, one row per feature."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.table = f'"{PROJECT}_{VIEW}"'
        self._local = threading.local()  # one connection per thread (sqlite3 objects are not shared)
        with self._conn() as c:  # the DDL `feast apply` runs: same table, harmless if it exists
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (entity_key BLOB, feature_name TEXT, value BLOB, "
                "value_text TEXT, vector_value BLOB, event_ts timestamp, created_ts timestamp, "
                "PRIMARY KEY(entity_key, feature_name))"
            )
        self._select = f"SELECT feature_name, value FROM {self.table} WHERE entity_key = ?"

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=1.0, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def read(self, user_id: int) -> UserRealtime | None:
        rows = self._conn().execute(self._select, (entity_key(user_id),)).fetchall()
        if not rows:
            return None
        return UserRealtime.from_values({name: decode_value(v) for name, v in rows})

    def read_many(self, user_ids: Sequence[int]) -> dict[int, UserRealtime]:
        out = {}
        for u in user_ids:
            r = self.read(u)
            if r is not None:
                out[u] = r
        return out

    def write(self, records: dict[int, UserRealtime], ts_us: int) -> None:
        ts, now = ts_us // 1_000_000, int(time.time())  # Feast stores epoch seconds in these columns
        rows = [
            (entity_key(u), name, encode_value(value), None, ts, now)
            for u, rec in records.items()
            for name, value in rec.to_values().items()
        ]
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany(
                f"INSERT INTO {self.table} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
                "value = excluded.value, event_ts = excluded.event_ts, created_ts = excluded.created_ts",
                rows,
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class RedisOnlineStore:
    """Feast's Redis online store: one hash per entity (key = entity key + project), a field per
    feature (murmur3 of ``<view>:<feature>``) and ``_ts:<view>``."""

    name = "redis"

    def __init__(self, url: str, timeout_s: float = 0.05) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.names = list(FIELDS)
        self.fields = [_mmh3(f"{VIEW}:{n}") for n in self.names]
        self.ts_field = f"_ts:{VIEW}"

    @staticmethod
    def key(user_id: int) -> bytes:
        return entity_key(user_id) + PROJECT.encode()

    def _decode(self, values: list[Any]) -> UserRealtime | None:
        if all(v is None for v in values):
            return None
        return UserRealtime.from_values(
            {n: decode_value(v) for n, v in zip(self.names, values, strict=True) if v is not None}
        )

    def read(self, user_id: int) -> UserRealtime | None:
        values: Any = self.client.hmget(self.key(user_id), self.fields)  # type: ignore[arg-type]
        return self._decode(values)

    def read_many(self, user_ids: Sequence[int]) -> dict[int, UserRealtime]:
        pipe = self.client.pipeline(transaction=False)
        for u in user_ids:
            pipe.hmget(self.key(u), self.fields)  # type: ignore[arg-type]
        out = {}
        for u, values in zip(user_ids, pipe.execute(), strict=True):
            r = self._decode(values)
            if r is not None:
                out[u] = r
        return out

    def write(self, records: dict[int, UserRealtime], ts_us: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        ts = _timestamp(ts_us)
        for u, rec in records.items():
            mapping: dict[bytes | str, bytes] = {self.ts_field: ts}
            for f, name in zip(self.fields, self.names, strict=True):
                mapping[f] = encode_value(getattr(rec, name))
            pipe.hset(self.key(u), mapping=mapping)  # type: ignore[arg-type]
        pipe.execute()

    def close(self) -> None:
        self.client.close()


def _mmh3(key: str) -> bytes:
    """Feast's hash-field name: murmur3 (32-bit, unsigned) as four little-endian bytes."""
    return struct.pack("<I", mmh3.hash(key, signed=False))


def open_online_store(kind: str, path: Path, redis_url: str, timeout_s: float) -> OnlineStore | None:
    if kind == "off":
        return None
    if kind == "redis":
        return RedisOnlineStore(redis_url, timeout_s)
    return SqliteOnlineStore(path)


class OnlineFeatures:
    """The API's online features: reads for the request path, updates from accepted events, and a
    circuit breaker so a failing store is skipped (batch features only) for ``cooldown_s``."""

    def __init__(self, store: OnlineStore, cooldown_s: float = 5.0) -> None:
        self.store = store
        self.cooldown_s = cooldown_s
        self._down_until = 0.0
        self.last_error: str | None = None
        self._lock = threading.Lock()  # read-modify-write of one process' updates

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + self.cooldown_s
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("online store %s unavailable for %.0f s: %s", self.store.name, self.cooldown_s, exc)

    def get(self, user_id: int) -> tuple[UserRealtime | None, bool]:
        """The user's online features and whether the store answered."""
        if not self.available:
            return None, False
        try:
            return self.store.read(user_id), True
        except Exception as exc:  # degrade: batch features only
            self._failed(exc)
            return None, False

    def record(self, events: Iterable[tuple[int, int, str, int]]) -> bool:
        """Fold accepted events ``(user_id, item_id, event_type, ts_us)`` into the users' records;
        False if the store is down (the events are in the durable log either way)."""
        by_user: dict[int, list[tuple[int, str, int]]] = {}
        for u, i, t, ts in events:
            by_user.setdefault(u, []).append((i, t, ts))
        if not self.available:
            return False
        try:
            with self._lock:
                current = self.store.read_many(list(by_user))
                latest = 0
                for u, evs in by_user.items():
                    rec = current.setdefault(u, UserRealtime())
                    for i, t, ts in sorted(evs, key=lambda e: e[2]):
                        rec.add(i, t, ts)
                        latest = max(latest, ts)
                self.store.write(current, latest)
            return True
        except Exception as exc:
            self._failed(exc)
            return False

    def close(self) -> None:
        self.store.close()
