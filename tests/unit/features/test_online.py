"""The request path's online-store access: Feast's encodings, both directions against Feast itself,
the fold of events into users' records, and the circuit breaker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recommndr.features.online import (
    OnlineFeatures,
    SqliteOnlineStore,
    UserRealtime,
    _mmh3,
    decode_value,
    encode_value,
    entity_key,
)
from recommndr.features.schema import FIELDS, RECENT_MAX, VIEW

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "value", [0, 1, -1, 127, 128, 2**40, -(2**63), 2**63 - 1, [], [0], [5, 300, -2, 2**62]]
)
def test_values_match_feast_protobuf(value: Any) -> None:
    from feast.protos.feast.types.Value_pb2 import Int64List, Value

    proto = Value(int64_val=value) if isinstance(value, int) else Value(int64_list_val=Int64List(val=value))
    assert encode_value(value) == proto.SerializeToString()
    assert decode_value(proto.SerializeToString()) == value


def test_keys_match_feast() -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _mmh3 as feast_mmh3
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    for user in (0, 7, 123_456_789, 2**40):
        key = EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=user)])
        assert entity_key(user) == serialize_entity_key(key, entity_key_serialization_version=3)
    for name in FIELDS:
        assert _mmh3(f"{VIEW}:{name}") == feast_mmh3(f"{VIEW}:{name}")


def test_sqlite_store_reads_what_feast_writes_and_feast_reads_what_it_writes(tmp_path: Path) -> None:
    from recommndr.features.repo import apply, push, write_repo

    db = tmp_path / "online.db"
    fs = apply(write_repo(tmp_path / "repo", "sqlite", db, "redis://unused"))
    pushed = {5: UserRealtime([3, 2, 1], [2], 1_700_000_000_123_456, 7), 9: UserRealtime([], [], 5, 1)}
    push(fs, pushed, 1_700_000_000_000_000)
    ours = SqliteOnlineStore(db)
    assert ours.read(5) == pushed[5] and ours.read(9) == pushed[9] and ours.read(1) is None
    ours.write({11: UserRealtime([8, 4], [4], 1_700_000_001_000_000, 2)}, 1_700_000_001_000_000)
    got = fs.get_online_features(
        features=[f"{VIEW}:{n}" for n in FIELDS],
        entity_rows=[{"user_id": 11}, {"user_id": 5}, {"user_id": 3}],
    ).to_dict()
    assert got["recent_items"] == [[8, 4], [3, 2, 1], None]
    assert got["purchased_items"] == [[4], [2], None]
    assert got["events"] == [2, 7, None]


def test_events_fold_newest_first_deduplicated_and_capped(tmp_path: Path) -> None:
    online = OnlineFeatures(SqliteOnlineStore(tmp_path / "f.db"))
    assert online.record([(1, 10, "view", 100), (1, 11, "view", 200), (2, 10, "add_to_cart", 150)])
    assert online.record([(1, 10, "purchase", 300)])
    one, ok = online.get(1)
    assert ok and one == UserRealtime([10, 11], [10], 300, 3)
    assert online.get(2)[0] == UserRealtime([10], [], 150, 1)
    assert online.record([(3, i, "view", i) for i in range(50)])
    three = online.get(3)[0]
    assert three is not None and three.recent_items == list(range(49, 49 - RECENT_MAX, -1))
    assert online.get(404) == (None, True)


class _Broken:
    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    def read(self, user_id: int) -> UserRealtime | None:
        self.calls += 1
        raise ConnectionError("store is down")

    def read_many(self, user_ids: list[int]) -> dict[int, UserRealtime]:
        return {u: r for u in user_ids if (r := self.read(u)) is not None}

    def write(self, records: dict[int, UserRealtime], ts_us: int) -> None:
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
