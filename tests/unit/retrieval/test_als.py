"""ALS retrieval: the retriever contract, known answers, and a loud failure on NaN factors."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.data.interactions import Interactions
from recommndr.params import TrainConfig
from recommndr.retrieval.als import ALSRetriever, ModelFitError, fit_als
from recommndr.retrieval.base import Query, Retriever
from tests.retriever_contract import RetrieverContract

pytestmark = pytest.mark.unit
CFG = TrainConfig()


class TestALS(RetrieverContract):
    @pytest.fixture
    def retriever(self, world_inter: Interactions) -> Retriever:
        return ALSRetriever.fit(world_inter, CFG.weights, CFG.als.model_copy(update={"factors": 16}), seed=1)

    def test_loyal_user_gets_their_category(self, plain_inter: Interactions) -> None:
        als = ALSRetriever.fit(plain_inter, CFG.weights, CFG.als.model_copy(update={"factors": 16}), seed=1)
        cat = plain_inter.catalogue
        for user_id, want in ((5, 0), (6, 1), (7, 2), (8, 3)):  # user u only touches category (u - 1) % 4
            u = int(plain_inter.user_index(np.array([user_id]))[0])
            items, _ = als.retrieve([Query(u)], 10)[0]
            assert (cat.l1[items] == cat.l1[cat.index_of(np.array([want * 100 + 1]))[0]]).all()

    def test_new_user_is_folded_in_from_recent_products(
        self, retriever: ALSRetriever, world_inter: Interactions
    ) -> None:
        cat = world_inter.catalogue
        garden = cat.index_of(np.array([101, 102, 103]))
        items, _ = retriever.retrieve([Query(-1, garden)], 10)[0]
        assert (cat.l1[items[:5]] == cat.l1[garden[0]]).all()


def test_nan_factors_fail_before_anything_is_published(
    world_inter: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    original = AlternatingLeastSquares.fit

    def poisoned(self, *a, **kw):  # type: ignore[no-untyped-def]
        original(self, *a, **kw)
        self.item_factors[0, 0] = np.nan

    monkeypatch.setattr(AlternatingLeastSquares, "fit", poisoned)
    cfg = TrainConfig()
    with pytest.raises(ModelFitError, match="NaN"):
        fit_als(world_inter, cfg.weights, cfg.als.model_copy(update={"factors": 8, "iterations": 2}), seed=1)
