"""Co-purchase retrieval: the retriever contract, then the planted complement."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.data.interactions import Interactions
from recommndr.params import TrainConfig
from recommndr.retrieval.base import Retriever
from recommndr.similarity.copurchase import CoPurchaseRetriever, fit_copurchase
from tests.retriever_contract import RetrieverContract

pytestmark = pytest.mark.unit
CFG = TrainConfig()


class TestCoPurchase(RetrieverContract):
    @pytest.fixture
    def retriever(self, world_inter: Interactions) -> Retriever:
        return CoPurchaseRetriever(fit_copurchase(world_inter, CFG.copurchase), recent_items=5)

    def test_planted_complement_comes_out_and_popular_item_does_not_dominate(
        self, world_inter: Interactions
    ) -> None:
        table = fit_copurchase(world_inter, CFG.copurchase)
        cat = world_inter.catalogue
        a, b, popular = cat.index_of(np.array([1, 2, 3]))
        nbr, score = table.neighbours(int(a), 5)
        assert nbr[0] == b
        assert popular not in nbr[:1]
        assert score[0] > 0.3
        assert table.pair_scores(np.array([a]), np.array([b]))[0] == pytest.approx(score[0])
