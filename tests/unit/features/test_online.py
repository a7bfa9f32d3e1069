"""The request path's online-store access: Feast's encodings, both directions against Feast itself,
the fold of events into users' records, and the circuit breaker; the SQLite store passes the
online-store contract (``tests/online_store_contract.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recommndr.features.online import (
    INT64_MAX,
    INT64_MIN,
    OnlineFeatures,
    SqliteOnlineStore,
    UserRealtime,
    _mmh3,
    decode_value,
    encode_value,
    entity_key,
)
from recommndr.features.schema import FIELDS, VIEW
from tests.online_store_contract import OnlineStoreContract, StoreSpec

pytestmark = pytest.mark.unit


class TestSqliteOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def spec(self, tmp_path: Path) -> StoreSpec:
        return StoreSpec("sqlite", path=tmp_path / "online.db")


@pytest.mark.parametrize(
    "value",
    # the varint's table, its three-byte path and the general one each side of their bounds
    [
        0,
        1,
        -1,
        127,
        128,
        2**14 - 1,
        2**14,
        99_999,
        2**21 - 1,
        2**21,
        2**28 - 1,
        2**28,
        2**40,
        2**42 - 1,
        2**56,
        2**62,
        -(2**63),
        2**63 - 1,
        [],
        [0],
        [5, 300, -2, 2**62],
        [16_383, 16_384, 2_097_151, 2_097_152, 1_700_000_000_000_000],
    ],
)
def test_values_match_feast_protobuf(value: Any) -> None:
    from feast.protos.feast.types.Value_pb2 import Int64List, Value

    proto = Value(int64_val=value) if isinstance(value, int) else Value(int64_list_val=Int64List(val=value))
    assert encode_value(value) == proto.SerializeToString()
    assert decode_value(proto.SerializeToString()) == value


def test_random_int64_values_match_feast_protobuf() -> None:
    """The varint's paths (the table, three bytes, 14 bits a step, the general one) over random
    int64s of every length and microsecond timestamps."""
    from feast.protos.feast.types.Value_pb2 import Value

    rng = np.random.default_rng(7)
    bits = rng.integers(1, 64, size=4000)
    values = [int(v) for v in rng.integers(0, 2**62, size=4000) >> (62 - np.minimum(bits, 62))]
    values += [-v for v in values[:500]] + [
        1_700_000_000_000_000 + int(v) for v in rng.integers(0, 10**12, size=500)
    ]
    for v in values:
        assert encode_value(v) == Value(int64_val=v).SerializeToString(), v


def test_the_varint_table_holds_every_14_bit_group() -> None:
    """Each of its 16,384 entries: the two bytes (continuation bits set) of those low 14 bits."""
    from recommndr.features import online

    assert len(online._VARINT_LOW14) == 1 << 14
    for i in range(1 << 14):
        assert online._VARINT_LOW14[i] == online._varint_slow(i | 1 << 14)[:2], i


def test_keys_match_feast() -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _mmh3 as feast_mmh3
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    for user in (0, 7, 123_456_789, 2**40, INT64_MIN, INT64_MAX):
        key = EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=user)])
        assert entity_key(user) == serialize_entity_key(key, entity_key_serialization_version=3)
    for name in FIELDS:
        assert _mmh3(f"{VIEW}:{name}") == feast_mmh3(f"{VIEW}:{name}")


@pytest.mark.parametrize("user", [INT64_MAX + 1, INT64_MIN - 1, 2**64])
def test_a_key_or_value_outside_int64_is_a_clear_value_error(user: int) -> None:
    with pytest.raises(ValueError, match=rf"user_id {user} is outside int64"):
        entity_key(user)
    with pytest.raises(ValueError, match="outside int64"):
        encode_value(user)  # protobuf refuses it; a 64-bit mask would silently store another number
    with pytest.raises(ValueError, match="outside int64"):
        encode_value([1, user])


def test_sqlite_store_reads_what_feast_writes_and_feast_reads_what_it_writes(tmp_path: Path) -> None:
    from recommndr.features.repo import apply, push, write_repo

    db = tmp_path / "online.db"
    fs = apply(write_repo(tmp_path / "repo", "sqlite", db, "redis://unused"))
    pushed = {5: UserRealtime([3, 2, 1], [2], 1_700_000_000_123_456, 7, [3]), 9: UserRealtime([], [], 5, 1)}
    push(fs, pushed, 1_700_000_000_000_000)
    ours = SqliteOnlineStore(db)
    assert ours.read(5) == pushed[5] and ours.read(9) == pushed[9] and ours.read(1) is None
    ours.write({11: UserRealtime([8, 4], [4], 1_700_000_001_000_000, 2, [8])}, 1_700_000_001_000_000)
    ours.fold_events({5: [(4, "purchase", 1_700_000_002_000_000)], 12: [(6, "view", 1_700_000_003_000_000)]})
    got = fs.get_online_features(
        features=[f"{VIEW}:{n}" for n in FIELDS],
        entity_rows=[{"user_id": 11}, {"user_id": 5}, {"user_id": 3}, {"user_id": 12}],
    ).to_dict()
    assert got["recent_items"] == [[8, 4], [4, 3, 2, 1], None, [6]]
    assert got["purchased_items"] == [[4], [4, 2], None, []]
    assert got["carted_items"] == [[8], [3], None, []]
    assert got["events"] == [2, 8, None, 1]
    assert got["last_event_us"] == [1_700_000_001_000_000, 1_700_000_002_000_000, None, 1_700_000_003_000_000]


class _Broken:
    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    def read(self, user_id: int) -> UserRealtime | None:
        self.calls += 1
        raise ConnectionError("store is down")

    def read_many(self, user_ids: Sequence[int]) -> dict[int, UserRealtime]:
        return {u: r for u in user_ids if (r := self.read(u)) is not None}

    def write(self, records: dict[int, UserRealtime], ts_us: int) -> None:
        raise ConnectionError("store is down")

    def fold_events(self, events: Mapping[int, Sequence[tuple[int, str, int]]]) -> None:
        self.calls += 1
        raise ConnectionError("store is down")

    def close(self) -> None:
        pass


def test_a_failing_store_is_skipped_until_the_cooldown_ends() -> None:
    store = _Broken()
    online = OnlineFeatures(store, cooldown_s=60)
    assert online.get(1) == (None, False)
    assert online.get(1) == (None, False) and online.get(2) == (None, False)
    assert store.calls == 1, "the breaker should stop calling a store that just failed"
    assert not online.available and "store is down" in (online.last_error or "")
    assert online.record([(1, 2, "view", 3)]) is False
    online._down_until = 0.0  # the cooldown has passed: it tries again
    assert online.get(1) == (None, False) and store.calls == 2
    online._down_until = 0.0
    assert online.record([(1, 2, "view", 3)]) is False and store.calls == 3 and not online.available


class _Faulty(_Broken):
    """A store up for everyone whose calls fail for a reason that is not an outage."""

    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    def read(self, user_id: int) -> UserRealtime | None:
        self.calls += 1
        raise self.exc

    def fold_events(self, events: Mapping[int, Sequence[tuple[int, str, int]]]) -> None:
        self.calls += 1
        raise self.exc


@pytest.mark.parametrize(
    "exc", [ValueError("bad key"), IndexError("index out of range"), KeyError("x"), TypeError("no")]
)
def test_an_error_that_is_not_an_outage_does_not_trip_the_breaker(exc: Exception) -> None:
    store = _Faulty(exc)
    online = OnlineFeatures(store, cooldown_s=60)
    assert online.get(1) == (None, False)
    assert online.record([(1, 2, "view", 3)]) is False
    assert online.available and online.last_error is None
    assert online.get(2) == (None, False) and store.calls == 3, "the next user still reaches the store"


def test_a_locked_sqlite_database_trips_the_breaker(tmp_path: Path) -> None:
    import sqlite3

    online = OnlineFeatures(SqliteOnlineStore(tmp_path / "f.db", timeout_s=0.05), cooldown_s=60)
    assert online.record([(1, 2, "view", 3)])
    other = sqlite3.connect(tmp_path / "f.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
    try:
        assert online.record([(1, 4, "view", 5)]) is False
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not online.available and "database is locked" in (online.last_error or "")
    assert online.get(1) == (None, False), "skipped while the breaker is open"
    online._down_until = 0.0
    assert online.get(1) == (UserRealtime([2], [], 3, 1), True), "the lost update was not half-applied"


def test_features_push_from_the_api_event_log_matches_the_api_fold(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(3)
    events = [
        (int(rng.integers(0, 30)), int(rng.integers(0, 200)), str(rng.choice(["view", "add_to_cart", "purchase"])),
         1_700_000_000_000_000 + int(rng.integers(0, 10**9)))
        for _ in range(500)
    ]  # fmt: skip
    log = tmp_path / "events"
    log.mkdir()
    from datetime import UTC, datetime

    with (log / "events-2026-11-26.jsonl").open("w") as f:
        for u, i, t, ts in events:
            iso = datetime.fromtimestamp(ts / 1e6, UTC).isoformat()
            f.write(
                json.dumps({"user_id": u, "item_id": i, "event_type": t, "ts": iso, "quantity": 1}) + "\n"
            )
    db = tmp_path / "online.db"
    env = dict(os.environ, RECOMMNDR_ONLINE_STORE_PATH=str(db))
    r = subprocess.run(
        [sys.executable, "-m", "recommndr.cli", "features", "push", "--events", str(log), "--repo", str(tmp_path / "repo")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"of {len({e[0] for e in events})} users" in r.stdout
    expected = OnlineFeatures(SqliteOnlineStore(tmp_path / "expected.db"))
    expected.record(sorted(events, key=lambda e: e[3]))
    pushed = SqliteOnlineStore(db)
    users = sorted({e[0] for e in events})
    assert {u: pushed.read(u) for u in users} == {u: expected.get(u)[0] for u in users}


def test_features_push_refuses_a_folder_without_events(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "recommndr.cli", "features", "push", "--events", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert r.returncode != 0 and "no event files" in r.stderr + r.stdout
