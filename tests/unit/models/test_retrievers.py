"""Every retriever passes the same contract (one mixin), then known-answer tests per model."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.data.interactions import Interactions
from recommndr.params import TrainConfig
from recommndr.ranking.candidates import recent_items
from recommndr.retrieval.als import ALSRetriever
from recommndr.retrieval.base import Query, Retriever
from recommndr.retrieval.popularity import PopularityRetriever
from recommndr.similarity.copurchase import CoPurchaseRetriever, fit_copurchase

pytestmark = pytest.mark.unit
CFG = TrainConfig()


class RetrieverContract:
    """The contract: at most k distinct valid items per query, scores sorted, deterministic, and
    no error for a user it never saw, with or without recent products."""

    @pytest.fixture
    def retriever(self, world_inter: Interactions) -> Retriever:
        raise NotImplementedError

    def _queries(self, inter: Interactions) -> list[Query]:
        ptr, items = recent_items(inter)
        qs = [Query(u, items[ptr[u] : ptr[u + 1]]) for u in range(0, inter.n_users, 7)]
        return [*qs, Query(-1), Query(-1, np.array([0, 1], dtype=np.int64))]

    @pytest.mark.parametrize("k", [1, 10, 50])
    def test_contract(self, retriever: Retriever, world_inter: Interactions, k: int) -> None:
        qs = self._queries(world_inter)
        out = retriever.retrieve(qs, k)
        assert len(out) == len(qs)
        for items, scores in out:
            assert items.shape == scores.shape
            assert items.shape[0] <= k
            assert np.unique(items).shape[0] == items.shape[0]
            assert ((items >= 0) & (items < world_inter.catalogue.n_items)).all()
            assert (np.diff(scores) <= 1e-6).all()
        again = retriever.retrieve(qs, k)
        assert all(np.array_equal(a[0], b[0]) for a, b in zip(out, again, strict=True))

    def test_empty_batch(self, retriever: Retriever) -> None:
        assert retriever.retrieve([], 10) == []


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


def test_the_onnx_index_matches_numpy(world_inter: Interactions) -> None:
    from recommndr.retrieval.index import OnnxIndex, build_index

    als = ALSRetriever.fit(world_inter, CFG.weights, CFG.als.model_copy(update={"factors": 16}), seed=1)
    users = als.user_factors[::5]
    k = min(20, int(als.item_known.sum()))
    scores, items = OnnxIndex(build_index(als.item_factors, als.mask)).search(users, k)
    for row, (it, sc) in enumerate(zip(items, scores, strict=True)):
        ref_items, ref_scores = als.top_k(als.scores(users[row : row + 1])[0], k)
        assert set(it.tolist()) == set(ref_items.tolist())
        np.testing.assert_allclose(sc, ref_scores, rtol=1e-4, atol=1e-5)


def test_als_through_the_norm_bound_index_matches_scoring_everything(world_inter: Interactions) -> None:
    als = ALSRetriever.fit(world_inter, CFG.weights, CFG.als.model_copy(update={"factors": 16}), seed=1)
    ptr, items = recent_items(world_inter)
    qs = [Query(u, items[ptr[u] : ptr[u + 1]]) for u in range(0, world_inter.n_users, 5)] + [
        Query(-1, items[:3]),
        Query(-1, np.zeros(0, np.int64)),
    ]
    exact = als.retrieve(qs, 20)
    als.use_index()
    via_index = als.retrieve(qs, 20)
    for (a, sa), (b, sb) in zip(exact, via_index, strict=True):
        assert a.tolist() == b.tolist()
        np.testing.assert_allclose(sa, sb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 37, 200, 5000])
def test_norm_bound_index_is_exact_on_skewed_norms(k: int) -> None:
    from recommndr.retrieval.index import NormBoundIndex

    rng = np.random.default_rng(3)
    n, f = 4000, 16
    # norms spread over three orders of magnitude, as ALS item factors are; a few unknown products
    factors = (rng.normal(size=(n, f)) * np.exp(rng.normal(scale=1.5, size=n))[:, None]).astype(np.float32)
    known = rng.random(n) > 0.05
    index = NormBoundIndex(factors, known, first_block=256)
    users = rng.normal(size=(40, f)).astype(np.float32)
    users[0] = 0.0  # all scores tie at zero
    users[1] = -users[2]
    kk = min(k, int(known.sum()))
    for u in users:
        scores, items = index.search_one(u, k)
        assert items.shape == (kk,) and known[items].all()
        full = factors[known] @ u
        np.testing.assert_allclose(scores, np.sort(full)[::-1][:kk], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(factors[items] @ u, scores, rtol=1e-5, atol=1e-5)
    assert index.search_one(users[3], 0)[1].shape == (0,)
