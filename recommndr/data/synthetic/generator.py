"""Puts the synthetic shop together: catalogue, shoppers, sessions, repeat purchases, prices;
trims to the exact event count and writes the dataset and, apart from it, the ground truth."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from recommndr.data.schema import GROUND_TRUTH_DIR, TS, write_dataset, write_table
from recommndr.data.synthetic import params as cfg
from recommndr.data.synthetic.catalogue import Catalogue, build_catalogue
from recommndr.data.synthetic.population import Population, build_population
from recommndr.data.synthetic.sessions import (
    PURCHASE,
    Events,
    ItemSampler,
    repeat_purchases,
    simulate_sessions,
)

log = logging.getLogger(__name__)
I64 = npt.NDArray[np.int64]
EVENT_TYPE_NAMES = pa.array(["view", "add_to_cart", "purchase"])
EVENTS_PER_SESSION_GUESS = 4.0


@dataclass(frozen=True)
class GenerationSummary:
    scale: str
    seed: int
    n_users: int
    n_items: int
    n_events: int
    n_sessions: int
    out: Path


def generate(scale: str | cfg.Scale, out: Path, seed: int = 42) -> GenerationSummary:
    """Generate the dataset of ``scale`` into ``out`` (products, users, events Parquet files, and
    ``out/ground_truth/`` which training must never read). Deterministic for a given seed."""
    sc = cfg.SCALES[scale] if isinstance(scale, str) else scale
    seeds = np.random.SeedSequence(seed).spawn(6)
    rng_cat, rng_pop, rng_conv, rng_sess, rng_rep, rng_price = (np.random.default_rng(s) for s in seeds)
    log.info("catalogue: %d products", sc.n_items)
    cat = build_catalogue(sc, rng_cat)
    log.info("shoppers: %d users", sc.n_users)
    pop = build_population(sc, cat, rng_pop)
    conversion = rng_conv.lognormal(
        -0.5 * cfg.ITEM_CONVERSION_SIGMA**2, cfg.ITEM_CONVERSION_SIGMA, sc.n_items
    )
    sampler = ItemSampler(cat)

    batches: list[Events] = []
    starts: list[I64] = []
    n_sessions = 0
    total = 0
    per_session = EVENTS_PER_SESSION_GUESS
    while total < sc.n_events:
        deficit = sc.n_events - total
        want = int(np.ceil(deficit * cfg.OVERGENERATE / per_session))
        users = _session_users(pop, want, first=not batches, rng=rng_sess)
        ev, st = simulate_sessions(users, cat, pop, sampler, conversion, rng_sess)
        ev.session += n_sessions
        n_sessions += users.shape[0]
        rep, rep_st = repeat_purchases(
            ev.take(np.flatnonzero(ev.etype == PURCHASE)), cat, n_sessions, rng_rep
        )
        n_sessions += rep_st.shape[0]
        batches += [ev, rep]
        starts += [st, rep_st]
        total += len(ev) + len(rep)
        per_session = max(1.0, (len(ev) + len(rep)) / (users.shape[0] + rep_st.shape[0]))
        log.info("sessions: %d so far, %d events (%.2f per session)", n_sessions, total, per_session)
    events = _drop_durable_rebuys(Events.concat(batches), cat)
    start = np.concatenate(starts)
    events, session_id, pos = _trim(events, start, sc.n_events, rng_sess)

    table = _events_table(events, session_id, pos, cat, rng_price)
    write_dataset(out, cat.table, pop.table, table)
    _write_ground_truth(out, cat, pop, conversion)
    summary = GenerationSummary(
        sc.name, seed, sc.n_users, sc.n_items, len(events), int(np.unique(session_id).shape[0]), Path(out)
    )
    log.info("wrote %s", summary)
    return summary


def _session_users(pop: Population, n: int, first: bool, rng: np.random.Generator) -> I64:
    """Users of about ``n`` new sessions: Poisson counts in proportion to activity and to the
    time each user shops in the period (some registered users never come back, as in real shops).
    Top-up batches draw exactly ``n`` by the same weight."""
    w = pop.activity * (pop.last_day - pop.first_day) / cfg.N_DAYS
    if first:
        counts = rng.poisson(w * (n / float(w.sum())))
        return np.repeat(np.arange(w.shape[0], dtype=np.int64), counts)
    cdf = np.cumsum(w)
    return np.asarray(np.searchsorted(cdf, rng.random(n) * cdf[-1]), dtype=np.int64)


def _drop_durable_rebuys(events: Events, cat: Catalogue) -> Events:
    """Nobody buys the same durable product twice: a later purchase of one (drawn independently in
    another session) is dropped, leaving that session's cart abandoned."""
    buy = np.flatnonzero((events.etype == PURCHASE) & (cat.repeat_cycle_days[events.item] == 0))
    key = events.user[buy] * cat.leaf.shape[0] + events.item[buy]
    order = np.lexsort((events.ts[buy], key))
    dup = np.zeros(buy.shape[0], dtype=bool)
    dup[order[1:]] = key[order[1:]] == key[order[:-1]]
    keep = np.ones(len(events), dtype=bool)
    keep[buy[dup]] = False
    return events.take(np.flatnonzero(keep))


def _trim(events: Events, start: I64, n_events: int, rng: np.random.Generator) -> tuple[Events, I64, I64]:
    """Keep whole sessions in random order up to exactly ``n_events`` events (the last one cut),
    number sessions by start time and give each event its position within its session."""
    n_sess = start.shape[0]
    size = np.bincount(events.session, minlength=n_sess)
    order = rng.permutation(n_sess)
    before = np.empty(n_sess, dtype=np.int64)
    before[order] = np.cumsum(size[order]) - size[order]
    first = np.cumsum(size) - size  # events of a session are contiguous and in time order
    pos = np.arange(len(events)) - np.repeat(first, size)
    keep = np.flatnonzero(before[events.session] + pos < n_events)
    events, pos = events.take(keep), pos[keep]
    kept = np.unique(events.session)
    rank = np.empty(n_sess, dtype=np.int64)
    rank[kept[np.argsort(start[kept], kind="stable")]] = np.arange(1, kept.shape[0] + 1)
    order_ts = np.argsort(events.ts, kind="stable")
    events = events.take(order_ts)
    return events, rank[events.session], pos[order_ts]


def _events_table(
    events: Events, session_id: I64, pos: I64, cat: Catalogue, rng: np.random.Generator
) -> pa.Table:
    """Arrow events with ids, type names and the price paid (list price less promotions: most
    products around Black Friday, a few each week)."""
    day = (events.ts - cfg.PERIOD_START.astype(np.int64)) // cfg.US_PER_DAY
    h = (events.item * 2654435761 + (day // 7) * 40503) % 1000
    black_friday = (day >= 327) & (day <= 335) & ((events.item * 2654435761) % 10 < 5)
    discount = np.where(black_friday, 0.2, np.where(h < 40, 0.1, 0.0))
    price = np.round(cat.price[events.item] * (1.0 - discount), 2)
    sid = pa.array(session_id)
    event_id = pc.binary_join_element_wise(
        pc.cast(sid, pa.string()), pc.cast(pa.array(pos), pa.string()), "-"
    )
    return pa.table(
        {
            "event_id": event_id,
            "user_id": pa.array(events.user + 1),
            "item_id": pa.array(events.item + 1),
            "event_type": EVENT_TYPE_NAMES.take(pa.array(events.etype)),
            "ts": pa.array(events.ts, type=pa.int64()).cast(TS),
            "session_id": sid,
            "price": pa.array(price),
            "quantity": pa.array(events.qty),
        }
    )


def _write_ground_truth(
    out: Path, cat: Catalogue, pop: Population, conversion: npt.NDArray[np.float64]
) -> None:
    """The generator's hidden truth, for offline simulation only: users' tastes and price tiers,
    planted complements, products' appeal. Never an input to training."""
    root = Path(out) / GROUND_TRUTH_DIR
    paths = pa.array([" > ".join(t) for t in cat.leaf_names])
    cols: dict[str, pa.Array] = {"user_id": pa.array(np.arange(1, pop.tier.shape[0] + 1, dtype=np.int64))}
    for k in range(3):
        cols[f"taste_{k + 1}"] = paths.take(pa.array(pop.tastes[:, k]))
        cols[f"taste_{k + 1}_weight"] = pa.array(pop.taste_w[:, k])
    cols["price_tier"] = pa.array(cfg.PRICE_TIERS).take(pa.array(pop.tier))
    cols["activity"] = pa.array(pop.activity)
    cols["buyer"] = pa.array(pop.buyer)
    write_table(pa.table(cols), root, "user_tastes")
    has = np.flatnonzero(cat.complement >= 0)
    write_table(
        pa.table({"item_id": pa.array(has + 1), "complement_item_id": pa.array(cat.complement[has] + 1)}),
        root,
        "complements",
    )
    alive = cat.weekly_appeal > 0
    mean_appeal = cat.weekly_appeal.sum(axis=0) / np.maximum(alive.sum(axis=0), 1)
    write_table(
        pa.table(
            {
                "item_id": pa.array(np.arange(1, cat.leaf.shape[0] + 1, dtype=np.int64)),
                "appeal": pa.array(mean_appeal),
                "conversion": pa.array(conversion),
            }
        ),
        root,
        "item_appeal",
    )
