"""The one ranking path (``TwoStageRecommender.rank``, what the API serves and evaluation
measures) on a world with known answers: personal lists, the cold-start list, category masks, a
batch equal to its queries one at a time, and the ranker-failure degrade."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.bundle import Bundle
from recommndr.ranking.candidates import SOURCE_POPULARITY
from recommndr.ranking.two_stage import Ranked, TwoStageRecommender, popular, retrieval_order
from recommndr.retrieval.base import Query
from recommndr.retrieval.popularity import PopularityRetriever

pytestmark = pytest.mark.unit


def _rec(b: Bundle) -> TwoStageRecommender:
    return TwoStageRecommender(b.candidate_generator(), b.features, b.ranker)


def _query(b: Bundle, user_id: int) -> Query:
    u = int(b.user_index(np.array([user_id]))[0])
    return Query(u, b.recent_items[b.recent_indptr[u] : b.recent_indptr[u + 1]])


def test_user_who_only_buys_in_one_category_gets_it_first(world_bundle: Bundle) -> None:
    cat = world_bundle.catalogue
    for user_id in (5, 6, 7, 8):
        q = _query(world_bundle, user_id)
        r = _rec(world_bundle).rank([q], 10)[0]
        assert not (r.cold or r.popular or r.degraded)
        assert r.items.shape[0] == 10 and (np.diff(r.scores) <= 1e-6).all()
        assert (cat.l1[r.items[:5]] == cat.l1[q.recent_items[0]]).all()
        assert np.array_equal(r.trend, world_bundle.features.item_trend[r.items])


def test_new_user_takes_the_cold_start_path_the_api_serves(world_bundle: Bundle) -> None:
    rec = _rec(world_bundle)
    pop = world_bundle.popularity
    for k in (10, 60):
        r = rec.rank([Query(-1)], k)[0]
        assert r.cold and r.popular and not r.degraded
        want_items, want_scores = pop.popular(k)
        assert np.array_equal(r.items, want_items) and np.array_equal(r.scores, want_scores)
        assert r.items.shape[0] == k and (r.sources == SOURCE_POPULARITY).all()
    # with fewer popularity candidates per category than k, still the k most popular (the
    # retriever's retrieve() stops at per_category: what evaluation measured before)
    narrow = PopularityRetriever(world_bundle.catalogue, pop.pop, pop.new_arrival, per_category=10)
    gen = world_bundle.candidate_generator()
    gen.popularity = narrow
    r = TwoStageRecommender(gen, world_bundle.features, world_bundle.ranker).rank([Query(-1)], 30)[0]
    assert r.items.shape[0] == 30 and np.array_equal(r.items, narrow.popular(30)[0])
    assert narrow.retrieve([Query(-1)], 30)[0][0].shape[0] == 10
    # a new visitor who looked at coffee products: personal, through the ranker
    coffee = world_bundle.catalogue.index_of(np.array([305, 306]))
    r = rec.rank([Query(-1, coffee)], 10)[0]
    assert not (r.cold or r.popular)
    assert (world_bundle.catalogue.l1[r.items[:5]] == world_bundle.catalogue.l1[coffee[0]]).all()


def test_a_category_mask_keeps_only_its_products(world_bundle: Bundle) -> None:
    cat = world_bundle.catalogue
    rec = _rec(world_bundle)
    books = cat.l1 == 0
    warm = rec.rank([_query(world_bundle, 6)], 10, [books])[0]  # user 6 shops in Garden
    assert not warm.popular and warm.items.size and books[warm.items].all()
    cold = rec.rank([Query(-1)], 10, [books])[0]
    assert cold.cold and np.array_equal(cold.items, popular(world_bundle.popularity, 10, books)[0])
    # no candidate in the mask (its one product bought since the cut-off): the popular list
    # within it, not the cold-start path
    one = np.zeros(cat.n_items, dtype=bool)
    one[5] = True
    q = _query(world_bundle, 6)
    q = Query(q.user, q.recent_items, exclude=np.array([5]))
    assert not one[world_bundle.candidate_generator().generate([q])[0].items].any()
    r = rec.rank([q], 10, [one])[0]
    assert r.popular and not r.cold and np.array_equal(r.items, np.flatnonzero(one))
    nothing = rec.rank([q], 10, [np.zeros(cat.n_items, dtype=bool)])[0]
    assert nothing.items.size == 0 and nothing.popular
    with pytest.raises(ValueError, match="2 masks for 1 queries"):
        rec.rank([q], 10, [None, None])


def _same(a: Ranked, b: Ranked) -> None:
    assert (a.cold, a.popular, a.degraded) == (b.cold, b.popular, b.degraded)
    for x, y in ((a.items, b.items), (a.scores, b.scores), (a.sources, b.sources), (a.trend, b.trend)):
        np.testing.assert_array_equal(x, y)


def test_a_batch_ranks_each_query_as_alone(world_bundle: Bundle) -> None:
    """Evaluation ranks 1000 queries per ranker call, the API one: the same answers."""
    cat = world_bundle.catalogue
    coffee = world_bundle.catalogue.index_of(np.array([305, 306]))
    queries = [_query(world_bundle, u) for u in range(1, 41)] + [Query(-1), Query(-1, coffee)]
    masks = [None if j % 3 else cat.l1 == j % 4 for j in range(len(queries))]
    rec = _rec(world_bundle)
    for m in (None, masks):
        batch = rec.rank(queries, 20, m)
        assert len(batch) == len(queries)
        for j, q in enumerate(queries):
            _same(batch[j], rec.rank([q], 20, None if m is None else [m[j]])[0])


def test_a_failing_ranker_degrades_to_retrieval_order_or_raises(
    world_bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = _rec(world_bundle)
    queries = [_query(world_bundle, 5), Query(-1)]
    before = rec.rank(queries, 10)

    def broken(X: object) -> object:
        raise RuntimeError("onnxruntime session lost")

    monkeypatch.setattr(rec.ranker, "score", broken)
    warm, cold = rec.rank(queries, 10)
    assert warm.degraded and not cold.degraded
    _same(cold, before[1])
    cands = world_bundle.candidate_generator().generate([queries[0]])[0]
    order = np.argsort(-retrieval_order(cands), kind="stable")[:10]
    assert np.array_equal(warm.items, cands.items[order])
    with pytest.raises(RuntimeError, match="session lost"):
        rec.rank(queries, 10, degrade=False)


def test_exploration_takes_every_nth_place_for_new_products(world_bundle: Bundle) -> None:
    from recommndr.ranking.candidates import SOURCE_EXPLORE

    rec = _rec(world_bundle)
    q = _query(world_bundle, 5)
    plain = rec.rank([q], 10)[0]
    assert rec.rank([q], 10, explore=0.0)[0].items.tolist() == plain.items.tolist()
    # pretend the products the plain list does not hold are new
    rec.new_products = np.setdiff1d(np.arange(world_bundle.catalogue.n_items), plain.items)
    r = rec.rank([q], 10, explore=0.2)[0]
    explored = (r.sources & SOURCE_EXPLORE) > 0
    assert np.flatnonzero(explored).tolist() == [4, 9]  # the 5th and the 10th place
    assert set(r.items[explored].tolist()) <= set(rec.new_products.tolist())
    assert r.items[~explored].tolist() == plain.items[:8].tolist()  # the ranker's order, shifted down
    assert np.array_equal(r.scores, plain.scores) and np.array_equal(
        r.trend, world_bundle.features.item_trend[r.items]
    )
    # the new products offered are the ones the shopper's factors score best
    vec = rec.generator.als.user_vector(q)
    scores = world_bundle.als.item_factors[rec.new_products] @ vec
    assert set(r.items[explored].tolist()) == set(rec.new_products[np.argsort(-scores)[:2]].tolist())
    # a longer list holds the same share; a mask and the shopper's exclusions are respected
    assert ((rec.rank([q], 50, explore=0.2)[0].sources & SOURCE_EXPLORE) > 0).sum() == 10
    mask = world_bundle.catalogue.l1 == world_bundle.catalogue.l1[plain.items[0]]
    m = rec.rank([q], 10, masks=[mask], explore=0.2)[0]
    assert mask[m.items].all()
    banned = Query(q.user, q.recent_items, exclude=r.items[explored])
    again = rec.rank([banned], 10, explore=0.2)[0]
    assert not set(again.items[(again.sources & SOURCE_EXPLORE) > 0].tolist()) & set(
        r.items[explored].tolist()
    )
    # with no new product to offer the list stays as ranked
    rec.new_products = np.zeros(0, np.int64)
    assert rec.rank([q], 10, explore=0.2)[0].items.tolist() == plain.items.tolist()
