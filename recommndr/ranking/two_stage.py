"""The two-stage recommender: candidates -> shared features -> ONNX ranker -> top k."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recommndr.ranking.features import F32, I64, FeatureTables, compute_features
from recommndr.ranking.ranker import OnnxRanker
from recommndr.retrieval.base import Query
from recommndr.retrieval.candidates import CandidateGenerator, Candidates


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
    def __init__(self, generator: CandidateGenerator, tables: FeatureTables, ranker: OnnxRanker) -> None:
        self.generator = generator
        self.tables = tables
        self.ranker = ranker

    def recommend(self, queries: Sequence[Query], k: int) -> list[tuple[I64, F32]]:
        cands = self.generator.generate(queries)
        X = candidate_features(self.tables, queries, cands)
        scores = self.ranker.score(X) if X.shape[0] else np.zeros(0, np.float32)
        out = []
        start = 0
        for c in cands:
            n = c.items.shape[0]
            s = scores[start : start + n]
            start += n
            order = np.argsort(-s, kind="stable")[:k]
            out.append((c.items[order], s[order]))
        return out
