"""Popularity retrieval: the retriever contract, then known answers (category-aware, cold start,
new arrivals)."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.data.interactions import Interactions
from recommndr.params import TrainConfig
from recommndr.retrieval.base import Query, Retriever
from recommndr.retrieval.popularity import PopularityRetriever
from tests.retriever_contract import RetrieverContract

pytestmark = pytest.mark.unit
CFG = TrainConfig()


class TestPopularity(RetrieverContract):
    @pytest.fixture
    def retriever(self, world_inter: Interactions) -> Retriever:
        return PopularityRetriever.fit(world_inter, CFG.weights, CFG.popularity)

    def test_new_user_gets_popular_items_of_the_category_viewed(
        self, retriever: PopularityRetriever, world_inter: Interactions
    ) -> None:
        cat = world_inter.catalogue
        viewed = cat.index_of(np.array([205]))  # one Toys product
        items, _ = retriever.retrieve([Query(-1, viewed)], 10)[0]
        assert (cat.l1[items[:8]] == cat.l1[viewed[0]]).all()
        toys = np.flatnonzero(cat.l1 == cat.l1[viewed[0]])
        best_toy = toys[np.argmax(retriever.pop[toys])]
        assert best_toy in items[:3]

    def test_user_with_no_history_gets_the_overall_list(self, retriever: PopularityRetriever) -> None:
        items, _ = retriever.retrieve([Query(-1)], 5)[0]
        assert np.array_equal(items, retriever.popular(5)[0])

    def test_new_product_surfaces_through_recent_popularity(
        self, retriever: PopularityRetriever, world_inter: Interactions
    ) -> None:
        cat = world_inter.catalogue
        new = int(cat.index_of(np.array([999]))[0])
        assert retriever.new_arrival[new]
        books = cat.index_of(np.array([10]))
        items, _ = retriever.retrieve([Query(-1, books)], 10)[0]
        assert new in items
