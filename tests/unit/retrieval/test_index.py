"""The exact indexes over the ALS factors: the ONNX graph and the norm-bounded scan match numpy."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.data.interactions import Interactions
from recommndr.params import TrainConfig
from recommndr.ranking.candidates import recent_items
from recommndr.retrieval.als import ALSRetriever
from recommndr.retrieval.base import Query

pytestmark = pytest.mark.unit
CFG = TrainConfig()


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
