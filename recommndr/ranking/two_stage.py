"""The one ranking path: candidates -> shared features -> ONNX ranker -> top k, or the cold-start
list. ``/recommendations`` (``ServingModel.recommend``, one query) and offline evaluation (batches
of queries, one ONNX call each) both call ``TwoStageRecommender.rank``, so evaluation measures what
the API serves."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from recommndr.ranking.candidates import (
    SOURCE_EXPLORE,
    SOURCE_POPULARITY,
    CandidateGenerator,
    Candidates,
    LivePopular,
)
from recommndr.ranking.features import F32, FEATURES, I64, FeatureTables, compute_features
from recommndr.ranking.ranker import OnnxRanker
from recommndr.retrieval.base import Query
from recommndr.retrieval.popularity import PopularityRetriever

log = logging.getLogger(__name__)
TREND_COL = FEATURES.index("item_trend")
TOP_FEATURE_ROWS = 3  # feature rows kept per ranked list (Ranked.top_features), for monitoring
Mask = npt.NDArray[np.bool_]
U8 = npt.NDArray[np.uint8]


class Perturbation(Protocol):
    """What a fault injected into a served model does to its ranking (``serving/faults.py``): the
    feature matrix it ranks with and the scores it ranks by, replaced. The ranking itself knows
    no fault; a healthy recommender has none (``TwoStageRecommender.perturb`` is None)."""

    def features(self, X: F32) -> F32: ...

    def scores(self, scores: F32) -> F32: ...


def candidate_features(tables: FeatureTables, queries: Sequence[Query], cands: Sequence[Candidates]) -> F32:
    """One feature matrix for all (query, candidate) pairs, queries in order."""
    sizes = [c.items.shape[0] for c in cands]
    if not sizes or sum(sizes) == 0:
        return np.zeros((0, 0), np.float32)
    user = np.repeat(np.array([q.user for q in queries], dtype=np.int64), sizes)

    def cat(parts: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
        return parts[0] if len(parts) == 1 else np.concatenate(parts)  # one query (a request): no copy

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


def is_cold(q: Query) -> bool:
    """A user with no history at all: neither seen by the model nor with recent products."""
    return q.user < 0 and q.recent_items.size == 0


LIVE_LIFT = 1.0  # the hottest product of the hour gains this many times the batch list's top score


def popular(
    pop: PopularityRetriever,
    k: int,
    mask: Mask | None = None,
    exclude: I64 | None = None,
    live: LivePopular | None = None,
) -> tuple[I64, F32]:
    """The cold-start list: the ``k`` most popular products now (within ``mask``, none of
    ``exclude``), by raw popularity. What the API answers a new shopper, ``/popular``, and the
    popularity-only fallback.

    With ``live`` (the stream is live) a product's score is its batch popularity lifted by its
    events in the last hour: ``pop + LIVE_LIFT * max(pop) * events_1h / max(events_1h)`` (the
    maximum over all of ``live``, whatever the filters leave), so the hour's hottest product gains the batch list's top score and a quiet one nothing; the live
    products join the list this way, and without ``live`` it is the batch list, score for score.
    Exact without a scan of the catalogue: a live product scoring under the k-th best of the live
    scores and the batch top ``k``'s cannot enter; with ``c`` live products left, a product outside
    the batch top ``k + c`` scores below at least ``k`` of them."""
    if live is None or live.items.size == 0 or not float(live.events.max()) > 0:
        return _batch_popular(pop, k, mask, exclude)
    ahead = _batch_popular(pop, 2 * k, mask, exclude)  # the batch top k, and room for k live ones
    batch = (ahead[0][:k], ahead[1][:k])
    keep = np.ones(live.items.shape[0], dtype=bool) if mask is None else mask[live.items]
    if exclude is not None and exclude.size:
        keep &= ~_member(live.items, np.sort(exclude))
    items = live.items[keep]
    lift = (LIVE_LIFT * pop.top_score / float(live.events.max())) * live.events[keep]
    # a live product scoring under the k-th best of the live scores and the batch list's other
    # products (distinct products, each score exact) cannot enter the list
    lifted = pop.pop[items] + lift
    ordered = np.sort(items)
    known = np.concatenate([lifted, batch[1][~_member(batch[0], ordered)]])
    floor = float(np.partition(known, known.size - k)[known.size - k]) if known.size >= k else -np.inf
    contend = lifted >= floor
    items, lift = items[contend], lift[contend]
    if items.size == 0:
        return batch
    want = k + items.shape[0]
    base = ahead[0][:want] if want <= ahead[0].shape[0] else _batch_popular(pop, want, mask, exclude)[0]
    if base.shape[0] < want:  # the global top list ran out (or the mask is small): the whole mask
        allowed = np.ones(pop.pop.shape[0], dtype=bool) if mask is None else mask.copy()
        if exclude is not None and exclude.size:
            allowed[exclude] = False
        base = np.flatnonzero(allowed)
    pool = np.concatenate([items, base[~_member(base, np.sort(items))]])
    score = pop.pop[pool].astype(np.float32)
    score[: items.shape[0]] += lift.astype(np.float32)
    return pop.top_k(score, k, pool)


def _member(a: I64, ordered: I64) -> Mask:
    """``np.isin(a, ordered)`` for a sorted ``ordered``, by binary search: for the short lists of
    the request path (``np.isin`` spends ~35 us on a table over the id range, whatever the sizes)."""
    if ordered.size == 0:
        return np.zeros(a.shape[0], dtype=bool)
    pos = np.minimum(np.searchsorted(ordered, a), ordered.shape[0] - 1)
    return np.asarray(ordered[pos] == a)


def _batch_popular(
    pop: PopularityRetriever, k: int, mask: Mask | None, exclude: I64 | None
) -> tuple[I64, F32]:
    if exclude is not None and exclude.size:
        if mask is None:  # the global top list first: a full scan only when the filter empties it
            top = pop.global_top[~np.isin(pop.global_top, exclude)]
            if top.shape[0] >= k:
                return pop.top_k(pop.pop[top], k, top)
            mask = np.ones(pop.pop.shape[0], dtype=bool)
        else:
            mask = mask.copy()
        mask[exclude] = False
    if mask is None:
        return pop.popular(k)
    items = np.flatnonzero(mask)
    return pop.top_k(pop.pop[items], k, items)


@dataclass(frozen=True)
class Ranked:
    """One query's answer: dense item indices best first, their scores, candidate sources
    (``SOURCE_*`` bits) and ``item_trend`` (for the reasons); ``cold`` for the cold-start path;
    ``popular`` when the list is the popularity list (the cold-start path, or no candidate in the
    mask); ``degraded`` when the ranker failed and the list is in retrieval order.
    ``top_features``: the feature rows of the ranked list's first :data:`TOP_FEATURE_ROWS`
    products, for monitoring (None on the popularity paths, which compute no features)."""

    items: I64
    scores: F32
    sources: U8
    trend: F32
    cold: bool
    popular: bool
    degraded: bool
    top_features: F32 | None = None


def _select(c: Candidates, keep: Mask) -> Candidates:
    """The candidates at ``keep`` (a boolean mask over them)."""
    return Candidates(c.items[keep], c.sources[keep], c.als_score[keep], c.als_rank[keep],
                      c.cop_score[keep], c.pop_score[keep])  # fmt: skip


def retrieval_order(c: Candidates) -> F32:
    """Scores that keep the retrieval order: ALS rank, lifted by co-purchase (the ranker-down path)."""
    return (-np.log1p(c.als_rank) + c.cop_score).astype(np.float32)


class TwoStageRecommender:
    """Known users and new users with some history go through the ranker; a user with no history
    at all takes the cold-start path: what is popular now (the ranker has nothing personal to
    weigh, and measured it does no better there)."""

    def __init__(self, generator: CandidateGenerator, tables: FeatureTables, ranker: OnnxRanker) -> None:
        self.generator = generator
        self.tables = tables
        self.ranker = ranker
        # what exploration offers: products with no event before the cut-off (placed in the factor
        # space from their attributes, retrieval/cold.py) and new arrivals
        self.new_products: I64 = np.flatnonzero(~generator.als.item_known | generator.popularity.new_arrival)
        # a fault injected into the served challenger (serving/faults.py); None: ranked as trained
        self.perturb: Perturbation | None = None

    def explore(self, q: Query, ranked: Ranked, k: int, share: float, mask: Mask | None) -> Ranked:
        """``ranked`` with every ``1/share``-th place (the 1/share-th, 2/share-th, ... rounded up)
        given to the new products the shopper's factors score best, so a list of any length holds
        the same share of them and its head stays the ranker's. Each explored product takes the
        score of the place it fills (the list stays sorted); a shopper without factors, or no new
        product left to offer, keeps the list as it was."""
        slots = np.ceil(np.arange(1, k + 1) / share).astype(np.int64) - 1
        slots = slots[slots < ranked.items.shape[0]]
        if slots.size == 0 or self.new_products.size == 0:
            return ranked
        vec = self.generator.als.user_vector(q)
        if vec is None:
            return ranked
        pool = self.new_products
        keep = ~np.isin(pool, ranked.items) & self.generator.exclusions.allowed(q.user, pool)
        if mask is not None:
            keep &= mask[pool]
        if q.exclude.size:
            keep &= ~np.isin(pool, q.exclude)
        pool = pool[keep]
        if pool.size == 0:
            return ranked
        best, _ = self.generator.als.top_k(self.generator.als.item_factors[pool] @ vec, slots.size, pool)
        slots = slots[: best.size]
        place = np.zeros(ranked.items.shape[0], dtype=bool)
        place[slots] = True
        items = np.empty_like(ranked.items)
        items[place] = best
        items[~place] = ranked.items[: (~place).sum()]
        sources = np.empty_like(ranked.sources)
        sources[place] = SOURCE_EXPLORE
        sources[~place] = ranked.sources[: (~place).sum()]
        trend = self.tables.item_trend[items]
        return Ranked(items, ranked.scores, sources, trend, ranked.cold, ranked.popular, ranked.degraded,
                      ranked.top_features)  # fmt: skip

    def _popular(
        self, k: int, mask: Mask | None, exclude: I64, cold: bool, live: LivePopular | None = None
    ) -> Ranked:
        items, scores = popular(self.generator.popularity, k, mask, exclude, live)
        sources = np.full(items.shape[0], SOURCE_POPULARITY, dtype=np.uint8)
        return Ranked(items, scores, sources, self.tables.item_trend[items], cold, True, False)

    def rank(
        self,
        queries: Sequence[Query],
        k: int,
        masks: Sequence[Mask | None] | None = None,
        degrade: bool = True,
        explore: float = 0.0,
        live: LivePopular | None = None,
    ) -> list[Ranked]:
        """The top ``k`` for each query, with all warm queries' candidates scored in one ranker
        call. ``masks`` (one per query, None for no filter) keep only those products, and no list
        holds a product of its query's ``exclude`` or a durable its user bought, on any path. A
        query left with no candidate gets the popular list within its mask; one left with fewer
        than ``k`` is topped up with the most popular products that remain, ranked with the rest,
        so a list is ``k`` long while ``k`` products remain. With ``degrade`` a ranker failure is
        logged and every list falls back to the retrieval order (the API never fails on it);
        without, it raises (evaluation must not measure a broken ranker as the model). ``explore``
        (0 to 1): the share of each ranked list given to new products (:meth:`explore`). ``live``:
        the streaming job's popular products of the hour, which join the popularity candidates
        (``CandidateGenerator.generate``) and lift the cold-start list (:func:`popular`)."""
        if masks is not None and len(masks) != len(queries):
            raise ValueError(f"{len(masks)} masks for {len(queries)} queries")
        mask = list(masks) if masks is not None else [None] * len(queries)
        out: dict[int, Ranked] = {}
        warm: list[int] = []
        for i, q in enumerate(queries):
            if is_cold(q):
                out[i] = self._popular(k, mask[i], q.exclude, cold=True, live=live)
            else:
                warm.append(i)
        todo: list[tuple[int, Candidates]] = []
        cands = self.generator.generate([queries[i] for i in warm], live) if warm else []
        for i, c in zip(warm, cands, strict=True):
            m = mask[i]
            kept = c if m is None else _select(c, m[c.items])
            if kept.items.size == 0:
                out[i] = self._popular(k, m, self._blocked(queries[i], kept), cold=False, live=live)
                continue
            if kept.items.size < k:  # filtered short (a mask, exclusions): top it up
                more, _ = popular(
                    self.generator.popularity, k - kept.items.size, m, self._blocked(queries[i], kept)
                )
                kept = self.generator.extend(queries[i], kept, more) if more.size else kept
            todo.append((i, kept))
        if todo:
            self._score(queries, todo, k, degrade, out)
        if explore > 0:
            for i, _ in todo:
                out[i] = self.explore(queries[i], out[i], k, explore, mask[i])
        return [out[i] for i in range(len(queries))]

    def _blocked(self, q: Query, c: Candidates) -> I64:
        """What a popular list may not add for ``q``: its exclusions, the durables its user bought
        before the cut-off (the candidates went without both already) and the candidates ``c``."""
        return np.concatenate([q.exclude, self.generator.exclusions.items_of(q.user), c.items])

    def _score(
        self,
        queries: Sequence[Query],
        todo: list[tuple[int, Candidates]],
        k: int,
        degrade: bool,
        out: dict[int, Ranked],
    ) -> None:
        """Rank the candidates of ``todo`` (query position, candidates) with one ranker call."""
        cands = [c for _, c in todo]
        X = candidate_features(self.tables, [queries[i] for i, _ in todo], cands)
        perturb = self.perturb
        if perturb is not None:
            X = perturb.features(X)
        degraded = False
        try:
            scores = self.ranker.score(X)
        except Exception:  # degrade, never fail: keep the retrieval order
            if not degrade:
                raise
            log.exception("ranker failed; serving the retrieval order")
            degraded = True
            scores = np.concatenate([retrieval_order(c) for c in cands])
        if perturb is not None:
            scores = perturb.scores(scores)
        start = 0
        for i, c in todo:
            n = c.items.shape[0]
            s = scores[start : start + n]
            order = np.argsort(-s, kind="stable")[:k]
            trend = X[start + order, TREND_COL]
            start += n
            top = X[start - n + order[:TOP_FEATURE_ROWS]]
            out[i] = Ranked(c.items[order], s[order], c.sources[order], trend, False, False, degraded, top)
