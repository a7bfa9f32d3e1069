"""The contract every online store (SQLite, Redis) passes, as implicit's ``RecommenderBaseTestMixin``
does for its models: a backend's test class subclasses ``OnlineStoreContract`` and overrides the
``spec`` fixture; every test here then runs against that backend.

    class TestSqliteOnlineStore(OnlineStoreContract):
        @pytest.fixture
        def spec(self, tmp_path: Path) -> StoreSpec:
            return StoreSpec("sqlite", path=tmp_path / "online.db")
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from recommndr.features.online import (
    INT64_MAX,
    INT64_MIN,
    OnlineFeatures,
    OnlineStore,
    RedisOnlineStore,
    UserRealtime,
    _mmh3,
    entity_key,
    open_online_store,
)
from recommndr.features.schema import PROJECT, RECENT_MAX, VIEW

TOO_BIG = INT64_MAX + 1  # a user id a client can send that Feast's int64 key cannot hold


@dataclass(frozen=True)
class StoreSpec:
    """Where a backend's store lives; picklable, so a spawned process can open its own store."""

    kind: str  # "sqlite" or "redis"
    path: Path = Path("unused.db")
    url: str = "redis://unused"

    def open(self) -> OnlineStore:
        store = open_online_store(self.kind, self.path, self.url, timeout_s=5.0)
        assert store is not None
        return store

    def forget(self, user_id: int, feature: str) -> None:
        """Remove one stored feature of the user, as a record written before it existed lacks it."""
        if self.kind == "sqlite":
            with closing(sqlite3.connect(self.path)) as c, c:
                gone = c.execute(
                    f'DELETE FROM "{PROJECT}_{VIEW}" WHERE entity_key = ? AND feature_name = ?',
                    (entity_key(user_id), feature),
                ).rowcount
        else:
            import redis

            with redis.Redis.from_url(self.url) as r:
                gone = r.hdel(RedisOnlineStore.key(user_id), _mmh3(f"{VIEW}:{feature}"))
        assert gone == 1, f"user {user_id} had no stored {feature}"

    def corrupt(self, user_id: int) -> None:
        """Overwrite the user's stored ``events`` value with bytes that do not decode."""
        if self.kind == "sqlite":
            with closing(sqlite3.connect(self.path)) as c, c:
                c.execute(
                    f'UPDATE "{PROJECT}_{VIEW}" SET value = ? WHERE entity_key = ? AND feature_name = ?',
                    (b"\xff", entity_key(user_id), "events"),
                )
        else:
            import redis

            with redis.Redis.from_url(self.url) as r:
                r.hset(RedisOnlineStore.key(user_id), _mmh3(f"{VIEW}:events"), b"\xff")


ITEM_BASE = 1_000_000  # worker w records items w * ITEM_BASE + j, j = 0..n-1
TS_BASE = 1_700_000_000_000_000


def _purchase(j: int) -> bool:
    return j % 5 == 0


def record_many(spec: StoreSpec, user: int, worker: int, n: int, start: Any) -> None:
    """A spawned API worker: ``n`` single-event ``record`` calls for ``user``, as ``/events`` makes."""
    online = OnlineFeatures(spec.open(), cooldown_s=0)
    start.wait(timeout=120)  # every worker starts recording at once
    failed = 0
    for j in range(n):
        item = worker * ITEM_BASE + j
        kind = "purchase" if _purchase(j) else "view"
        failed += not online.record([(user, item, kind, TS_BASE + 10 * j + worker)])
    online.close()
    assert failed == 0, f"worker {worker}: {failed} of {n} record() calls failed ({online.last_error})"


def _is_own_newest(items: list[int], workers: int, newest: list[list[int]]) -> bool:
    """Whether each worker's items in ``items`` are, in order, that worker's newest ones: a lost
    update drops an item that a later one from the same worker outlives."""
    for w in range(workers):
        mine = [i for i in items if i // ITEM_BASE == w]
        if mine != newest[w][: len(mine)]:
            return False
    return True


class OnlineStoreContract:
    """The tests each online store passes; subclasses override ``spec``."""

    @pytest.fixture
    def spec(self) -> StoreSpec:
        raise NotImplementedError("a backend's test class gives its StoreSpec")

    @pytest.fixture
    def store(self, spec: StoreSpec) -> Iterator[OnlineStore]:
        s = spec.open()
        yield s
        s.close()

    def test_an_unknown_user_reads_none(self, store: OnlineStore) -> None:
        assert store.read(404) is None
        assert store.read_many([404, 405]) == {}

    def test_write_read_and_read_many_round_trip(self, store: OnlineStore) -> None:
        records = {
            5: UserRealtime([3, 2, 1], [2], 1_700_000_000_123_456, 7, [3, 1]),
            0: UserRealtime([], [], 0, 0),
            -3: UserRealtime([INT64_MAX, INT64_MIN, 0], [INT64_MIN], 5, 1),
            INT64_MAX: UserRealtime([1], [], 9, 1),
            INT64_MIN: UserRealtime([2], [2], 10, 2, [INT64_MAX, INT64_MIN]),
        }
        store.write(records, 1_700_000_000_000_000)
        assert {u: store.read(u) for u in records} == records
        assert store.read_many([404, *records, 405]) == records
        store.write({5: UserRealtime([9], [], 11, 8)}, 1_700_000_000_000_001)
        assert store.read(5) == UserRealtime([9], [], 11, 8), "a write replaces the record"
        assert store.read(0) == records[0], "and leaves the others alone"

    def test_fold_events_adds_to_the_stored_records(self, store: OnlineStore) -> None:
        store.write({1: UserRealtime([7, 6], [6], 100, 2)}, 100)
        store.fold_events(
            {
                1: [(8, "view", 300), (6, "add_to_cart", 200), (9, "purchase", 250)],
                2: [(4, "add_to_cart", 50)],
            }
        )
        assert store.read(1) == UserRealtime([8, 9, 6, 7], [9, 6], 300, 5, [6])
        assert store.read(2) == UserRealtime([4], [], 50, 1, [4])
        store.fold_events({1: [(i, "view", 1000 + i) for i in range(30)]})
        one = store.read(1)
        assert one is not None and one.recent_items == list(range(29, 29 - RECENT_MAX, -1))
        assert one.purchased_items == [9, 6] and one.events == 35 and one.last_event_us == 1029

    def test_record_folds_events_newest_first_deduplicated_and_capped(self, store: OnlineStore) -> None:
        online = OnlineFeatures(store)
        assert online.record([(1, 10, "view", 100), (1, 11, "view", 200), (2, 10, "add_to_cart", 150)])
        assert online.record(
            [(1, 10, "purchase", 300), (2, 12, "add_to_cart", 160), (2, 10, "add_to_cart", 170)]
        )
        assert online.get(1) == (UserRealtime([10, 11], [10], 300, 3), True)
        assert online.get(2) == (UserRealtime([10, 12], [], 170, 3, [10, 12]), True)
        assert online.record([(3, i, "view", i) for i in range(50)])
        three = online.get(3)[0]
        assert three is not None and three.recent_items == list(range(49, 49 - RECENT_MAX, -1))
        assert online.get(404) == (None, True)

    def test_a_record_stored_before_carted_items_existed_reads_and_folds(
        self, store: OnlineStore, spec: StoreSpec
    ) -> None:
        store.write({6: UserRealtime([5, 4], [4], 100, 2, [5])}, 100)
        spec.forget(6, "carted_items")  # the layout before the field was added
        assert store.read(6) == UserRealtime([5, 4], [4], 100, 2, [])
        assert store.read_many([6]) == {6: UserRealtime([5, 4], [4], 100, 2, [])}
        store.fold_events({6: [(7, "add_to_cart", 200)]})
        assert store.read(6) == UserRealtime([7, 5, 4], [4], 200, 3, [7])

    def test_a_user_id_outside_int64_degrades_that_call_only(self, store: OnlineStore) -> None:
        with pytest.raises(ValueError, match="outside int64"):
            store.read(TOO_BIG)
        online = OnlineFeatures(store, cooldown_s=60)
        assert online.get(TOO_BIG) == (None, False)
        assert online.available, "one bad id must not switch personalisation off for everyone"
        assert online.record([(TOO_BIG, 1, "view", 1), (7, 2, "view", 2), (7, TOO_BIG, "view", 3)]) is False
        assert online.available and online.last_error is None
        assert online.get(7) == (UserRealtime([2], [], 2, 1), True), "the good event is recorded"

    def test_an_undecodable_record_degrades_that_call_only(self, store: OnlineStore, spec: StoreSpec) -> None:
        online = OnlineFeatures(store, cooldown_s=60)
        assert online.record([(8, 1, "view", 1), (9, 2, "view", 2)])
        spec.corrupt(8)
        assert online.get(8) == (None, False)
        assert online.record([(8, 3, "view", 3)]) is False
        assert online.available and online.last_error is None
        assert online.get(9) == (UserRealtime([2], [], 2, 1), True)

    def test_close_is_idempotent_and_the_records_outlive_it(self, spec: StoreSpec) -> None:
        store = spec.open()
        store.write({4: UserRealtime([1], [1], 2, 3)}, 2)
        store.close()
        store.close()
        again = spec.open()
        try:
            assert again.read(4) == UserRealtime([1], [1], 2, 3)
        finally:
            again.close()

    @pytest.mark.slow
    def test_two_processes_recording_one_user_lose_no_event(self, spec: StoreSpec) -> None:
        workers, n, user = 2, 400, 42
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Barrier(workers)
        procs = [ctx.Process(target=record_many, args=(spec, user, w, n, start)) for w in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=300)
        assert [p.exitcode for p in procs] == [0] * workers, "a worker failed (its traceback is above)"
        store = spec.open()
        rec = store.read(user)
        store.close()
        assert rec is not None
        assert rec.events == workers * n, f"{workers * n - rec.events} concurrent updates were lost"
        assert rec.last_event_us == TS_BASE + 10 * (n - 1) + workers - 1
        newest = [[w * ITEM_BASE + j for j in reversed(range(n))] for w in range(workers)]
        bought = [[i for i in items if _purchase(i % ITEM_BASE)] for items in newest]
        assert len(set(rec.recent_items)) == len(rec.recent_items) == RECENT_MAX
        assert len(set(rec.purchased_items)) == len(rec.purchased_items) == RECENT_MAX
        assert rec.recent_items[0] in {items[0] for items in newest}
        assert _is_own_newest(rec.recent_items, workers, newest), rec.recent_items
        assert _is_own_newest(rec.purchased_items, workers, bought), rec.purchased_items
