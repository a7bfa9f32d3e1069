"""Shopper sessions: the reference tiles and sessions, the marks' parsing, the SQLite store (the
session-store contract), Feast's string lists, and Feast reading the sessions the store writes."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from recommndr.features.online import decode_strings, encode_strings
from recommndr.features.schema import SESSION_FIELDS, SESSION_VIEW
from recommndr.streaming import sessions
from recommndr.streaming.sessions import (
    MARKS_PER_TILE,
    REDIS_TILES_TTL_S,
    SqliteSessionStore,
    UserTile,
    load_categories,
    merge_marks,
    parse_marks,
    user_tiles_of,
)
from tests import session_store_contract as contract

pytestmark = pytest.mark.unit
T0 = contract.T0
MIN_US = contract.MIN_US


def test_reference_tiles_count_each_mark_once_and_mark_its_kind() -> None:
    evs = [("a", 1, 5, "view", T0), ("a", 1, 5, "view", T0), ("b", 1, 6, "purchase", T0 + 2000),
           ("c", 1, 6, "add_to_cart", T0 + MIN_US), ("d", 2, 5, "click", T0),
           ("e", 1, 6, "purchase", T0 + 2400)]  # fmt: skip  # e: b's kind, product and millisecond
    assert user_tiles_of(evs) == [
        UserTile(1, T0 + MIN_US, 2, ((T0 // 1000, 5, "v"), (T0 // 1000 + 2, 6, "p"))),
        UserTile(1, T0 + 2 * MIN_US, 1, (((T0 + MIN_US) // 1000, 6, "a"),)),
    ]


def test_marks_merge_as_a_set_so_adding_them_again_changes_nothing() -> None:
    a, b, c = (10, 1, "v"), (20, 2, "a"), (30, 3, "p")
    assert merge_marks(None, [b, a, a]) == (2, (a, b))
    assert merge_marks((2, (a, b)), [a, b]) is None  # a duplicate, or a replay after a restore
    assert merge_marks((2, (a, b)), [b, c]) == (3, (a, b, c))
    assert merge_marks(None, []) is None


def test_a_full_tile_keeps_its_newest_marks_whatever_the_batches() -> None:
    marks = [(t, 1 + t % 3, "v") for t in range(MARKS_PER_TILE + 40)]
    at_once = merge_marks(None, marks)
    assert at_once is not None and at_once[0] == MARKS_PER_TILE and at_once[1][0] == (40, 40 % 3 + 1, "v")
    for split in (1, 7, MARKS_PER_TILE - 3):  # the same marks in batches of any size, any order
        tile = None
        for k in range(0, len(marks), split):
            tile = merge_marks(tile, marks[::-1][k : k + split]) or tile
        assert tile == at_once
    assert merge_marks(at_once, [(0, 1, "v"), (39, 1, "v")]) is None  # the dropped oldest, sent again
    n, kept = merge_marks(at_once, [(10_000, 2, "p")]) or (0, ())
    assert n == MARKS_PER_TILE and kept[-1] == (10_000, 2, "p") and kept[0] == at_once[1][1]


def test_marks_are_parsed_canonically_junk_left_out_and_capped() -> None:
    assert parse_marks("20:3:v,10:4:a,20:3:v,020:3:v,x:1:v,5:2:q,7:1,,6:1:v:2,30:9:p") == (
        (10, 4, "a"),
        (20, 3, "v"),
        (30, 9, "p"),
    )
    assert parse_marks(None) == ()
    many = ",".join(f"{t}:1:v" for t in range(MARKS_PER_TILE + 50))
    got = parse_marks(many)
    assert len(got) == MARKS_PER_TILE and got[0][0] == 50  # the newest kept


@pytest.mark.parametrize("values", [[], ["a"], ["Home & Garden", "Toys", "é" * 200]])
def test_string_lists_match_feast_protobuf(values: list[str]) -> None:
    from feast.protos.feast.types.Value_pb2 import StringList, Value

    assert encode_strings(values) == Value(string_list_val=StringList(val=values)).SerializeToString()
    assert decode_strings(encode_strings(values)) == values


def test_categories_come_from_the_products_file(tmp_path: Path) -> None:
    import pandas as pd

    df = pd.DataFrame(
        {"item_id": [1, 2, 3], "category_l2": ["Toys", None, "Books"], "title": ["a", "b", "c"]}
    )
    df.to_parquet(tmp_path / "products.parquet")
    df.to_csv(tmp_path / "p.csv", index=False)
    assert load_categories(tmp_path) == {1: "Toys", 3: "Books"}
    assert load_categories(tmp_path / "p.csv") == {1: "Toys", 3: "Books"}
    (tmp_path / "parts" / "products").mkdir(parents=True)
    df.to_parquet(tmp_path / "parts" / "products" / "part-0.parquet")
    assert load_categories(tmp_path / "parts") == {1: "Toys", 3: "Books"}
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a products table"):
        load_categories(tmp_path / "bad.csv")


class TestSqliteSessionStore:
    @pytest.fixture
    def store(self, tmp_path: Path) -> SqliteSessionStore:
        return SqliteSessionStore(tmp_path / "online.db")

    def test_firings_and_replays_leave_exact_sessions(self, store: SqliteSessionStore) -> None:
        contract.check_firings_and_replays_leave_exact_sessions(store)

    def test_marks_in_any_batches_and_replays_leave_exact_sessions(self, store: SqliteSessionStore) -> None:
        contract.check_marks_in_any_batches_and_replays_leave_exact_sessions(store)

    def test_a_pause_ends_a_session_and_a_late_event_can_join_two(self, store: SqliteSessionStore) -> None:
        contract.check_a_pause_ends_a_session_and_a_late_event_can_join_two(store)

    def test_a_long_session_is_cut_and_old_tiles_go(self, store: SqliteSessionStore) -> None:
        contract.check_a_long_session_is_cut_and_old_tiles_go(store)

    def test_a_tile_off_the_minute_is_refused(self, store: SqliteSessionStore) -> None:
        contract.check_a_tile_off_the_minute_is_refused(store)


def test_feast_reads_the_sessions_the_store_writes(tmp_path: Path) -> None:
    from recommndr.features.repo import apply, write_repo

    db = tmp_path / "online.db"
    fs = apply(write_repo(tmp_path / "repo", "sqlite", db, "redis://unused"))
    store = SqliteSessionStore(db)
    evs = [("a", 5, 11, "view", T0), ("b", 5, 12, "add_to_cart", T0 + MIN_US), ("c", 6, 11, "purchase", T0)]
    store.write_user_tiles(user_tiles_of(evs), {11: "Toys", 12: "Books"})
    ours = store.read_sessions([5, 6])
    got = fs.get_online_features(
        features=[f"{SESSION_VIEW}:{n}" for n in SESSION_FIELDS], entity_rows=[{"user_id": 5}, {"user_id": 6}]
    ).to_dict()
    for name in SESSION_FIELDS:
        assert got[name] == [getattr(ours[5], name), getattr(ours[6], name)], name
    assert got["session_items"] == [[12, 11], [11]] and got["session_categories"] == [
        ["Books", "Toys"],
        ["Toys"],
    ]


def test_tiles_of_shoppers_gone_for_days_are_deleted_their_sessions_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteSessionStore(tmp_path / "online.db")
    now = time.time()
    monkeypatch.setattr(sessions.time, "time", lambda: now - REDIS_TILES_TTL_S - 120)
    store.write_user_tiles(user_tiles_of([("a", 1, 11, "view", T0)]))  # shopper 1, three days ago
    monkeypatch.setattr(sessions.time, "time", lambda: now - 170)
    store.write_user_tiles(user_tiles_of([("b", 2, 12, "view", T0)]))  # shopper 2
    assert store.user_tiles(1)  # not gone two days yet when this write swept
    monkeypatch.setattr(sessions.time, "time", lambda: now - 115)
    store.write_user_tiles(user_tiles_of([("c", 3, 13, "view", T0)]))  # under a minute later: no sweep
    assert not store.user_tiles(1) and _rows(store, 1) == 1  # expired (not read back), not swept yet
    monkeypatch.setattr(sessions.time, "time", lambda: now)
    store.write_user_tiles(user_tiles_of([("d", 3, 14, "view", T0 + MIN_US)]))
    assert not store.user_tiles(1) and store.user_tiles(2) and store.user_tiles(3)
    assert store.read_sessions([1])[1].session_items == [11]  # the session stays
    assert _rows(store, 1) == 0


def test_an_expired_shoppers_old_rows_go_even_those_a_batch_brings_too_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteSessionStore(tmp_path / "online.db")
    now = time.time()
    monkeypatch.setattr(sessions.time, "time", lambda: now - REDIS_TILES_TTL_S - 120)
    store.write_user_tiles(user_tiles_of([("a", 1, 11, "view", T0)]))  # three days ago
    monkeypatch.setattr(sessions.time, "time", lambda: now)
    later = T0 + 5 * 3600 * 1_000_000  # five hours on: T0's tile is outside the session's 4 hours
    store.write_user_tiles(user_tiles_of([("b", 1, 12, "view", T0), ("c", 1, 13, "view", later)]))
    assert list(store.user_tiles(1)) == [later + MIN_US] and _rows(store, 1) == 1


def _rows(store: SqliteSessionStore, user_id: int) -> int:
    sql = f"SELECT COUNT(*) FROM {store.tiles_table} WHERE user_id = ?"
    return int(store._conn().execute(sql, (user_id,)).fetchone()[0])


def test_a_shoppers_old_tiles_live_while_any_of_theirs_was_written_lately(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As Redis's EXPIRE of the shopper's hash: the two days run from their last write, for all
    their tiles; once they ran out the old tiles are no part of a later session, swept or not."""
    store = SqliteSessionStore(tmp_path / "online.db")
    now = time.time()
    monkeypatch.setattr(sessions.time, "time", lambda: now - REDIS_TILES_TTL_S - 120)
    store.write_user_tiles(user_tiles_of([("a", 1, 11, "view", T0), ("b", 2, 21, "view", T0)]))
    monkeypatch.setattr(sessions.time, "time", lambda: now - REDIS_TILES_TTL_S + 60)
    store.write_user_tiles(user_tiles_of([("c", 1, 12, "view", T0 + MIN_US)]))  # shopper 1 again, in time
    monkeypatch.setattr(sessions.time, "time", lambda: now)
    assert store.user_tiles(1) and not store.user_tiles(2)  # 2's ran out, not swept yet
    store.write_user_tiles(user_tiles_of([("d", 2, 22, "view", T0 + 2 * MIN_US)]))  # sweeps
    assert set(store.user_tiles(1)) == {T0 + MIN_US, T0 + 2 * MIN_US}  # both of shopper 1's stay
    assert store.read_sessions([2])[2].session_items == [22]  # the expired tile is not in it
    assert set(store.user_tiles(2)) == {T0 + 3 * MIN_US}


def test_an_older_files_tiles_table_gains_its_write_time(tmp_path: Path) -> None:
    db = tmp_path / "online.db"
    with sqlite3.connect(db) as c:
        c.execute(
            'CREATE TABLE "recommndr_user_session_tiles" (user_id INTEGER, end_us INTEGER, '
            "events INTEGER, marks TEXT, PRIMARY KEY(user_id, end_us))"
        )
        c.execute(
            'INSERT INTO "recommndr_user_session_tiles" VALUES (5, ?, 1, ?)',
            (T0 + MIN_US, f"{T0 // 1000}:7:v"),
        )
    store = SqliteSessionStore(db)
    assert T0 + MIN_US in store.user_tiles(5)  # the old tile counts as written now, not long ago
    store.write_user_tiles(user_tiles_of([("e", 5, 8, "view", T0 + MIN_US + 1000)]))
    assert store.read_sessions([5])[5].session_items == [8, 7]
    again = SqliteSessionStore(db)  # a second opening (another sink) finds the column there
    assert again.read_sessions([5])[5].session_items == [8, 7] and T0 + MIN_US in again.user_tiles(5)


def test_two_sinks_migrating_one_file_at_once_add_the_column_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "online.db"
    SqliteSessionStore(db)  # the other sink got there first
    real = SqliteSessionStore._columns
    calls = []

    def stale_first(self: SqliteSessionStore, c: sqlite3.Connection) -> set[str]:
        calls.append(1)
        return set() if len(calls) == 1 else real(self, c)  # it looked before the other added it

    monkeypatch.setattr(SqliteSessionStore, "_columns", stale_first)
    SqliteSessionStore(db)
    assert len(calls) == 2
