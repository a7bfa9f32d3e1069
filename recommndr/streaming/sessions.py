"""Shopper sessions: what the streaming job computes per shopper, and what the API reads back.

Beside the product tiles (``windows.py``) the job hands each shopper's events to the session store
as *marks* ``<ts_ms>:<item_id>:<k>`` (``k``: ``v`` view, ``a`` add-to-cart, ``p`` purchase), in
batches (no window in Flink). The store keeps per shopper one-minute tiles of event time, each the
set of its events' marks and how many distinct marks it has seen (:class:`UserTile`), and
:meth:`SessionStore.add_marks` adds a batch to them (:func:`merge_marks`, a set union: an event the
producer delivered twice, or replayed after a restore, has the same mark, so it counts once and
writing it again changes nothing). Two events of one kind on one product by one shopper within the
same millisecond are one mark.

After each batch the store recomputes each touched shopper's
session (:func:`session_of`): the run of their events, ending at the newest, in which no two
consecutive events are more than :data:`SESSION_GAP_S` apart, cut to the tiles ending within
:data:`SESSION_MAX_S` of the newest tile (a shopper's tiles older than that are deleted, so what is
kept per shopper is bounded; the tiles of a shopper none of whose tiles was written for
:data:`REDIS_TILES_TTL_S` go too, their session staying: Redis expires the shopper's hash of tiles,
SQLite sweeps them once a minute and ignores them until then). A session's products are its distinct products newest first (at most
``RECENT_MAX``), its categories their ``category_l2`` newest first (at most
:data:`SESSION_CATEGORIES_MAX`; empty when the job was given no catalogue), with its number of events
and its first and last event times. A tile keeps at most :data:`MARKS_PER_TILE` marks, its newest,
and counts those: a shopper (or a bot) cannot grow a tile without bound.

The rows are Feast's layout of the ``user_session`` view (``features.schema``): in Redis the fields of
the shopper's hash (the one ``user_realtime`` lives in, keyed by ``user_id`` + project; the API's
compare-and-set touches only its own fields), in SQLite the table ``recommndr_user_session``.
Imports only the standard library, ``mmh3`` and ``redis`` (lazily), as ``windows.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from recommndr.features.online import (
    _mmh3,
    _timestamp,
    decode_strings,
    decode_value,
    encode_strings,
    encode_value,
    entity_key,
)
from recommndr.features.schema import JOIN_KEY, PROJECT, RECENT_MAX, SESSION_FIELDS, SESSION_VIEW
from recommndr.streaming.windows import MAX_AHEAD_US, TILE_US, SqliteFeastFile, tile_end_us

log = logging.getLogger(__name__)

SESSION_GAP_S = 30 * 60  # a pause longer than this ends a session (the usual web-analytics rule)
SESSION_MAX_S = 4 * 3600  # a session holds at most the tiles ending this long before its newest
SESSION_CATEGORIES_MAX = 10
MARKS_PER_TILE = 256
KIND_MARK = {"view": "v", "add_to_cart": "a", "purchase": "p"}
_KINDS = frozenset(KIND_MARK.values())
REDIS_TILES_TTL_S = 2 * 86_400  # a shopper's tiles expire this long after their last write (SQLite too)
SWEEP_EVERY_S = 60  # how often the SQLite store deletes them

Mark = tuple[int, int, str]  # ts_ms, item_id, kind mark


@dataclass(frozen=True, slots=True)
class UserTile:
    """One shopper's events in the minute of event time ending at ``end_us``: their distinct marks
    (the newest :data:`MARKS_PER_TILE`, sorted by time) and how many those are."""

    user_id: int
    end_us: int
    events: int
    marks: tuple[Mark, ...]


@dataclass(frozen=True, slots=True)
class UserSession:
    """A shopper's latest session (see the module's docstring)."""

    user_id: int
    session_items: list[int]
    session_categories: list[str]
    session_events: int
    session_start_us: int
    session_last_us: int

    def values(self) -> dict[str, int | list[int] | list[str]]:
        return {name: getattr(self, name) for name in SESSION_FIELDS}


def parse_marks(text: str | None) -> tuple[Mark, ...]:
    """A tile's stored marks (``ts:item:k`` joined by commas), canonical: distinct, sorted
    by time, the newest :data:`MARKS_PER_TILE`; a malformed mark is left out."""
    out: set[Mark] = set()
    for part in set((text or "").split(",")):  # the same mark twice is parsed once
        ts, _, rest = part.partition(":")
        item, _, kind = rest.partition(":")
        if kind not in _KINDS:  # also a part with more than three fields: its kind has a colon
            continue
        try:
            out.add((int(ts), int(item), kind))
        except ValueError:
            continue
    return tuple(sorted(out)[-MARKS_PER_TILE:])


def merge_marks(
    old: tuple[int, Sequence[Mark]] | None, new: Iterable[Mark]
) -> tuple[int, tuple[Mark, ...]] | None:
    """A tile's ``(events, marks)`` with the marks ``new`` added (None when that changes nothing):
    the newest :data:`MARKS_PER_TILE` of the distinct marks, and how many those are. Adding marks a
    second time (a replay after a restore, a duplicate the producer sent) changes nothing, the
    result does not depend on how the marks were split into batches, and a shopper cannot grow a
    tile without bound (a tile counts at most :data:`MARKS_PER_TILE` events)."""
    kept = tuple(old[1]) if old is not None else ()
    merged = tuple(sorted(set(kept).union(new))[-MARKS_PER_TILE:])
    if merged == kept:
        return None
    return len(merged), merged


def user_tiles_of(events: Iterable[tuple[str, int, int, str, int]]) -> list[UserTile]:
    """Reference shopper tiles of ``(event_id, user_id, item_id, event_type, ts_us)`` events: each
    tile's distinct marks (:func:`merge_marks` of all of them at once), what the job must produce
    for them (the tests' yardstick). A copy of an event has its mark, so it counts once."""
    marks: dict[tuple[int, int], set[Mark]] = {}
    for _, user, item, kind, ts in events:
        if kind in KIND_MARK:
            marks.setdefault((user, tile_end_us(ts)), set()).add((ts // 1000, item, KIND_MARK[kind]))
    out = []
    for (u, e), m in sorted(marks.items()):
        merged = merge_marks(None, m)
        assert merged is not None
        out.append(UserTile(u, e, *merged))
    return out


def marks_of(tiles: Iterable[UserTile]) -> dict[tuple[int, int], set[Mark]]:
    """``{(user_id, end_us): marks}`` of tiles, the marks of one tile given twice together."""
    out: dict[tuple[int, int], set[Mark]] = {}
    for t in tiles:
        out.setdefault((t.user_id, t.end_us), set()).update(t.marks)
    return out


def session_of(
    user_id: int, tiles: Mapping[int, tuple[int, Sequence[Mark]]], category: Mapping[int, str] | None = None
) -> UserSession | None:
    """``user_id``'s latest session from their tiles ``{end_us: (events, marks)}`` (None without
    any); ``category`` maps a product to its category (products it does not know have none)."""
    if not tiles:
        return None
    newest = max(tiles)
    ends = sorted((e for e in tiles if e > newest - SESSION_MAX_S * 1_000_000), reverse=True)
    gap_ms = SESSION_GAP_S * 1000
    kept: list[int] = []
    earliest: int | None = None
    for end in ends:  # newest tile first; a gap longer than SESSION_GAP_S ends the session
        marks = tiles[end][1]
        if not marks:
            continue
        if earliest is not None and earliest - marks[-1][0] > gap_ms:
            break
        # inside one tile no gap can exceed a minute: the tile is the session's as a whole
        kept.append(end)
        earliest = marks[0][0]
    if not kept:
        return None
    marks = sorted((m for e in kept for m in tiles[e][1]), reverse=True)
    items: list[int] = []
    for _, item, _ in marks:
        if item not in items:
            items.append(item)
            if len(items) == RECENT_MAX:
                break
    cats: list[str] = []
    for item in items if category else ():
        c = category.get(item) if category else None
        if c and c not in cats:
            cats.append(c)
            if len(cats) == SESSION_CATEGORIES_MAX:
                break
    return UserSession(
        user_id=user_id,
        session_items=items,
        session_categories=cats,
        session_events=sum(tiles[e][0] for e in kept),
        session_start_us=earliest * 1000 if earliest is not None else 0,
        session_last_us=marks[0][0] * 1000,
    )


def sessions_of(
    events: Iterable[tuple[str, int, int, str, int]], category: Mapping[int, str] | None = None
) -> dict[int, UserSession]:
    """Reference sessions of the events (as :func:`user_tiles_of` takes them), per shopper."""
    by_user: dict[int, dict[int, tuple[int, Sequence[Mark]]]] = {}
    for t in user_tiles_of(events):
        by_user.setdefault(t.user_id, {})[t.end_us] = (t.events, t.marks)
    out = {}
    for user, tiles in by_user.items():
        s = session_of(user, tiles, category)
        if s is not None:
            out[user] = s
    return out


def _marks_text(marks: Sequence[Mark]) -> str:
    return ",".join(f"{t}:{i}:{k}" for t, i, k in marks)


def _encode_marks(events: int, marks: Sequence[Mark]) -> str:
    return f"{events}|{_marks_text(marks)}"


def _decode_marks(v: bytes | str) -> tuple[int, tuple[Mark, ...]]:
    text = v.decode() if isinstance(v, bytes) else v
    n, _, rest = text.partition("|")
    return int(n), parse_marks(rest)


def _encode(s: UserSession) -> dict[str, bytes]:
    out = {}
    for name, kind in SESSION_FIELDS.items():
        v = getattr(s, name)
        out[name] = encode_strings(v) if kind == "string_list" else encode_value(v)
    return out


def _decode(user_id: int, values: Mapping[str, bytes | None]) -> UserSession | None:
    if all(values.get(n) is None for n in SESSION_FIELDS):
        return None
    out: dict[str, Any] = {}
    for name, kind in SESSION_FIELDS.items():
        raw = values.get(name)
        if kind == "string_list":
            out[name] = (decode_strings(raw) if raw else None) or []
        else:
            v = decode_value(raw) if raw else None
            out[name] = v if v is not None else ([] if kind == "int64_list" else 0)
    return UserSession(user_id=user_id, **out)


def _expired(last_written_s: int, now_s: int) -> bool:
    """Whether a shopper whose tiles were last written at ``last_written_s`` has them no more: all
    of them expire :data:`REDIS_TILES_TTL_S` after the last write of any (Redis's EXPIRE of their
    hash; the SQLite store ignores them, then sweeps them)."""
    return last_written_s < now_s - REDIS_TILES_TTL_S


def _wanted(marks: Mapping[tuple[int, int], Iterable[Mark]]) -> dict[tuple[int, int], Iterable[Mark]]:
    """The batch's tiles, less those ending more than ``MAX_AHEAD_US`` after the wall clock
    (logged): as the shopper's newest such a tile would make every real one older than the
    session's four hours, deleted on arrival."""
    limit = time.time_ns() // 1000 + MAX_AHEAD_US
    out = {}
    for (user, end), m in marks.items():
        if user < 0 or end % TILE_US:
            raise ValueError(f"not a tile of a shopper's session: {(user, end)}")
        if end <= limit:
            out[(user, end)] = m
    if len(out) < len(marks):
        log.warning("%d shopper tile(s) ending more than %d s after the wall clock left out",
                    len(marks) - len(out), MAX_AHEAD_US // 10**6)  # fmt: skip
    return out


def _newest(tiles: Mapping[int, Mapping[int, Any]], wanted: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Each shopper's newest tile end, of those stored and those a batch brings."""
    out = {u: max(t, default=0) for u, t in tiles.items()}
    for u, e in wanted:
        out[u] = max(out.get(u, 0), e)
    return out


def _merge_batch(
    by_user: dict[int, dict[int, tuple[int, tuple[Mark, ...]]]],
    wanted: Mapping[tuple[int, int], Iterable[Mark]],
) -> dict[int, dict[int, tuple[int, tuple[Mark, ...]]]]:
    """Adds the batch's marks to the shoppers' stored tiles ``by_user`` (in place, by
    :func:`merge_marks`) and returns the tiles that changed, per shopper; a tile older than its
    shopper's session may reach (it would go at once) is left out."""
    changed: dict[int, dict[int, tuple[int, tuple[Mark, ...]]]] = {}
    newest = _newest(by_user, wanted)
    for (user, end), m in wanted.items():
        if end <= newest[user] - SESSION_MAX_S * 1_000_000:
            continue
        merged = merge_marks(by_user[user].get(end), m)
        if merged is not None:
            by_user[user][end] = merged
            changed.setdefault(user, {})[end] = merged
    return changed


def _cut(tiles: Mapping[int, Any]) -> list[int]:
    """The ends of a shopper's tiles older than their session may reach (deleted)."""
    cut = max(tiles) - SESSION_MAX_S * 1_000_000
    return [e for e in tiles if e <= cut]


class _UserTilesWriter:
    """What both session stores share: :meth:`write_user_tiles` is :meth:`add_marks` of the tiles'
    marks."""

    def add_marks(
        self, marks: Mapping[tuple[int, int], Iterable[Mark]], category: Mapping[int, str] | None = None
    ) -> int:
        raise NotImplementedError

    def write_user_tiles(self, tiles: Iterable[UserTile], category: Mapping[int, str] | None = None) -> int:
        """:meth:`add_marks` of the tiles' marks."""
        return self.add_marks(marks_of(tiles), category)


class SessionStore(Protocol):
    """Where the job writes shopper sessions and the API reads them."""

    name: str

    def add_marks(
        self, marks: Mapping[tuple[int, int], Iterable[Mark]], category: Mapping[int, str] | None = None
    ) -> int: ...

    def write_user_tiles(
        self, tiles: Iterable[UserTile], category: Mapping[int, str] | None = None
    ) -> int: ...

    def user_tiles(self, user_id: int) -> dict[int, tuple[int, tuple[Mark, ...]]]: ...

    def read_sessions(self, user_ids: Sequence[int]) -> dict[int, UserSession]: ...

    def close(self) -> None: ...


class RedisSessionStore(_UserTilesWriter):
    """Sessions in Redis: Feast's ``user_session`` fields in the shopper's hash, the tiles in a
    hash of their own per shopper (expiring :data:`REDIS_TILES_TTL_S` after its last write)."""

    name = "redis"

    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.names = list(SESSION_FIELDS)
        self.fields = [_mmh3(f"{SESSION_VIEW}:{n}") for n in self.names]
        self.ts_field = f"_ts:{SESSION_VIEW}"

    @staticmethod
    def key(user_id: int) -> bytes:
        return entity_key(user_id, JOIN_KEY) + PROJECT.encode()

    @staticmethod
    def tiles_key(user_id: int) -> str:
        return f"{PROJECT}:{SESSION_VIEW}:tiles:{user_id}"

    def user_tiles(self, user_id: int) -> dict[int, tuple[int, tuple[Mark, ...]]]:
        raw: Any = self.client.hgetall(self.tiles_key(user_id))
        return {int(k): _decode_marks(v) for k, v in raw.items()}

    def add_marks(
        self, marks: Mapping[tuple[int, int], Iterable[Mark]], category: Mapping[int, str] | None = None
    ) -> int:
        """Adds marks to the shoppers' tiles ``{(user_id, end_us): marks}`` (:func:`merge_marks`)
        and recomputes the sessions of the shoppers whose tiles changed; returns how many tiles changed. Reads the
        shoppers' tiles, then writes: the job is each shopper's one writer (their events come from
        one partition, read by one subtask)."""
        wanted = _wanted(marks)
        if not wanted:
            return 0
        users = sorted({u for u, _ in wanted})
        pipe = self.client.pipeline(transaction=False)
        for user in users:
            pipe.hgetall(self.tiles_key(user))
        by_user = {
            user: {int(k): _decode_marks(v) for k, v in raw.items()}
            for user, raw in zip(users, pipe.execute(), strict=True)
        }
        changed = _merge_batch(by_user, wanted)
        # MULTI/EXEC: a write cut short leaves no tile written without its session (a retry would
        # find the tile unchanged and not write the session)
        pipe = self.client.pipeline(transaction=True)
        for user, tiles_changed in changed.items():
            tiles_ = by_user[user]
            key = self.tiles_key(user)
            pipe.hset(key, mapping={str(e): _encode_marks(*m) for e, m in tiles_changed.items()})
            pipe.expire(key, REDIS_TILES_TTL_S)
            old = [str(e) for e in _cut(tiles_)]
            if old:
                pipe.hdel(key, *old)
            s = session_of(user, tiles_, category)
            if s is None:
                continue
            enc = _encode(s)
            mapping: dict[bytes | str, bytes] = {self.ts_field: _timestamp(s.session_last_us)}
            for f, name in zip(self.fields, self.names, strict=True):
                mapping[f] = enc[name]
            pipe.hset(self.key(user), mapping=mapping)  # type: ignore[arg-type]
        pipe.execute()
        return sum(len(f) for f in changed.values())

    def read_sessions(self, user_ids: Sequence[int]) -> dict[int, UserSession]:
        pipe = self.client.pipeline(transaction=False)
        for u in user_ids:
            pipe.hmget(self.key(u), self.fields)  # type: ignore[arg-type]
        out = {}
        for u, values in zip(user_ids, pipe.execute(), strict=True):
            s = _decode(u, dict(zip(self.names, values, strict=True)))
            if s is not None:
                out[u] = s
        return out

    def close(self) -> None:
        self.client.close()


class SqliteSessionStore(SqliteFeastFile, _UserTilesWriter):
    """Sessions in the SQLite online store file (Feast's table ``recommndr_user_session``), the
    tiles in a table of their own beside it."""

    name = "sqlite"

    def __init__(self, path: Path, timeout_s: float = 5.0) -> None:
        super().__init__(path, SESSION_VIEW, timeout_s)
        self.tiles_table = f'"{PROJECT}_{SESSION_VIEW}_tiles"'
        self._conn().execute(
            f"CREATE TABLE IF NOT EXISTS {self.tiles_table} (user_id INTEGER, end_us INTEGER, "
            "events INTEGER, marks TEXT, written_s INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(user_id, end_us))"
        )
        c = self._conn()
        if "written_s" not in self._columns(c):
            # a file of an older version: its tiles count as written now; checked again under the
            # write lock, as the job's parallel sinks may open the same file at once
            c.execute("BEGIN IMMEDIATE")
            try:
                if "written_s" not in self._columns(c):
                    c.execute(
                        f"ALTER TABLE {self.tiles_table} "
                        f"ADD COLUMN written_s INTEGER NOT NULL DEFAULT {int(time.time())}"
                    )
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
        c.execute(
            f'CREATE INDEX IF NOT EXISTS "{PROJECT}_{SESSION_VIEW}_tiles_by_written" ON {self.tiles_table} (written_s)'
        )
        self._sweep_at = 0  # when the next write deletes abandoned shoppers' tiles (wall clock, s)

    def _columns(self, c: Any) -> set[str]:
        return {r[1] for r in c.execute(f"PRAGMA table_info({self.tiles_table})")}

    @staticmethod
    def key(user_id: int) -> bytes:
        return entity_key(user_id, JOIN_KEY)

    def user_tiles(self, user_id: int) -> dict[int, tuple[int, tuple[Mark, ...]]]:
        """The shopper's live tiles: none once none of them was written for :data:`REDIS_TILES_TTL_S`
        (Redis would have expired their hash; the next sweep deletes them)."""
        rows = list(
            self._conn().execute(
                f"SELECT end_us, events, marks, written_s FROM {self.tiles_table} WHERE user_id = ?",
                (user_id,),
            )
        )
        if not rows or _expired(max(r[3] for r in rows), int(time.time())):
            return {}
        return {e: (n, parse_marks(m)) for e, n, m, _ in rows}

    def add_marks(
        self, marks: Mapping[tuple[int, int], Iterable[Mark]], category: Mapping[int, str] | None = None
    ) -> int:
        """Adds marks to the shoppers' tiles ``{(user_id, end_us): marks}`` (:func:`merge_marks`)
        and recomputes the sessions of the shoppers whose tiles changed; returns how many tiles changed."""
        wanted = _wanted(marks)
        if not wanted:
            return 0
        users = sorted({u for u, _ in wanted})
        c = self._conn()
        now_s = int(time.time())
        by_user: dict[int, dict[int, tuple[int, tuple[Mark, ...]]]] = {u: {} for u in users}
        written: dict[int, int] = {}
        for start in range(0, len(users), 400):
            chunk = users[start : start + 400]
            rows = c.execute(
                f"SELECT user_id, end_us, events, marks, written_s FROM {self.tiles_table} "
                f"WHERE user_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for u, e, n, m, w in rows:
                by_user[u][e] = (n, parse_marks(m))
                written[u] = max(written.get(u, w), w)
        stale: list[tuple[int, int]] = []
        for u, w in written.items():
            if _expired(w, now_s):  # as a whole (Redis: the hash's TTL ran out): not this session's
                stale.extend((u, e) for e in by_user[u])
                by_user[u] = {}
        by_tile = _merge_batch(by_user, wanted)
        changed = [
            (u, e, n, _marks_text(m), now_s)
            for u, tiles_changed in by_tile.items()
            for e, (n, m) in tiles_changed.items()
        ]
        # an expired shopper's rows go, all but new ones
        old = [(u, e) for u, e in stale if e not in by_tile.get(u, ())]
        feast_rows: list[tuple[Any, ...]] = []
        for user in sorted(by_tile):
            tiles_ = by_user[user]
            old.extend((user, e) for e in _cut(tiles_))
            s = session_of(user, tiles_, category)
            if s is None:
                continue
            key = self.key(user)
            feast_rows.extend(
                (key, name, value, None, s.session_last_us // 1_000_000, now_s)
                for name, value in _encode(s).items()
            )
        if not changed and not old:
            return 0
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany(
                f"INSERT INTO {self.tiles_table} (user_id, end_us, events, marks, written_s) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(user_id, end_us) DO UPDATE "
                "SET events = excluded.events, marks = excluded.marks, written_s = excluded.written_s",
                changed,
            )
            c.executemany(f"DELETE FROM {self.tiles_table} WHERE user_id = ? AND end_us = ?", old)
            if now_s >= self._sweep_at:
                c.execute(
                    f"DELETE FROM {self.tiles_table} AS t WHERE t.written_s < ? AND NOT EXISTS "
                    f"(SELECT 1 FROM {self.tiles_table} AS n WHERE n.user_id = t.user_id AND n.written_s >= ?)",
                    (now_s - REDIS_TILES_TTL_S,) * 2,
                )
            self._upsert_feast(c, feast_rows)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        if now_s >= self._sweep_at:
            self._sweep_at = now_s + SWEEP_EVERY_S
        return len(changed)

    def read_sessions(self, user_ids: Sequence[int]) -> dict[int, UserSession]:
        found = self._read_feast({self.key(u): u for u in user_ids})
        out = {}
        for u in user_ids:
            if u in found:
                s = _decode(u, found[u])
                if s is not None:
                    out[u] = s
        return out


def open_session_store(kind: str, path: Path, redis_url: str, timeout_s: float = 1.0) -> SessionStore | None:
    """The session store beside the online store of ``kind`` (None when it is ``off``)."""
    if kind == "off":
        return None
    if kind == "redis":
        return RedisSessionStore(redis_url, timeout_s)
    return SqliteSessionStore(path)


def load_categories(path: Path) -> dict[int, str]:
    """``item_id`` → ``category_l2`` from the data contract's ``products`` table: a Parquet or CSV
    file, or a dataset folder holding ``products.parquet`` or ``products/`` (Parquet parts). pyarrow
    only (the job's environment has no polars); ValueError naming the path when it is not one."""
    import pyarrow.csv as pcsv
    import pyarrow.dataset as pads

    path = Path(path)
    if path.is_dir() and (path / "products.parquet").exists():
        path = path / "products.parquet"
    elif path.is_dir() and (path / "products").is_dir():
        path = path / "products"
    cols = ["item_id", "category_l2"]
    try:
        if path.suffix == ".csv":
            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(include_columns=cols))
        else:
            table = pads.dataset(path, format="parquet").to_table(columns=cols)
    except (OSError, ValueError, KeyError) as exc:  # pyarrow's errors derive from these
        raise ValueError(f"{path}: not a products table with item_id and category_l2 ({exc})") from None
    ids, cats = table.column("item_id").to_pylist(), table.column("category_l2").to_pylist()
    return {int(i): str(c) for i, c in zip(ids, cats, strict=True) if i is not None and c}
