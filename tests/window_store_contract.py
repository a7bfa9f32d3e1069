"""What every product-window store must do (``recommndr.streaming.windows``): the SQLite store's
unit tests and the Redis store's integration tests run the same checks."""

from __future__ import annotations

import random

from recommndr.streaming.windows import (
    KEEP_US,
    TILE_US,
    TRENDING_MIN_EVENTS,
    Tile,
    WindowStore,
    tiles_of,
    windows_of,
)

T0 = 1_699_999_980_000_000  # a whole minute (tiles end on minute boundaries), in the past


def random_events(
    n: int = 4000, items: int = 20, hours: float = 3.0, seed: int = 1
) -> list[tuple[str, int, str, int]]:
    rng = random.Random(seed)
    kinds = ["view", "view", "view", "add_to_cart", "purchase"]
    return [
        (f"e{k}", rng.randrange(items), rng.choice(kinds), T0 + rng.randrange(int(hours * 3600e6)))
        for k in range(n)
    ]


def check_firings_and_replays_leave_exact_windows(store: WindowStore) -> None:
    """Tiles fired early (partial counts), then whole, in batches, then some fired again (a replay
    from a checkpoint): the stored tiles and windows are exactly those of the events."""
    events = random_events()
    events += events[:200]  # delivered twice: counted once
    ref = tiles_of(events)
    order = sorted(ref, key=lambda t: t.end_us)
    for k in range(0, len(order), 9):
        chunk = order[k : k + 9]
        store.write_tiles([Tile(t.item_id, t.end_us, max(0, t.views - 1), t.carts, 0) for t in chunk])
        store.write_tiles(chunk)
    store.write_tiles(order[-40:])  # a replay writes the same values
    as_of = order[-1].end_us
    assert store.status() is not None and store.status().as_of_us == as_of  # type: ignore[union-attr]
    got = store.read(list(range(21)))
    assert 20 not in got  # a product without events has no row
    for item in range(20):
        tiles = {t.end_us: (t.views, t.carts, t.purchases) for t in ref if t.item_id == item}
        assert store.tiles(item) == tiles
        assert got[item] == windows_of(item, tiles, as_of)
    assert sum(w.views_24h + w.carts_24h + w.purchases_24h for w in got.values()) == len(
        {e[0] for e in events}
    )
    top = store.top(5)
    expected = sorted(((i, w.trend) for i, w in got.items() if w.trending), key=lambda x: (-x[1], -x[0]))
    assert [round(s, 6) for _, s in top] == [round(s, 6) for _, s in expected[:5]]


def check_time_moves_products_out_of_the_hour_and_old_tiles_go(store: WindowStore) -> None:
    """A product nobody touches any more falls out of the last hour (and the trending index) as the
    stream's clock moves on, and its tiles are deleted once a day old."""
    hot, other = 1, 2
    store.write_tiles([Tile(hot, T0 + TILE_US, TRENDING_MIN_EVENTS + 5, 1, 1)])
    assert [i for i, _ in store.top(10)] == [hot]
    store.write_tiles([Tile(other, T0 + 61 * TILE_US, 1, 0, 0)])  # an hour later
    w = store.read([hot])[hot]
    assert (w.views_1h, w.views_24h, w.window_end_us) == (0, TRENDING_MIN_EVENTS + 5, T0 + 61 * TILE_US)
    assert store.top(10) == []
    store.write_tiles([Tile(other, T0 + TILE_US + KEEP_US, 1, 0, 0)])  # a day later
    assert store.tiles(hot) == {}


def check_a_long_jump_of_the_clock_still_empties_the_hour(store: WindowStore) -> None:
    """A quiet shop, a job down for hours: the clock jumps 3 h at once and the products of the hour
    before it still leave the hour and the trending index."""
    store.write_tiles(
        [Tile(1, T0 + 30 * TILE_US, TRENDING_MIN_EVENTS + 5, 0, 0), Tile(2, T0 + 31 * TILE_US, 9, 0, 0)]
    )
    assert {i for i, _ in store.top(10)} == {1, 2}
    store.write_tiles([Tile(3, T0 + 211 * TILE_US, 1, 0, 0)])
    got = store.read([1, 2])
    assert (got[1].views_1h, got[2].views_1h, got[1].views_24h) == (0, 0, TRENDING_MIN_EVENTS + 5)
    assert store.top(10) == []


def check_a_tile_from_the_future_never_moves_the_clock(store: WindowStore) -> None:
    import time

    now_end = (time.time_ns() // 1000 // TILE_US) * TILE_US
    store.write_tiles([Tile(1, now_end, 5, 0, 0)])
    store.write_tiles(
        [Tile(2, 253_402_300_740_000_000 - 253_402_300_740_000_000 % TILE_US, 5, 0, 0)]
    )  # year 9999
    status = store.status()
    assert status is not None and status.as_of_us == now_end and store.tiles(2) == {}
    assert store.read([1])[1].views_1h == 5


def check_a_burst_of_views_puts_a_product_first(store: WindowStore) -> None:
    base = [Tile(i, T0 + m * TILE_US, 5, 1, 0) for i in range(10) for m in range(1, 30)]
    store.write_tiles(base)
    burst = Tile(7, T0 + 30 * TILE_US, 400, 0, 0)
    store.write_tiles([*(Tile(i, T0 + 30 * TILE_US, 5, 1, 0) for i in range(10) if i != 7), burst])
    assert store.top(3)[0][0] == 7
