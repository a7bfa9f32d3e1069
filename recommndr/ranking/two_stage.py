"""The two-stage recommender: candidates -> shared features -> ONNX ranker -> top k."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recommndr.ranking.candidates import CandidateGenerator, Candidates
from recommndr.ranking.features import F32, I64, FeatureTables, compute_features
from recommndr.ranking.ranker import OnnxRanker
from recommndr.retrieval.base import Query


def candidate_features(tables: FeatureTables, queries: Sequence[Query], cands: Sequence[Candidates]) -> F32:
    """One feature matrix for all (query, candidate) pairs, queries in order."""
    sizes = [c.items.shape[0] for c in cands]
    if not sizes or sum(sizes) == 0:
        return np.zeros((0, 0), np.float32)
    user = np.repeat(np.array([q.user for q in queries], dtype=np.int64), sizes)
    cat = np.concatenate
    return compute_features(
        tables,
        user,
        cat([c.items for c in cands]),
        cat([c.als_score for c in cands]),
        cat([c.als_rank for c in cands]),
        cat([c.cop_score for c in cands]),
        cat([c.pop_score for c in cands]),
        cat([c.sources for c in cands]),
    )


class TwoStageRecommender:
    """Known users and new users with some history go through the ranker; a user with no history
    at all takes the cold-start path: what is popular now (the ranker has nothing personal to
    weigh, and measured it does no better there)."""

    def __init__(self, generator: CandidateGenerator, tables: FeatureTables, ranker: OnnxRanker) -> None:
        self.generator = generator
        self.tables = tables
        self.ranker = ranker

    def recommend(self, queries: Sequence[Query], k: int) -> list[tuple[I64, F32]]:
        cold = [i for i, q in enumerate(queries) if q.user < 0 and q.recent_items.size == 0]
        warm = [i for i, q in enumerate(queries) if not (q.user < 0 and q.recent_items.size == 0)]
        out: list[tuple[I64, F32]] = [(np.zeros(0, np.int64), np.zeros(0, np.float32))] * len(queries)
        if cold:
            for i, r in zip(
                cold, self.generator.popularity.retrieve([queries[i] for i in cold], k), strict=True
            ):
                out[i] = r
        if not warm:
            return out
        wq = [queries[i] for i in warm]
        cands = self.generator.generate(wq)
        X = candidate_features(self.tables, wq, cands)
        scores = self.ranker.score(X) if X.shape[0] else np.zeros(0, np.float32)
        start = 0
        for i, c in zip(warm, cands, strict=True):
            n = c.items.shape[0]
            s = scores[start : start + n]
            start += n
            order = np.argsort(-s, kind="stable")[:k]
            out[i] = (c.items[order], s[order])
        return out
