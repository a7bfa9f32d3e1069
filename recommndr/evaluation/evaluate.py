"""Compare ``popularity``, ``als`` and ``two_stage`` on the held-out period after the artifacts'
cut-off: overall, for cold users (no event before the cut-off) and for cold items (products with
no event before it; recall over those targets only)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recommndr.bundle import Bundle
from recommndr.data.interactions import load_events
from recommndr.errors import UserInputError
from recommndr.evaluation.metrics import mean_metrics, user_metrics
from recommndr.loading import load_bundle
from recommndr.ranking.candidates import queries_for
from recommndr.ranking.ranker import OnnxRanker
from recommndr.ranking.two_stage import TwoStageRecommender
from recommndr.retrieval.base import I64

log = logging.getLogger(__name__)
KS = (10, 20, 50)
MODELS = ("popularity", "als", "two_stage")
BATCH = 1000  # two_stage queries per ranker call


def targets_after(
    events: pl.DataFrame, bundle: Bundle, cutoff_us: int, end_us: int | None = None
) -> pl.DataFrame:
    """Per (user, product) in the window: the best event type as gain 1..3."""
    ev = events.filter(pl.col("ts_us") >= cutoff_us)
    if end_us is not None:
        ev = ev.filter(pl.col("ts_us") < end_us)
    item = bundle.catalogue.index_of(ev["item_id"].to_numpy())
    ev = ev.with_columns(pl.Series("item", item)).filter(pl.col("item") >= 0)
    return ev.group_by("user_id", "item").agg((pl.col("etype").max() + 1).alias("gain"))


def ranked_lists(
    bundle: Bundle, users: I64, k: int, ranker: OnnxRanker | None = None
) -> dict[str, list[I64]]:
    """Each model's top ``k`` (dense item indices) for ``users`` (user ids; ones the model has
    not seen are cold), from what the bundle knew at its cut-off. ``two_stage`` is the ranking
    /recommendations serves (``TwoStageRecommender.rank``, as ``ServingModel.recommend`` calls
    it), in batches of one ranker call; a failing ranker raises here instead of being measured
    as the retrieval order."""
    uidx = bundle.user_index(users)
    queries = queries_for(uidx, bundle.recent_indptr, bundle.recent_items)
    lists: dict[str, list[I64]] = {}
    als = bundle.als.retrieve(queries, k + 50)
    lists["als"] = [
        a[0][bundle.exclusions.allowed(q.user, a[0])][:k] for q, a in zip(queries, als, strict=True)
    ]
    lists["popularity"] = [p[0] for p in bundle.popularity.retrieve(queries, k)]
    two = TwoStageRecommender(bundle.candidate_generator(), bundle.features, ranker or bundle.ranker)
    lists["two_stage"] = []
    for s in range(0, len(queries), BATCH):
        if s and s % 5000 == 0:
            log.info("two_stage: %s of %s users", f"{s:,}", f"{len(queries):,}")
        lists["two_stage"] += [r.items for r in two.rank(queries[s : s + BATCH], k, degrade=False)]
    return lists


def evaluate(
    data: Path,
    artifacts: Path,
    max_users: int = 20_000,
    seed: int = 0,
    ranker: OnnxRanker | None = None,
    candidates_total: int | None = None,
) -> dict[str, Any]:
    """Held-out metrics of the three models; ``ranker`` and ``candidates_total`` replace the
    bundle's (to measure a smaller ranker or fewer candidates: quality per millisecond)."""
    bundle = load_bundle(artifacts, ranker_threads=2)
    if candidates_total is not None:
        cands = bundle.config.candidates.model_copy(update={"total": candidates_total})
        bundle.config = bundle.config.model_copy(update={"candidates": cands})
    cutoff = int(bundle.manifest["cutoff_us"])
    events = load_events(data)
    t = targets_after(events, bundle, cutoff)
    if t.height == 0:
        raise UserInputError(
            "no events after the artifacts' cut-off: train with a hold-out (train.holdout_days > 0) to evaluate"
        )
    users = np.sort(t["user_id"].unique().to_numpy())
    if users.shape[0] > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    t = t.filter(pl.col("user_id").is_in(users.tolist()))
    per_user = {
        int(u): dict(zip(g["item"].to_list(), g["gain"].to_list(), strict=True))
        for (u,), g in t.group_by("user_id")
    }
    lists = ranked_lists(bundle, users, max(KS), ranker)
    uidx = bundle.user_index(users)
    known_items = bundle.als.item_known
    cold_user = uidx < 0
    result: dict[str, Any] = {}
    for name in MODELS:
        rows, cold_rows, cold_item_rows = [], [], []
        recommended: set[int] = set()
        for j, u in enumerate(users):
            ranked = lists[name][j]
            tg = per_user[int(u)]
            m = user_metrics(ranked, tg, KS)
            rows.append(m)
            if cold_user[j]:
                cold_rows.append(m)
            cold_t = {i: g for i, g in tg.items() if not known_items[i]}
            if cold_t:
                cold_item_rows.append(user_metrics(ranked, cold_t, KS))
            recommended.update(int(i) for i in ranked[:10])
        overall = mean_metrics(rows)
        overall["coverage@10"] = len(recommended) / bundle.catalogue.n_items
        result[name] = overall | {
            "cold_users": mean_metrics(cold_rows) | {"n_users": len(cold_rows)},
            "cold_items": {
                key: v for key, v in mean_metrics(cold_item_rows).items() if key.startswith("recall")
            }
            | {"n_users": len(cold_item_rows)},
        }
    result["_meta"] = {"users": int(users.shape[0]), "cold_users": int(cold_user.sum()), "cutoff_us": cutoff}
    return result
