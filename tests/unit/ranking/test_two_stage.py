"""The trained two-stage recommender on a world with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.bundle import Bundle
from recommndr.ranking.two_stage import TwoStageRecommender
from recommndr.retrieval.base import Query

pytestmark = pytest.mark.unit


def _rec(b: Bundle) -> TwoStageRecommender:
    return TwoStageRecommender(b.candidate_generator(), b.features, b.ranker)


def test_user_who_only_buys_in_one_category_gets_it_first(world_bundle: Bundle) -> None:
    cat = world_bundle.catalogue
    for user_id in (5, 6, 7, 8):
        u = int(world_bundle.user_index(np.array([user_id]))[0])
        recent = world_bundle.recent_items[world_bundle.recent_indptr[u] : world_bundle.recent_indptr[u + 1]]
        items, scores = _rec(world_bundle).recommend([Query(u, recent)], 10)[0]
        assert items.shape[0] == 10 and (np.diff(scores) <= 1e-6).all()
        want = cat.l1[recent[0]]
        assert (cat.l1[items[:5]] == want).all()


def test_new_user_takes_the_cold_start_path(world_bundle: Bundle) -> None:
    rec = _rec(world_bundle)
    items, _ = rec.recommend([Query(-1)], 10)[0]
    assert np.array_equal(items, world_bundle.popularity.retrieve([Query(-1)], 10)[0][0])
    # a new visitor who looked at coffee products
    toys = world_bundle.catalogue.index_of(np.array([305, 306]))
    items, _ = rec.recommend([Query(-1, toys)], 10)[0]
    assert (world_bundle.catalogue.l1[items[:5]] == world_bundle.catalogue.l1[toys[0]]).all()
