"""Product windows: the fold of tiles into 1 h / 24 h windows, the reference tiles of events, the
SQLite store (the window-store contract), and Feast reading what it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommndr.features.online import decode_double, encode_double
from recommndr.features.schema import PRODUCT_FIELDS, PRODUCT_VIEW
from recommndr.streaming.windows import (
    TILE_US,
    SqliteWindowStore,
    Tile,
    is_transient_write_error,
    tile_end_us,
    tiles_of,
    trend_score,
    windows_of,
)
from tests import window_store_contract as contract

pytestmark = pytest.mark.unit
T0 = contract.T0


def test_a_tile_counts_in_a_window_when_its_end_is_within_it() -> None:
    tiles = {T0 + TILE_US: (1, 0, 0), T0 + 60 * TILE_US: (2, 0, 0), T0 + 61 * TILE_US: (4, 1, 1)}
    w = windows_of(9, tiles, T0 + 61 * TILE_US)  # the first tile ended exactly an hour before
    assert (w.views_1h, w.carts_1h, w.purchases_1h) == (6, 1, 1)
    assert (w.views_24h, w.events_24h) == (7, 9)
    assert w.trend == round(trend_score(8, 9), 6) and w.window_end_us == T0 + 61 * TILE_US
    assert windows_of(9, tiles, T0 + 60 * TILE_US).views_24h == 3  # a tile past the clock waits


def test_reference_tiles_count_each_event_id_once_in_its_minute() -> None:
    events = [("a", 1, "view", T0), ("a", 1, "view", T0), ("b", 1, "purchase", T0 + TILE_US - 1),
              ("c", 1, "add_to_cart", T0 + TILE_US), ("d", 2, "click", T0)]  # fmt: skip
    assert tile_end_us(T0) == T0 + TILE_US and tile_end_us(T0 + TILE_US) == T0 + 2 * TILE_US
    assert tiles_of(events) == [Tile(1, T0 + TILE_US, 1, 0, 1), Tile(1, T0 + 2 * TILE_US, 0, 1, 0)]


@pytest.mark.parametrize("value", [0.0, 1.5, -2.25, 1e300, 24.000001])
def test_doubles_match_feast_protobuf(value: float) -> None:
    from feast.protos.feast.types.Value_pb2 import Value

    assert encode_double(value) == Value(double_val=value).SerializeToString()
    assert decode_double(Value(double_val=value).SerializeToString()) == value


def test_a_tile_off_the_minute_is_refused(tmp_path: Path) -> None:
    store = SqliteWindowStore(tmp_path / "online.db")
    with pytest.raises(ValueError, match="not a tile"):
        store.write_tiles([Tile(1, T0 + 5, 1, 0, 0)])
    assert store.status() is None


class TestSqliteWindowStore:
    @pytest.fixture
    def store(self, tmp_path: Path) -> SqliteWindowStore:
        return SqliteWindowStore(tmp_path / "online.db")

    def test_firings_and_replays_leave_exact_windows(self, store: SqliteWindowStore) -> None:
        contract.check_firings_and_replays_leave_exact_windows(store)

    def test_time_moves_products_out_of_the_hour(self, store: SqliteWindowStore) -> None:
        contract.check_time_moves_products_out_of_the_hour_and_old_tiles_go(store)

    def test_a_long_jump_of_the_clock_still_empties_the_hour(self, store: SqliteWindowStore) -> None:
        contract.check_a_long_jump_of_the_clock_still_empties_the_hour(store)

    def test_a_tile_from_the_future_never_moves_the_clock(self, store: SqliteWindowStore) -> None:
        contract.check_a_tile_from_the_future_never_moves_the_clock(store)

    def test_a_burst_of_views_puts_a_product_first(self, store: SqliteWindowStore) -> None:
        contract.check_a_burst_of_views_puts_a_product_first(store)


def test_feast_reads_the_product_windows_the_store_writes(tmp_path: Path) -> None:
    from recommndr.features.repo import apply, write_repo

    db = tmp_path / "online.db"
    fs = apply(write_repo(tmp_path / "repo", "sqlite", db, "redis://unused"))
    store = SqliteWindowStore(db)
    store.write_tiles([Tile(5, T0 + TILE_US, 7, 2, 1), Tile(6, T0 + 2 * TILE_US, 1, 0, 0)])
    ours = store.read([5, 6])
    got = fs.get_online_features(
        features=[f"{PRODUCT_VIEW}:{n}" for n in PRODUCT_FIELDS], entity_rows=[{"item_id": 5}, {"item_id": 6}]
    ).to_dict()
    for name in PRODUCT_FIELDS:
        assert got[name] == [getattr(ours[5], name), getattr(ours[6], name)], name
    assert got["views_1h"] == [7, 1] and got["window_end_us"] == [T0 + 2 * TILE_US] * 2


def _sqlite_error(tmp_path: Path, sql: str) -> Exception:
    import sqlite3

    held = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    held.execute("CREATE TABLE IF NOT EXISTS t (a)")
    held.execute("BEGIN IMMEDIATE")  # the write lock, held
    other = sqlite3.connect(tmp_path / "x.db", timeout=0, isolation_level=None)
    try:
        other.execute(sql)
    except sqlite3.Error as exc:
        return exc
    finally:
        held.close()
        other.close()
    raise AssertionError(f"{sql} did not fail")


def test_which_store_write_errors_are_an_outage_worth_retrying(tmp_path: Path) -> None:
    """The job retries a write in place only while the store is down; any other error fails the
    task (Flink restarts it from the checkpoint) instead of being retried for good."""
    import redis.exceptions as r

    transient: list[BaseException] = [
        _sqlite_error(tmp_path, "INSERT INTO t VALUES (1)"),  # database is locked
        ConnectionRefusedError(),
        TimeoutError(),
        r.ConnectionError("Error 111 connecting"),
        r.TimeoutError("Timeout reading from socket"),
        r.BusyLoadingError("Redis is loading the dataset in memory"),
        r.ReadOnlyError("You can't write against a read only replica."),
        r.ResponseError(
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist"
        ),
    ]
    permanent: list[BaseException] = [
        _sqlite_error(tmp_path, "INSERT INTO missing VALUES (1)"),  # no such table
        _sqlite_error(tmp_path, "INSERT INTO t (b) VALUES (1)"),  # no such column
        PermissionError(13, "Permission denied"),
        r.AuthenticationError("invalid username-password pair"),
        r.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ValueError("not a tile of a shopper's session: (-1, 5)"),
        KeyError("views"),
    ]
    assert "locked" in str(transient[0]) and "no such table" in str(permanent[0])
    assert [is_transient_write_error(e) for e in transient] == [True] * len(transient)
    assert [is_transient_write_error(e) for e in permanent] == [False] * len(permanent)
