"""Recommendations: for a user (two-stage, with the A/B variant), similar products, frequently
bought together, popular and trending."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request

from recommndr.errors import NotFoundError
from recommndr.serving.deps import (
    Champion,
    ExcludeItems,
    ExcludeStates,
    Explore,
    ItemId,
    K,
    State,
    UserId,
    items_json,
    json_response,
)
from recommndr.serving.filters import parse_exclude
from recommndr.serving.model import Recommendation, ServingModel
from recommndr.serving.schemas import CategoryListOut, ItemListOut, RecommendationsOut, errors
from recommndr.serving.traffic import CHALLENGER, CHAMPION, bucket_of

router = APIRouter(tags=["recommendations"])


def item_index(m: ServingModel, item_id: int) -> int:
    idx = m.catalogue.index_of(item_id)
    if idx < 0:
        raise NotFoundError(f"unknown item_id {item_id}")
    return idx


@router.get("/recommendations/{user_id}", response_model=RecommendationsOut, responses=errors(422, 500, 503))
async def recommendations(
    request: Request,
    state: State,
    user_id: UserId,
    k: K = 10,
    category: str | None = None,
    exclude: ExcludeStates = "",
    exclude_items: ExcludeItems = "",
    explore: Explore = None,
) -> Any:
    """The top ``k`` for a shopper; ``exclude`` and ``exclude_items`` leave products out before
    the top ``k`` is cut, so the list stays ``k`` long while ``k`` products remain; ``explore``
    gives that share of the list to new products (default: the API's setting)."""
    share = state.settings.explore_share if explore is None else explore
    filtered = parse_exclude(exclude, exclude_items)
    variant, m = state.slots.pick(user_id)
    request.state.variant = variant
    online_features = state.online
    stream = state.stream.snapshot  # memory only: a background task refreshes it
    # an injected fault (the challenger's, fault injection on): a 500 here, or a delay
    delay = m.fault.enter() if m.fault is not None else 0.0

    def work() -> tuple[list[Recommendation], bool, str | None, bool]:
        if delay:
            time.sleep(delay)  # the slow model holds its thread
        online, answered = online_features.get(user_id) if online_features is not None else (None, True)
        return (*m.recommend(user_id, k, category, online, filtered, share, stream), answered)

    if state.pool is None:
        if delay:  # no thread to hold: wait without stopping the event loop
            await asyncio.sleep(delay)
            delay = 0.0
        recs, cold, fallback, answered = work()
    else:  # off the event loop: it keeps parsing requests, and slow ones wait their turn fairly
        recs, cold, fallback, answered = await asyncio.get_running_loop().run_in_executor(state.pool, work)
    degraded = [fallback] if fallback else []
    if not answered:
        degraded.append("online_features_unavailable")
    state.metrics.served.labels(variant, "cold_start" if cold else "two_stage").inc()
    state.metrics.impressions.labels(variant).inc(len(recs))
    if variant in (CHAMPION, CHALLENGER):
        state.metrics.canary_bucket.labels(variant, str(bucket_of(user_id)), "impressions").inc(len(recs))
    for reason in degraded:
        state.metrics.degraded.labels(reason).inc()
    return json_response({"user_id": user_id, "model_version": m.version, "variant": variant,
                          "cold_start": cold, "degraded": degraded, "items": items_json(recs)})  # fmt: skip


@router.get("/similar_items/{item_id}", response_model=ItemListOut, responses=errors(404, 422, 503))
async def similar_items(m: Champion, item_id: ItemId, k: K = 10) -> Any:
    recs = m.similar(item_index(m, item_id), k)
    return json_response({"item_id": item_id, "model_version": m.version, "items": items_json(recs)})


@router.get(
    "/frequently_bought_together/{item_id}", response_model=ItemListOut, responses=errors(404, 422, 503)
)
async def frequently_bought_together(m: Champion, item_id: ItemId, k: K = 5) -> Any:
    recs = m.frequently_bought_together(item_index(m, item_id), k)
    return json_response({"item_id": item_id, "model_version": m.version, "items": items_json(recs)})


@router.get("/popular", response_model=CategoryListOut, responses=errors(422, 503))
async def popular(state: State, m: Champion, k: K = 10, category: str | None = None) -> Any:
    """The most popular products now; while the stream is live (``source``), lifted by their
    events in the last hour."""
    stream = state.stream.snapshot
    recs = m.popular_recs(k, m.catalogue.category_mask(category) if category else None, stream)
    return json_response({"category": category, "model_version": m.version, "source": stream.source,
                          "as_of": stream.as_of, "items": items_json(recs)})  # fmt: skip


@router.get("/trending", response_model=CategoryListOut, responses=errors(422, 503))
async def trending(state: State, m: Champion, k: K = 10, category: str | None = None) -> Any:
    """Products rising fastest. While the streaming job is live (``source`` live, ``as_of`` its
    clock): the last hour's events against the day's hourly average (at least 3 in the hour);
    else (``source`` batch) last week's daily events against the month's (at least 3 last week)."""
    mask = m.catalogue.category_mask(category) if category else None
    stream = state.stream.snapshot
    found = m.trending_live(k, mask, stream)  # None unless live with products trending
    items, scores = found if found is not None else m.trending(k, mask)
    return json_response({"category": category, "model_version": m.version,
                          "source": "live" if found is not None else "batch",
                          "as_of": stream.as_of if found is not None else None, "items": [
        {"item_id": int(m.catalogue.item_ids[i]), "score": round(float(s), 6), "reason": "trending"}
        for i, s in zip(items, scores, strict=True)
    ]})  # fmt: skip
