"""Sessions and events: who shops when, what they look at, what they put in the cart and buy.

Everything is vectorised over sessions and events: a session's attributes are repeated over its
views with ``np.repeat``, products are drawn for all views at once (:mod:`.sampling`), and the
events of all sessions are ordered with one ``lexsort``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from recommndr.data.synthetic import params as cfg
from recommndr.data.synthetic.catalogue import Catalogue
from recommndr.data.synthetic.population import Population
from recommndr.data.synthetic.sampling import sample_rows, sample_segments
from recommndr.data.synthetic.seasonality import HOUR, daily_intensity, gift_season_days

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
VIEW, CART, PURCHASE = 0, 1, 2


@dataclass
class Events:
    """Columnar events. ``session`` is a batch-local session index; ``ts`` is µs since the epoch."""

    session: I64
    user: I64
    item: I64
    etype: npt.NDArray[np.int8]
    ts: I64
    qty: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return int(self.session.shape[0])

    def take(self, idx: I64) -> Events:
        return Events(*(getattr(self, f.name)[idx] for f in fields(self)))

    @staticmethod
    def concat(parts: list[Events]) -> Events:
        return Events(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Events)))


class ItemSampler:
    """Draws products inside a leaf for a given week and price tier, proportionally to their
    appeal that week and to how the tier reacts to their price."""

    def __init__(self, cat: Catalogue) -> None:
        self.n_items = cat.leaf.shape[0]
        self.perm = np.argsort(cat.leaf, kind="stable")
        n_leaves = len(cat.leaf_names)
        counts = np.bincount(cat.leaf, minlength=n_leaves)
        self.leaf_end = np.cumsum(counts)
        self.leaf_start = self.leaf_end - counts
        slope = np.array(cfg.PRICE_TIER_SLOPE)
        price_w = np.exp(slope[:, None] * cat.price_z[None, :])  # (tiers, items)
        w = cat.weekly_appeal[:, None, :] * price_w[None, :, :]  # (weeks, tiers, items)
        self.cdf = np.cumsum(w[:, :, self.perm].ravel())

    def draw(self, leaf: I64, week: I64, tier: I64, rng: np.random.Generator) -> I64:
        base = (week * len(cfg.PRICE_TIERS) + tier) * self.n_items
        pos = sample_segments(self.cdf, base + self.leaf_start[leaf], base + self.leaf_end[leaf], rng)
        return np.asarray(self.perm[pos - base], dtype=np.int64)


def session_starts(first_day: I64, last_day: I64, rng: np.random.Generator) -> I64:
    """Start time (µs since the epoch) of sessions whose users shop in ``[first_day, last_day)``."""
    day_cdf = np.cumsum(daily_intensity())
    day = sample_segments(day_cdf, first_day, last_day, rng)
    hour_cdf = np.cumsum(HOUR)
    hour = sample_segments(hour_cdf, np.zeros_like(day), np.full_like(day, 24), rng)
    sec = hour * 3600 + rng.integers(0, 3600, day.shape[0])
    start: I64 = cfg.PERIOD_START.astype(np.int64) + day * cfg.US_PER_DAY + sec * cfg.US_PER_SECOND
    return start


def _gaps(median_s: float, n: int, rng: np.random.Generator) -> I64:
    secs = rng.lognormal(np.log(median_s), 0.9, n)
    return np.asarray(np.maximum(secs * cfg.US_PER_SECOND, cfg.US_PER_SECOND).astype(np.int64))


def _quantities(cat: Catalogue, item: I64, rng: np.random.Generator) -> npt.NDArray[np.int32]:
    consumable = cat.repeat_cycle_days[item] > 0
    q = np.where(
        consumable, np.minimum(rng.geometric(0.6, item.shape[0]), 6), 1 + (rng.random(item.shape[0]) < 0.05)
    )
    return q.astype(np.int32)


def simulate_sessions(
    session_user: I64,
    cat: Catalogue,
    pop: Population,
    sampler: ItemSampler,
    conversion: F64,
    rng: np.random.Generator,
) -> tuple[Events, I64]:
    """Browse, cart and check out in the given sessions; returns the events and session starts."""
    n_s = session_user.shape[0]
    start = session_starts(pop.first_day[session_user], pop.last_day[session_user], rng)
    day = (start - cfg.PERIOD_START.astype(np.int64)) // cfg.US_PER_DAY
    week = day // 7
    tier = pop.tier[session_user]

    # What the session is about: one of the user's tastes, or (more in the gift season) a
    # category chosen by seasonal demand.
    explore_p = np.where(gift_season_days()[day], cfg.EXPLORE_HOLIDAY, cfg.EXPLORE)
    explore = rng.random(n_s) < explore_p
    taste_slot = sample_rows(pop.taste_w, session_user, rng)
    seasonal_leaf_w = cat.l1_season[:, cat.leaf_l1] * cat.leaf_appeal[None, :]
    session_leaf = np.where(
        explore, sample_rows(seasonal_leaf_w, week, rng), pop.tastes[session_user, taste_slot]
    )

    # How many products the session looks at: many bounce, the rest have a long tail.
    n_views = np.where(
        rng.random(n_s) < cfg.BOUNCE,
        1,
        2 + np.floor(rng.lognormal(cfg.VIEWS_LOG_MEAN, cfg.VIEWS_LOG_SIGMA, n_s)).astype(np.int64),
    )
    n_views = np.minimum(n_views, cfg.MAX_VIEWS)
    v_sess = np.repeat(np.arange(n_s), n_views)
    v_pos = np.arange(v_sess.shape[0]) - np.repeat(np.cumsum(n_views) - n_views, n_views)
    v_user = session_user[v_sess]
    secondary = (rng.random(v_sess.shape[0]) < cfg.SECONDARY_LEAF) & (v_pos > 0)
    other_leaf = pop.tastes[v_user, sample_rows(pop.taste_w, v_user, rng)]
    v_leaf = np.where(secondary, other_leaf, session_leaf[v_sess])
    v_item = sampler.draw(v_leaf, week[v_sess], tier[v_sess], rng)
    review = (rng.random(v_sess.shape[0]) < cfg.REVIEW) & (v_pos > 0)
    src = np.maximum.accumulate(np.where(review, 0, np.arange(v_sess.shape[0])))
    v_item = v_item[src]

    # Add to cart: depends on the user's propensity, the product's conversion and re-views.
    p_cart = cfg.CART_RATE * pop.buyer[v_user] * conversion[v_item] * np.where(review, 1.8, 1.0)
    carted = rng.random(v_sess.shape[0]) < np.minimum(p_cart, 0.9)
    c_idx = np.flatnonzero(carted)
    _, first = np.unique(v_sess[c_idx] * sampler.n_items + v_item[c_idx], return_index=True)
    c_idx = c_idx[np.sort(first)]
    c_sess, c_item, c_key = v_sess[c_idx], v_item[c_idx], 2.0 * v_pos[c_idx] + 0.5

    # Planted complements: carting a product often leads to viewing and carting its complement.
    comp = cat.complement[c_item]
    ok = comp >= 0
    ok[ok] = cat.weekly_appeal[week[c_sess[ok]], comp[ok]] > 0
    k_idx = np.flatnonzero(ok & (rng.random(c_item.shape[0]) < cfg.COMPLEMENT_VIEW))
    k_sess, k_item, k_key = c_sess[k_idx], comp[k_idx], c_key[k_idx] + 0.2
    k_cart = rng.random(k_idx.shape[0]) < cfg.COMPLEMENT_CART
    already = np.isin(k_sess * sampler.n_items + k_item, c_sess * sampler.n_items + c_item)
    k_cart &= ~already
    all_c_sess = np.concatenate([c_sess, k_sess[k_cart]])
    all_c_item = np.concatenate([c_item, k_item[k_cart]])
    all_c_key = np.concatenate([c_key, k_key[k_cart] + 0.05])

    # Checkout: some carts are abandoned; in the others most carted items are bought.
    has_cart = np.zeros(n_s, dtype=bool)
    has_cart[all_c_sess] = True
    p_checkout = np.minimum(cfg.CHECKOUT * np.sqrt(pop.buyer[session_user]), 0.95)
    checkout = has_cart & (rng.random(n_s) < p_checkout)
    bought = checkout[all_c_sess] & (rng.random(all_c_sess.shape[0]) < cfg.CART_ITEM_PURCHASED)
    c_qty = _quantities(cat, all_c_item, rng)
    p_sess, p_item, p_qty = all_c_sess[bought], all_c_item[bought], c_qty[bought]
    p_key = 2.0 * n_views[p_sess] + 1.0 + np.arange(p_sess.shape[0]) * 1e-6

    session = np.concatenate([v_sess, k_sess, all_c_sess, p_sess])
    key = np.concatenate([2.0 * v_pos, k_key, all_c_key, p_key])
    etype = np.concatenate(
        [
            np.full(v_sess.shape[0] + k_sess.shape[0], VIEW, np.int8),
            np.full(all_c_sess.shape[0], CART, np.int8),
            np.full(p_sess.shape[0], PURCHASE, np.int8),
        ]
    )
    item = np.concatenate([v_item, k_item, all_c_item, p_item])
    qty = np.concatenate([np.ones(v_sess.shape[0] + k_sess.shape[0], np.int32), c_qty, p_qty])
    order = np.lexsort((key, session))
    ev = Events(
        session[order],
        session_user[session[order]],
        item[order],
        etype[order],
        np.zeros(order.shape[0], np.int64),
        qty[order],
    )
    ev.ts = _timestamps(ev.session, ev.etype, start, rng)
    return ev, start


def _timestamps(session: I64, etype: npt.NDArray[np.int8], start: I64, rng: np.random.Generator) -> I64:
    """Session start plus cumulated think times; events must be grouped by session, in order."""
    n = session.shape[0]
    gap = np.where(
        etype == VIEW,
        _gaps(cfg.VIEW_GAP_MEDIAN_S, n, rng),
        np.where(etype == CART, _gaps(cfg.CART_GAP_MEDIAN_S, n, rng), cfg.US_PER_SECOND),
    )
    prev_type = np.concatenate([[VIEW], etype[:-1]])
    first_purchase = (etype == PURCHASE) & (prev_type != PURCHASE)
    gap = np.where(first_purchase, _gaps(cfg.CHECKOUT_GAP_MEDIAN_S, n, rng), gap)
    is_first = np.concatenate([[True], session[1:] != session[:-1]])
    gap[is_first] = 0
    cs = np.cumsum(gap)
    first_idx = np.maximum.accumulate(np.where(is_first, np.arange(n), 0))
    return np.asarray(start[session] + cs - cs[first_idx], dtype=np.int64)


def repeat_purchases(
    purchases: Events, cat: Catalogue, first_session: int, rng: np.random.Generator
) -> tuple[Events, I64]:
    """Consumables are bought again after their cycle: each repeat is a short session (view,
    add to cart, purchase of the same product), and repeats can repeat. Returns the events and
    the starts of the new sessions, numbered from ``first_session``."""
    parts, starts = [], []
    cur = purchases
    end_of_period = cfg.PERIOD_START.astype(np.int64) + cfg.N_DAYS * cfg.US_PER_DAY
    next_session = first_session
    for _ in range(cfg.REPEAT_ROUNDS):
        cycle = cat.repeat_cycle_days[cur.item]
        again = (cycle > 0) & (rng.random(len(cur)) < cfg.REPEAT_PURCHASE)
        delay_days = cycle * cur.qty * rng.lognormal(0.0, 0.25, len(cur))
        when = cur.ts + (delay_days * cfg.US_PER_DAY).astype(np.int64)
        again &= when < end_of_period - 3600 * cfg.US_PER_SECOND
        idx = np.flatnonzero(again)
        if idx.size == 0:
            break
        m = idx.size
        sess = next_session + np.arange(m, dtype=np.int64)
        next_session += m
        qty = _quantities(cat, cur.item[idx], rng)
        t0 = when[idx]
        t1 = t0 + _gaps(cfg.VIEW_GAP_MEDIAN_S, m, rng)
        t2 = t1 + _gaps(cfg.CHECKOUT_GAP_MEDIAN_S, m, rng)
        ev = Events(
            np.repeat(sess, 3),
            np.repeat(cur.user[idx], 3),
            np.repeat(cur.item[idx], 3),
            np.tile(np.array([VIEW, CART, PURCHASE], np.int8), m),
            np.column_stack([t0, t1, t2]).ravel(),
            np.column_stack([np.ones(m, np.int32), qty, qty]).ravel(),
        )
        parts.append(ev)
        starts.append(t0)
        cur = ev.take(np.flatnonzero(ev.etype == PURCHASE))
    if not parts:
        empty = np.zeros(0, np.int64)
        return Events(empty, empty, empty, np.zeros(0, np.int8), empty, np.zeros(0, np.int32)), empty
    return Events.concat(parts), np.concatenate(starts)
