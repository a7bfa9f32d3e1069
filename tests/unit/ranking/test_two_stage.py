"""The one ranking path (``TwoStageRecommender.rank``, what the API serves and evaluation
measures) on a world with known answers: personal lists, the cold-start list, category masks, a
batch equal to its queries one at a time, and the ranker-failure degrade."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from recommndr.bundle import Bundle
from recommndr.params import CandidateConfig
from recommndr.ranking.candidates import SOURCE_POPULARITY, Candidates, Exclusions, LivePopular
from recommndr.ranking.two_stage import LIVE_LIFT, Ranked, TwoStageRecommender, popular, retrieval_order
from recommndr.retrieval.base import Query
from recommndr.retrieval.popularity import PopularityRetriever

pytestmark = pytest.mark.unit


def _rec(b: Bundle) -> TwoStageRecommender:
    return TwoStageRecommender(b.candidate_generator(), b.features, b.ranker)


def _narrow(b: Bundle, bought: dict[int, list[int]] | None = None) -> TwoStageRecommender:
    """10 candidates per query of the world's 80 products (its own would be all of them), and
    ``bought`` (dense user -> dense items) as durables bought before the cut-off."""
    gen = b.candidate_generator()
    gen.cfg = CandidateConfig(als=10, copurchase=0, popularity=10, total=10)
    if bought:
        n = b.catalogue.n_items
        keys = np.sort(np.array([u * n + i for u, items in bought.items() for i in items], dtype=np.int64))
        gen.exclusions = Exclusions(keys, n, gen.exclusions.repeatable_l3)
    return TwoStageRecommender(gen, b.features, b.ranker)


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
    # no candidate in the mask (the candidates' one product there bought since the cut-off):
    # the popular list within it, not the cold-start path, and without the excluded product
    narrow = _narrow(world_bundle)
    q = _query(world_bundle, 6)
    cands = narrow.generator.generate([q])[0].items
    bought, other = int(cands[0]), int(np.setdiff1d(np.arange(cat.n_items), cands)[0])
    two = np.zeros(cat.n_items, dtype=bool)
    two[[bought, other]] = True
    q = Query(q.user, q.recent_items, exclude=np.array([bought]))
    assert not two[narrow.generator.generate([q])[0].items].any()
    r = narrow.rank([q], 10, [two])[0]
    assert r.popular and not r.cold and r.items.tolist() == [other]
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
    queries += [Query(q.user, q.recent_items, np.arange(j, 60, 3)) for j, q in enumerate(queries[:6])]
    queries.append(Query(-1, exclude=np.arange(0, 80, 2)))
    masks = [None if j % 3 else cat.l1 == j % 4 for j in range(len(queries))]
    for rec in (_rec(world_bundle), _narrow(world_bundle)):  # the narrow one tops lists up
        for m in (None, masks):
            batch = rec.rank(queries, 20, m)
            assert len(batch) == len(queries)
            for j, q in enumerate(queries):
                _same(batch[j], rec.rank([q], 20, None if m is None else [m[j]])[0])
                assert not np.isin(batch[j].items, q.exclude).any()


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


def test_excluded_products_are_not_offered_and_the_next_ones_move_up(world_bundle: Bundle) -> None:
    rec = _rec(world_bundle)
    q = _query(world_bundle, 5)
    before = rec.rank([q], 10)[0]
    gone = before.items[:3]
    r = rec.rank([Query(q.user, q.recent_items, gone)], 10)[0]
    assert r.items.shape[0] == 10 and not np.isin(r.items, gone).any()
    assert np.array_equal(r.items[:7], before.items[3:]), "the rest keep their order"
    assert not (r.cold or r.popular or r.degraded)


def test_a_list_filtered_short_is_topped_up_to_k_with_popular_products(
    world_bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = world_bundle
    q = _query(b, 5)
    gone = [int(b.popularity.popular(1)[0][0])]  # the most popular product: a top-up's first pick
    durables = [int(i) for i in b.popularity.popular(4)[0][1:]]  # the next three: bought durables
    narrow = _narrow(b, {q.user: durables})
    cands = narrow.generator.generate([Query(q.user, q.recent_items, np.array(gone))])[0]
    assert cands.items.shape[0] == 10 and not np.isin(cands.items, gone + durables).any()
    r = narrow.rank([Query(q.user, q.recent_items, np.array(gone))], 25)[0]
    assert r.items.shape[0] == 25 and np.unique(r.items).shape[0] == 25
    assert not (r.cold or r.popular or r.degraded)
    assert not np.isin(r.items, gone + durables).any(), "the top-up skips what the query excludes"
    assert np.isin(cands.items, r.items).all(), "every candidate is still in the list"
    added = ~np.isin(r.items, cands.items)
    assert added.sum() == 15 and (r.sources[added] == SOURCE_POPULARITY).all()
    assert (np.diff(r.scores) <= 1e-6).all(), "the top-up is ranked with the candidates"
    want = popular(b.popularity, 15, None, np.concatenate([cands.items, gone, durables]))[0]
    assert set(r.items[added].tolist()) == set(want.tolist()), "the most popular products that remain"
    # within a category mask: only as many as the category has left
    books = b.catalogue.l1 == 0
    r = narrow.rank([Query(q.user, q.recent_items, np.array(gone))], 25, [books])[0]
    left = np.setdiff1d(np.flatnonzero(books), gone + durables)
    assert not r.popular and r.items.shape[0] == left.shape[0] and np.isin(r.items, left).all()
    # the ranker down: still topped up, in the retrieval order
    monkeypatch.setattr(narrow.ranker, "score", _broken)
    r = narrow.rank([Query(q.user, q.recent_items, np.array(gone))], 25)[0]
    assert r.degraded and r.items.shape[0] == 25 and not np.isin(r.items, gone + durables).any()


def _broken(X: object) -> object:
    raise RuntimeError("onnxruntime session lost")


def test_the_cold_start_list_skips_excluded_products(world_bundle: Bundle) -> None:
    rec = _rec(world_bundle)
    pop = world_bundle.popularity
    top = pop.popular(12)[0]
    r = rec.rank([Query(-1, exclude=top[[0, 2]])], 10)[0]
    assert r.cold and r.popular and r.items.tolist() == np.delete(top, [0, 2]).tolist()
    books = world_bundle.catalogue.l1 == 0
    in_books = popular(pop, 12, books)[0]
    r = rec.rank([Query(-1, exclude=in_books[:1])], 10, [books])[0]
    assert r.cold and r.items.tolist() == in_books[1:11].tolist()
    # a filter that empties the global top list: the rest of the catalogue, by popularity
    gen = world_bundle.candidate_generator()
    short = PopularityRetriever(world_bundle.catalogue, pop.pop, pop.new_arrival, pop.per_category)
    short.global_top = top[:5]
    gen.popularity = short
    r = TwoStageRecommender(gen, world_bundle.features, world_bundle.ranker).rank(
        [Query(-1, exclude=top[:4])], 6
    )[0]
    assert r.items.tolist() == top[4:10].tolist()
    everything = np.arange(world_bundle.catalogue.n_items)
    left = rec.rank([Query(-1, exclude=everything[2:])], 10)[0]
    assert sorted(left.items.tolist()) == [0, 1], "as many as remain"


def test_a_top_up_candidate_has_the_signals_of_a_popularity_candidate(world_bundle: Bundle) -> None:
    """``extend`` gives a product what ``generate`` gives one that only popularity retrieved."""
    gen = world_bundle.candidate_generator()
    gen.cfg = CandidateConfig(als=10, copurchase=0, popularity=80, total=80)
    for q in (_query(world_bundle, 5), Query(-1, world_bundle.catalogue.index_of(np.array([305, 306])))):
        c = gen.generate([q])[0]
        only = np.flatnonzero(c.sources == SOURCE_POPULARITY)
        assert only.size >= 20
        none = Candidates(*(np.zeros(0, a.dtype) for a in (c.items, c.sources, c.als_score, c.als_rank,
                                                            c.cop_score, c.pop_score)))  # fmt: skip
        ext = gen.extend(q, none, c.items[only])
        for a, b in ((ext.items, c.items), (ext.sources, c.sources), (ext.als_score, c.als_score),
                     (ext.als_rank, c.als_rank), (ext.cop_score, c.cop_score), (ext.pop_score, c.pop_score)):  # fmt: skip
            np.testing.assert_allclose(a, b[only], rtol=1e-5, atol=1e-6)  # a matrix product of another shape


def _live(items: list[int], events: list[float], candidates: int = 5) -> LivePopular:
    return LivePopular(np.array(items, np.int64), np.array(events, np.float32), candidates)


def test_the_live_cold_start_list_is_batch_popularity_lifted_by_the_hour(world_bundle: Bundle) -> None:
    """popular(live=...) is exactly pop + LIVE_LIFT * max(pop) * events / max(events) over the whole
    catalogue (within the mask, none excluded), without scanning it; without live, the batch list."""
    pop = world_bundle.popularity
    n = pop.pop.shape[0]
    quiet = np.argsort(pop.pop)[:3]  # the least popular products: only the hour can lift them
    live = _live(quiet.tolist(), [30.0, 10.0, 1.0])
    mask = np.zeros(n, dtype=bool)
    mask[: n // 2] = True
    mask[quiet[:2]] = True
    for m, exclude in ((None, None), (mask, None), (None, quiet[:1]), (mask, np.array([0, 1, 2, 3]))):
        lift = np.zeros(n)
        lift[quiet] = LIVE_LIFT * pop.top_score * np.array([30.0, 10.0, 1.0]) / 30.0
        want = pop.pop + lift
        allowed = np.ones(n, bool) if m is None else m.copy()
        if exclude is not None:
            allowed[exclude] = False
        order = np.flatnonzero(allowed)[np.argsort(-want[allowed], kind="stable")][:10]
        items, scores = popular(pop, 10, m, exclude, live)
        assert allowed[items].all() and np.unique(items).size == 10
        np.testing.assert_allclose(scores, want[items], rtol=1e-5)
        np.testing.assert_allclose(scores, want[order], rtol=1e-5)  # the best 10 (ties in any order)
        assert np.all(np.diff(scores) <= 0)
    items, _ = popular(pop, 10, None, None, live)
    assert items[0] == quiet[0]  # the hour's hottest leads: it gained the batch top score
    rng = np.random.default_rng(0)  # every product live (more than the global top list holds)
    events = rng.integers(1, 50, n).astype(np.float32)
    every = _live(list(range(n)), events.tolist())
    want = pop.pop + LIVE_LIFT * pop.top_score * events / events.max()
    items, scores = popular(pop, n, None, None, every)
    np.testing.assert_allclose(scores, np.sort(want)[::-1], rtol=1e-5)
    items, scores = popular(pop, 10, None, None, _live([], []))
    assert (items.tolist(), scores.tolist()) == tuple(x.tolist() for x in popular(pop, 10))


def test_live_products_join_the_popularity_candidates(world_bundle: Bundle) -> None:
    """The hour's hottest products (the first ``candidates`` of them) are candidates of a warm
    query, flagged popularity, even where the batch lists would not offer them; without live, not."""
    rec = _narrow(world_bundle)
    q = _query(world_bundle, 1)
    batch = rec.generator.generate([q])[0]
    outside = np.setdiff1d(np.arange(world_bundle.catalogue.n_items), batch.items)[:3]
    assert outside.size == 3
    got = rec.generator.generate([q], _live(outside.tolist(), [9.0, 8.0, 7.0], candidates=2))[0]
    assert set(outside[:2].tolist()) <= set(got.items.tolist())
    assert outside[2] not in got.items  # past live.candidates
    assert np.all(got.sources[np.isin(got.items, outside[:2])] & SOURCE_POPULARITY)
    assert rec.generator.generate([q], _live(outside.tolist(), [9.0, 8.0, 7.0], candidates=0))[
        0
    ].items.tolist() == (batch.items.tolist())
    ranked = rec.rank([Query(-1, np.zeros(0, np.int64))], 5, live=_live(outside.tolist(), [9.0, 8.0, 7.0]))[0]
    assert ranked.cold and ranked.items[0] == outside[0]  # the cold-start list is lifted too


def test_the_lifted_list_is_exact_for_any_live_set_k_and_filter(world_bundle: Bundle) -> None:
    """Against a brute-force score of the whole catalogue: random live sets and counts, k, masks and
    exclusions, also with a global top list shorter than k + the live products (it runs out)."""
    full = world_bundle.popularity
    short = copy.copy(full)
    short.global_top = full.global_top[:20]  # as a big catalogue's 500 of 100,000
    n = full.pop.shape[0]
    rng = np.random.default_rng(1)
    for trial in range(200):
        pop = short if trial % 2 else full
        size = int(rng.integers(1, n))
        items = rng.choice(n, size, replace=False)
        events = rng.integers(0, 60, size).astype(np.float32)
        events[0] = max(events[0], 1.0)
        live = _live(items.tolist(), events.tolist())
        k = int(rng.choice([1, 3, 10, 30]))
        mask = rng.random(n) < 0.6 if trial % 3 == 0 else None
        exclude = rng.choice(n, 5, replace=False) if trial % 4 == 0 else None
        lift = np.zeros(n)
        lift[items] = LIVE_LIFT * full.top_score * events / events.max()
        want = full.pop + lift
        allowed = np.ones(n, bool) if mask is None else mask.copy()
        if exclude is not None:
            allowed[exclude] = False
        best = np.sort(want[allowed])[::-1][:k]
        got, scores = popular(pop, k, mask, exclude, live)
        assert allowed[got].all() and np.unique(got).size == got.size == best.size, trial
        np.testing.assert_allclose(scores, best, rtol=1e-5, err_msg=f"trial {trial}")
