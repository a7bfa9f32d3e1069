"""Score every model on a protocol's test part (``protocols.py``): the baselines
(``baselines.py``), the first stage alone (``als``: the served ALS with its fold-in) and
``two_stage`` — what ``/recommendations`` serves — fit on the same training part. Per model:
ndcg, recall, map and hit rate at 10, 20 and 50, catalogue coverage, novelty and intra-list
diversity of the top 10, and the figures for cold users (no event in training) and cold items
(products with no event in training; recall over those targets only)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recommndr.bundle import Bundle
from recommndr.data.interactions import Catalogue, Interactions, build_interactions, load_events
from recommndr.errors import UserInputError
from recommndr.evaluation import baselines
from recommndr.evaluation.metrics import mean_metrics, user_metrics
from recommndr.evaluation.protocols import Split, graded_targets, span_us
from recommndr.loading import load_bundle
from recommndr.ranking.candidates import queries_for
from recommndr.ranking.ranker import OnnxRanker
from recommndr.ranking.two_stage import TwoStageRecommender
from recommndr.retrieval.base import I64, Query

log = logging.getLogger(__name__)
KS = (10, 20, 50)
# the baselines first, then the first stage and the served model
MODELS = ("global_popularity", "popularity", "sar", "als_plain", "als", "two_stage")
BASELINES = MODELS[:4]
BATCH = 1000  # two_stage queries per ranker call


def model_lists(
    bundle: Bundle,
    users: I64,
    k: int,
    ranker: OnnxRanker | None = None,
    explore: float = 0.0,
    models: tuple[str, ...] = ("als", "two_stage"),
) -> dict[str, list[I64]]:
    """The bundle's ``als`` (first stage: known users' factors, new users folded in from their
    recent products, the bundle's exclusions) and ``two_stage`` top ``k`` (dense item indices) for
    ``users`` (user ids). ``two_stage`` is the ranking /recommendations serves
    (``TwoStageRecommender.rank``), in batches of one ranker call; a failing ranker raises here
    instead of being measured as the retrieval order. ``models``: which of the two."""
    uidx = bundle.user_index(users)
    queries = queries_for(uidx, bundle.recent_indptr, bundle.recent_items)
    lists: dict[str, list[I64]] = {"als": []}
    for s in range(0, len(queries) if "als" in models else 0, baselines.BATCH):
        block = queries[s : s + baselines.BATCH]
        vecs = {i: v for i, q in enumerate(block) if (v := bundle.als.user_vector(q)) is not None}
        have = list(vecs)
        scores = bundle.als.scores(np.stack([vecs[i] for i in have])) if have else None
        row_of = {i: r for r, i in enumerate(have)}
        for i, q in enumerate(block):
            if i not in row_of or scores is None:
                lists["als"].append(np.zeros(0, np.int64))
                continue
            banned = baselines.banned_items(bundle.exclusions, q.user)
            lists["als"].append(baselines.top_k_masked(scores[row_of[i]], k, banned))
    if "two_stage" in models:
        lists["two_stage"] = two_stage_lists(bundle, users, k, ranker, explore, queries)
    return lists


def two_stage_lists(
    bundle: Bundle,
    users: I64,
    k: int,
    ranker: OnnxRanker | None = None,
    explore: float = 0.0,
    queries: list[Query] | None = None,
) -> list[I64]:
    """The ``two_stage`` top ``k`` (dense item indices) of ``users`` (user ids): what
    /recommendations serves them without online features (``TwoStageRecommender.rank``), in
    batches of one ranker call; a failing ranker raises instead of being measured as the
    retrieval order."""
    if queries is None:
        queries = queries_for(bundle.user_index(users), bundle.recent_indptr, bundle.recent_items)
    two = TwoStageRecommender(bundle.candidate_generator(), bundle.features, ranker or bundle.ranker)
    out: list[I64] = []
    for s in range(0, len(queries), BATCH):
        if s and s % 5000 == 0:
            log.info("two_stage: %s of %s users", f"{s:,}", f"{len(queries):,}")
        out += [r.items for r in two.rank(queries[s : s + BATCH], k, degrade=False, explore=explore)]
    return out


def popularity_lists(bundle: Bundle, uidx: I64, k: int) -> list[I64]:
    """The popularity retriever's lists (category-aware, recency-weighted), minus exclusions."""
    queries = queries_for(uidx, bundle.recent_indptr, bundle.recent_items)
    out = []
    for q in queries:
        banned = baselines.banned_items(bundle.exclusions, q.user)
        items = bundle.popularity.retrieve([q], k + banned.shape[0])[0][0]
        out.append(items[~np.isin(items, banned)][:k] if banned.size else items[:k])
    return out


def sample_users(targets: pl.DataFrame, max_users: int, seed: int) -> I64:
    users = np.sort(targets["user_id"].unique().to_numpy())
    if users.shape[0] > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return users.astype(np.int64)


def score_split(
    split: Split,
    catalogue: Catalogue,
    bundle: Bundle,
    max_users: int = 20_000,
    seed: int = 0,
    ranker: OnnxRanker | None = None,
    models: tuple[str, ...] = MODELS,
    threads: int = 0,
    explore: float = 0.0,
    diversity: bool = True,
    inter: Interactions | None = None,
) -> dict[str, Any]:
    """Every model of ``models`` on ``split`` — ``bundle`` must be fit on ``split.train`` (its
    users and exclusions are the training part's) — for at most ``max_users`` test users;
    ``explore``: two_stage's exploration share (``TwoStageRecommender.explore``); without
    ``diversity`` no ``diversity@10`` (it needs the products x products co-occurrence counts);
    ``inter``: the training part's interactions, when the caller has them (a search scores many
    fits of one split)."""
    if split.targets.height == 0:
        raise UserInputError("the test part has no events about known products")
    if inter is None:
        inter = build_interactions(catalogue, split.train, split.end_us)
    if inter.cutoff_us != split.end_us or not np.array_equal(inter.user_ids, bundle.user_ids):
        raise ValueError("the bundle was not fit on this split's training part")
    users = sample_users(split.targets, max_users, seed)
    t = split.targets.filter(pl.col("user_id").is_in(users.tolist()))
    per_user = {
        int(u): dict(zip(g["item"].to_list(), g["gain"].to_list(), strict=True))
        for (u,), g in t.group_by("user_id")
    }
    k = max(KS)
    uidx = bundle.user_index(users)
    excl = bundle.exclusions
    lists: dict[str, list[I64]] = {}
    # the co-occurrence counts (products x products) feed sar and diversity only: a search that
    # scores two_stage alone does not pay for them
    cooc = baselines.Cooccurrence.fit(inter) if "sar" in models or diversity else None
    # shoppers per product among each one's most recent products: the co-occurrence diagonal
    item_users = np.asarray(
        baselines.user_item_binary(inter, baselines.MAX_ITEMS_PER_USER).sum(axis=0), dtype=np.float32
    ).ravel()
    if "global_popularity" in models:
        lists["global_popularity"] = baselines.static_lists(baselines.global_popularity(inter), uidx, k, excl)
    if "popularity" in models:
        lists["popularity"] = popularity_lists(bundle, uidx, k)
    if "sar" in models:
        assert cooc is not None
        lists["sar"] = baselines.sar_lists(inter, cooc, bundle.config.weights, uidx, k, excl)
    if "als_plain" in models:
        uf, itf = baselines.fit_plain_als(inter, bundle.config.seed, threads)
        lists["als_plain"] = baselines.factor_lists(uf, itf, uidx, k, excl)
    if "als" in models or "two_stage" in models:
        lists |= model_lists(bundle, users, k, ranker, explore, models)
    known_items = bundle.als.item_known
    cold_user = uidx < 0
    result: dict[str, Any] = {}
    for name in models:
        rows, cold_rows, cold_item_rows = [], [], []
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
        top10 = [r[:10] for r in lists[name]]
        overall = mean_metrics(rows)
        overall["coverage@10"] = (
            float(np.unique(np.concatenate(top10)).shape[0] / catalogue.n_items) if top10 else 0.0
        )
        overall["novelty@10"] = baselines.novelty(top10, item_users, inter.n_users)
        if cooc is not None and diversity:
            overall["diversity@10"] = baselines.diversity(top10, cooc)
        result[name] = overall | {
            "cold_users": mean_metrics(cold_rows) | {"n_users": len(cold_rows)},
            "cold_items": {
                key: v for key, v in mean_metrics(cold_item_rows).items() if key.startswith("recall")
            }
            | {"n_users": len(cold_item_rows)},
        }
    result["_meta"] = {
        "protocol": split.protocol,
        "users": int(users.shape[0]),
        "cold_users": int(cold_user.sum()),
        "cutoff_us": split.end_us,
        "seen_removed": split.exclude_seen,
    }
    return result


def has_holdout(bundle: Bundle, events: pl.DataFrame) -> bool:
    """Whether the data has events after the bundle's cut-off (a bundle trained with a hold-out
    by an earlier version); a bundle fit on every event has none."""
    return bool(events.height) and span_us(events)[1] > int(bundle.manifest["cutoff_us"])


def evaluate(
    data: Path, artifacts: Path, max_users: int = 20_000, seed: int = 0, models: tuple[str, ...] = MODELS
) -> dict[str, Any]:
    """The bundle itself on the events after its cut-off (temporal protocol): for bundles that
    were fit before a hold-out (by earlier versions)."""
    bundle = load_bundle(artifacts, ranker_threads=2)
    cutoff = int(bundle.manifest["cutoff_us"])
    events = load_events(data)
    if not has_holdout(bundle, events):
        raise UserInputError(
            "no events after the artifacts' cut-off: the bundle was fit on every event; evaluate refits "
            "with its parameters instead (recommndr evaluate)"
        )
    split = Split(
        "temporal",
        events.filter(pl.col("ts_us") < cutoff),
        graded_targets(events.filter(pl.col("ts_us") >= cutoff), bundle.catalogue),
        exclude_seen=False,
        end_us=cutoff,
    )
    return score_split(split, bundle.catalogue, bundle, max_users, seed, models=models)
