"""The Redis product-window store passes the window-store contract against a real redis-server, and
its records are Feast's layout (Feast's Redis online store reads them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from recommndr.features.schema import PRODUCT_FIELDS, PRODUCT_VIEW
from recommndr.streaming.windows import TILE_US, RedisWindowStore, Tile
from tests import window_store_contract as contract

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_server: tuple[str, subprocess.Popen[bytes]]) -> RedisWindowStore:
    return RedisWindowStore(redis_server[0])


def test_firings_and_replays_leave_exact_windows(store: RedisWindowStore) -> None:
    contract.check_firings_and_replays_leave_exact_windows(store)


def test_time_moves_products_out_of_the_hour(store: RedisWindowStore) -> None:
    contract.check_time_moves_products_out_of_the_hour_and_old_tiles_go(store)


def test_a_long_jump_of_the_clock_still_empties_the_hour(store: RedisWindowStore) -> None:
    contract.check_a_long_jump_of_the_clock_still_empties_the_hour(store)


def test_a_tile_from_the_future_never_moves_the_clock(store: RedisWindowStore) -> None:
    contract.check_a_tile_from_the_future_never_moves_the_clock(store)


def test_a_burst_of_views_puts_a_product_first(store: RedisWindowStore) -> None:
    contract.check_a_burst_of_views_puts_a_product_first(store)


def test_feast_reads_the_redis_product_windows(
    store: RedisWindowStore, redis_server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    from recommndr.features.repo import apply, write_repo

    fs = apply(write_repo(tmp_path / "repo", "redis", tmp_path / "unused.db", redis_server[0]))
    store.write_tiles([Tile(5, contract.T0 + TILE_US, 7, 2, 1)])
    got = fs.get_online_features(
        features=[f"{PRODUCT_VIEW}:{n}" for n in PRODUCT_FIELDS], entity_rows=[{"item_id": 5}]
    ).to_dict()
    ours = store.read([5])[5]
    assert {n: got[n][0] for n in PRODUCT_FIELDS} == ours.values()
