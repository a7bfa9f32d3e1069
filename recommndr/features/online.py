"""The request path's access to the online store, in Feast's own record layout.

Feast writes ``user_realtime`` rows into its SQLite online store (the embedded default) or Redis
(the real one). Its Python ``get_online_features`` costs ~5 ms for 100 entities and importing Feast
~4-7 s, too much for a request budget of ~1 ms and a Functions cold start, so the API reads the
same records directly: one indexed ``SELECT`` (SQLite) or one ``HMGET`` (Redis) for the user, and
decodes the two Feast value types the view uses. ``tests`` check both directions against Feast
itself (Feast reads what this writes; this reads what Feast writes).

Events are folded into a user's record atomically in the store, so API workers in several
processes can update one user at once: SQLite reads and writes inside one ``BEGIN IMMEDIATE``
transaction; Redis reads, folds in Python and writes with a compare-and-set Lua script that
succeeds only if the hash still holds what was read (optimistic, retried on a conflict).

A store that fails is skipped for ``cooldown_s`` (a circuit breaker), so a Redis outage costs one
timeout, not one per request; the API then serves batch features only and flags it. Only an
outage trips it (a connection, timeout, lock or I/O error); a bad id or an undecodable record
degrades that one call.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import mmh3

from recommndr.features.schema import FIELDS, JOIN_KEY, PROJECT, RECENT_MAX, VIEW
from recommndr.sqlite_wal import connect_wal

log = logging.getLogger(__name__)

STRING, INT64 = 2, 4  # Feast ValueType numbers used in entity keys
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
Event = tuple[int, str, int]  # one user's event: item_id, event_type, ts_us


@dataclass
class UserRealtime:
    """One shopper's online features (product ids, not model indices)."""

    recent_items: list[int] = field(default_factory=list)  # newest first
    purchased_items: list[int] = field(default_factory=list)
    last_event_us: int = 0
    events: int = 0
    carted_items: list[int] = field(default_factory=list)  # newest first; absent in older records

    def to_values(self) -> dict[str, int | list[int]]:
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> UserRealtime:
        # a feature Feast stored as null (an empty Value) keeps its default
        return cls(**{k: v for k, v in values.items() if k in FIELDS and v is not None})

    def add(self, item_id: int, event_type: str, ts_us: int) -> None:
        self.recent_items = _push_front(self.recent_items, item_id)
        if event_type == "purchase":
            self.purchased_items = _push_front(self.purchased_items, item_id)
        elif event_type == "add_to_cart":
            self.carted_items = _push_front(self.carted_items, item_id)
        self.last_event_us = max(self.last_event_us, ts_us)
        self.events += 1


def _push_front(items: list[int], item: int) -> list[int]:
    return [item, *(i for i in items if i != item)][:RECENT_MAX]


def fold(record: UserRealtime | None, events: Iterable[Event]) -> UserRealtime:
    """``record`` (a new one if None) with ``events`` folded in, oldest first."""
    rec = UserRealtime() if record is None else record
    for item, kind, ts in sorted(events, key=lambda e: e[2]):
        rec.add(item, kind, ts)
    return rec


# --- Feast's encodings ------------------------------------------------------------------------
def entity_key(user_id: int, join_key: str = JOIN_KEY) -> bytes:
    """Feast's entity key serialisation (version 3) for one int64 join key (``user_id`` unless
    ``join_key`` names another, as the product view's ``item_id``)."""
    if not INT64_MIN <= user_id <= INT64_MAX:
        raise ValueError(f"{join_key} {user_id} is outside int64, the type of Feast's join key")
    k = join_key.encode()
    return (
        struct.pack("<II", 1, STRING) + struct.pack("<I", len(k)) + k + struct.pack("<IIq", INT64, 8, user_id)
    )


def _varint_slow(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 -> ten-byte two's complement, as protobuf does
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_VARINT_SMALL = tuple(_varint_slow(n) for n in range(1 << 14))  # one and two bytes: lengths, small ids
# the two bytes of 14 low bits that more bytes follow (both with the continuation bit)
_VARINT_LOW14 = tuple(bytes(((n & 0x7F) | 0x80, (n >> 7) | 0x80)) for n in range(1 << 14))


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint of an int64 (the hot path of every Feast row the job writes)."""
    if 0 <= n < 1 << 14:
        return _VARINT_SMALL[n]
    if 0 < n < 1 << 21:  # three bytes: most product ids
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    if 0 < n < 1 << 63:  # microsecond timestamps (eight bytes): 14 bits a step
        out = b""
        while n >= 1 << 14:
            out += _VARINT_LOW14[n & 0x3FFF]
            n >>= 14
        return out + _VARINT_SMALL[n]
    return _varint_slow(n)


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
        if not INT64_MIN <= value <= INT64_MAX:  # _varint would silently wrap it
            raise ValueError(f"{value} is outside int64")
        return b"\x20" + _varint(value)
    if value and not (min(value) >= INT64_MIN and max(value) <= INT64_MAX):
        raise ValueError(f"a value of {list(value)} is outside int64")
    packed = b"".join(_varint(v) for v in value)
    inner = (b"\x0a" + _varint(len(packed)) + packed) if packed else b""
    return b"\x72" + _varint(len(inner)) + inner


def encode_double(value: float) -> bytes:
    """A Feast ``Value`` proto holding ``double_val`` (field 5, fixed 64-bit)."""
    return b"\x29" + struct.pack("<d", value)


def encode_strings(values: Sequence[str]) -> bytes:
    """A Feast ``Value`` proto holding ``string_list_val`` (field 12: a ``StringList``, field 1 repeated)."""
    inner = b"".join(b"\x0a" + _varint(len(b)) + b for b in (v.encode() for v in values))
    return b"\x62" + _varint(len(inner)) + inner


def decode_strings(buf: bytes) -> list[str] | None:
    """The string list in a Feast ``Value`` proto (None for an unset value)."""
    if not buf:
        return None
    tag, pos = _read_varint(buf, 0)
    if tag != 0x62:
        raise ValueError(f"a Feast string list is expected (tag {tag})")
    n, pos = _read_varint(buf, pos)
    end, out = pos + n, []
    while pos < end:
        t, pos = _read_varint(buf, pos)
        if t != 0x0A:
            raise ValueError(f"unsupported Feast string list encoding (tag {t})")
        m, pos = _read_varint(buf, pos)
        out.append(buf[pos : pos + m].decode())
        pos += m
    return out


def decode_double(buf: bytes) -> float | None:
    """The double in a Feast ``Value`` proto (None for an unset value; an int64 reads as a float)."""
    if not buf:
        return None
    if buf[0] == 0x29 and len(buf) == 9:
        return float(struct.unpack("<d", buf[1:])[0])
    value = decode_value(buf)
    if isinstance(value, int):
        return float(value)
    raise ValueError("a Feast double value is expected")


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

    def fold_events(self, events: Mapping[int, Sequence[Event]]) -> None:
        """Fold each user's events into their stored record, atomically per user: no update from
        another process or thread is lost."""
        ...

    def close(self) -> None: ...


class OnlineStoreConflictError(RuntimeError):
    """A record kept changing under an optimistic update for every retry (a very hot user)."""


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the store itself is unreachable or failing (for every user): a
    connection, timeout, lock or I/O error, as opposed to a bad key or an undecodable record."""
    if isinstance(exc, OSError | sqlite3.OperationalError):  # incl. ConnectionError, TimeoutError
        return True
    errors = sys.modules.get("redis.exceptions")  # loaded if a Redis error can exist at all
    return errors is not None and isinstance(exc, errors.ConnectionError | errors.TimeoutError)


class SqliteOnlineStore:
    """Feast's SQLite online store file: table ``<project>_<view>``, one row per feature."""

    name = "sqlite"
    _CHUNK = 400  # entity keys per ``IN (...)``, under SQLite's bound-parameter limit

    def __init__(self, path: Path, timeout_s: float = 1.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
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
        self._upsert = (
            f"INSERT INTO {self.table} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, event_ts = excluded.event_ts, created_ts = excluded.created_ts"
        )

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_wal(self.path, self.timeout_s)
            self._local.conn = conn
        return conn

    def read(self, user_id: int) -> UserRealtime | None:
        rows = self._conn().execute(self._select, (entity_key(user_id),)).fetchall()
        if not rows:
            return None
        return UserRealtime.from_values({name: decode_value(v) for name, v in rows})

    def _select_many(self, c: sqlite3.Connection, user_ids: Sequence[int]) -> dict[int, UserRealtime]:
        users = {entity_key(u): u for u in user_ids}
        keys = list(users)
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(keys), self._CHUNK):
            chunk = keys[start : start + self._CHUNK]
            query = (
                f"SELECT entity_key, feature_name, value FROM {self.table} "
                f"WHERE entity_key IN ({','.join('?' * len(chunk))})"
            )
            for key, name, value in c.execute(query, chunk):
                found.setdefault(users[key], {})[name] = decode_value(value)
        return {u: UserRealtime.from_values(found[u]) for u in user_ids if u in found}

    def read_many(self, user_ids: Sequence[int]) -> dict[int, UserRealtime]:
        return self._select_many(self._conn(), user_ids)

    @staticmethod
    def _rows(records: Mapping[int, UserRealtime], ts_us: int | None) -> list[tuple[Any, ...]]:
        """Feast's rows; ``event_ts`` is ``ts_us`` or, if None, each user's ``last_event_us``
        (Feast stores epoch seconds in the timestamp columns)."""
        now = int(time.time())
        return [
            (entity_key(u), name, encode_value(value), None,
             (rec.last_event_us if ts_us is None else ts_us) // 1_000_000, now)
            for u, rec in records.items()
            for name, value in rec.to_values().items()
        ]  # fmt: skip

    def _transaction(self, work: Callable[[sqlite3.Connection], object]) -> None:
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")  # the write lock first: no other writer until COMMIT
        try:
            work(c)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def write(self, records: dict[int, UserRealtime], ts_us: int) -> None:
        rows = self._rows(records, ts_us)
        self._transaction(lambda c: c.executemany(self._upsert, rows))

    def fold_events(self, events: Mapping[int, Sequence[Event]]) -> None:
        for u in events:
            entity_key(u)  # a bad id fails before the lock is taken

        def update(c: sqlite3.Connection) -> None:
            current = self._select_many(c, list(events))
            records = {u: fold(current.get(u), evs) for u, evs in events.items()}
            c.executemany(self._upsert, self._rows(records, None))

        self._transaction(update)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


# Compare-and-set of one Feast hash: write the new field values only if every field still holds
# what the caller read. KEYS[1] the hash; ARGV[1] n; ARGV[2..n+1] the fields; ARGV[n+2..2n+1] what
# was read ("" for a missing field, "=" .. value otherwise); ARGV[2n+2..3n+1] the new values.
_CAS_LUA = """
local n = tonumber(ARGV[1])
local have = redis.call('HMGET', KEYS[1], unpack(ARGV, 2, n + 1))
for i = 1, n do
  local seen = have[i] and ('=' .. have[i]) or ''
  if seen ~= ARGV[n + 1 + i] then return 0 end
end
local set = {}
for i = 1, n do
  set[2 * i - 1] = ARGV[1 + i]
  set[2 * i] = ARGV[2 * n + 1 + i]
end
redis.call('HSET', KEYS[1], unpack(set))
return 1
"""


class RedisOnlineStore:
    """Feast's Redis online store: one hash per entity (key = entity key + project), a field per
    feature (murmur3 of ``<view>:<feature>``) and ``_ts:<view>``."""

    name = "redis"

    def __init__(self, url: str, timeout_s: float = 0.05, max_attempts: int = 50) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.names = list(FIELDS)
        self.fields = [_mmh3(f"{VIEW}:{n}") for n in self.names]
        self.ts_field = f"_ts:{VIEW}"
        self.max_attempts = max_attempts
        self._all_fields: list[bytes] = [*self.fields, self.ts_field.encode()]
        self._cas = self.client.register_script(_CAS_LUA)  # no round trip: the SHA is computed here

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

    def _mapping(self, rec: UserRealtime, ts_us: int) -> dict[bytes | str, bytes]:
        mapping: dict[bytes | str, bytes] = {self.ts_field: _timestamp(ts_us)}
        for f, name in zip(self.fields, self.names, strict=True):
            mapping[f] = encode_value(getattr(rec, name))
        return mapping

    def write(self, records: dict[int, UserRealtime], ts_us: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        for u, rec in records.items():
            pipe.hset(self.key(u), mapping=self._mapping(rec, ts_us))  # type: ignore[arg-type]
        pipe.execute()

    def fold_events(self, events: Mapping[int, Sequence[Event]]) -> None:
        """Optimistic per user: read the hashes (one pipeline), fold in Python, then one pipeline
        of compare-and-set scripts; the users whose hash changed meanwhile go round again."""
        from redis.exceptions import NoScriptError

        pending = {self.key(u): evs for u, evs in events.items()}
        n = len(self._all_fields)
        for attempt in range(self.max_attempts):
            keys = list(pending)
            pipe = self.client.pipeline(transaction=False)
            for k in keys:
                pipe.hmget(k, self._all_fields)  # type: ignore[arg-type]
            seen: list[list[bytes | None]] = pipe.execute()
            pipe = self.client.pipeline(transaction=False)
            for k, values in zip(keys, seen, strict=True):
                rec = fold(self._decode(values[:-1]), pending[k])
                new = self._mapping(rec, rec.last_event_us)
                expected = [b"" if v is None else b"=" + v for v in values]
                pipe.evalsha(
                    self._cas.sha, 1, k, n, *self._all_fields, *expected,
                    *(new[f] for f in self.fields), new[self.ts_field],
                )  # fmt: skip
            results = pipe.execute(raise_on_error=False)
            if any(isinstance(r, NoScriptError) for r in results):  # first use, or a SCRIPT FLUSH
                self.client.script_load(_CAS_LUA)
            for r in results:
                if isinstance(r, Exception) and not isinstance(r, NoScriptError):
                    raise r
            pending = {k: pending[k] for k, r in zip(keys, results, strict=True) if r != 1}
            if not pending:
                return
            time.sleep(random.uniform(0, 0.0005 * (attempt + 1)))  # jitter
        raise OnlineStoreConflictError(
            f"{len(pending)} user record(s) changed under each of {self.max_attempts} attempts"
        )

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


def _in_int64(*values: int) -> bool:
    return all(INT64_MIN <= v <= INT64_MAX for v in values)


class OnlineFeatures:
    """The API's online features: reads for the request path, updates from accepted events, and a
    circuit breaker so a failing store is skipped (batch features only) for ``cooldown_s``.

    Only an outage (``is_outage``) trips the breaker; any other error (a bad id, a record that
    does not decode) is logged and degrades that one call for that user."""

    def __init__(self, store: OnlineStore, cooldown_s: float = 5.0) -> None:
        self.store = store
        self.cooldown_s = cooldown_s
        self._down_until = 0.0
        self.last_error: str | None = None
        # called with every batch of accepted events before it is folded in, store up or down
        # (the API's count for the streaming consistency metric); an observer's error is logged
        self.observers: list[Callable[[Sequence[tuple[int, int, str, int]]], None]] = []

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception, what: str) -> None:
        if not is_outage(exc):
            if isinstance(exc, ValueError):  # bad input or data: the message says it all
                log.warning(
                    "online store %s: %s failed, degraded for this call: %s", self.store.name, what, exc
                )
            else:
                log.error(
                    "online store %s: %s failed, degraded for this call", self.store.name, what, exc_info=exc
                )
            return
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
            self._failed(exc, f"read of user {user_id}")
            return None, False

    def record(self, events: Iterable[tuple[int, int, str, int]]) -> bool:
        """Fold accepted events ``(user_id, item_id, event_type, ts_us)`` into the users' records,
        atomically in the store; False if not all were recorded (the store is down, or an event has
        an id outside int64: those are skipped). The events are in the durable log either way."""
        if self.observers:
            events = list(events)
            for observe in self.observers:
                try:
                    observe(events)
                except Exception:
                    log.exception("an observer of the accepted events failed")
        by_user: dict[int, list[Event]] = {}
        skipped = 0
        for u, i, t, ts in events:
            if _in_int64(u, i, ts):
                by_user.setdefault(u, []).append((i, t, ts))
            else:
                skipped += 1
        if skipped:
            log.warning(
                "online store %s: %d event(s) with an id outside int64 skipped", self.store.name, skipped
            )
        if not by_user:
            return not skipped
        if not self.available:
            return False
        try:
            self.store.fold_events(by_user)
        except Exception as exc:
            self._failed(exc, f"update of {len(by_user)} user(s)")
            return False
        return not skipped

    def close(self) -> None:
        self.store.close()
