"""The contract every retriever (ALS, popularity, co-purchase) passes, as implicit's
``RecommenderBaseTestMixin`` does for its models: a retriever's test class subclasses
``RetrieverContract`` and overrides the ``retriever`` fixture; every test here then runs against it
(on the ``world_inter`` world of ``tests/unit/conftest.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.data.interactions import Interactions
from recommndr.ranking.candidates import recent_items
from recommndr.retrieval.base import Query, Retriever


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
