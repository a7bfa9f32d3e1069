"""The candidate set handed to the ranker: ALS top-N ∪ co-purchase neighbours of recent products ∪
category-aware popularity, minus durables the user already bought.

Repeat purchases are learned per leaf category: where at least ``REPEATABLE_SHARE`` of purchases
are of a product the buyer had bought before (consumables), bought products stay eligible; in the
other categories a bought product is not offered again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from recommndr.arrays import load_arrays, save_arrays
from recommndr.data.interactions import Interactions
from recommndr.params import CandidateConfig
from recommndr.ranking.features import user_range
from recommndr.retrieval.als import ALSRetriever
from recommndr.retrieval.base import F32, I64, Query
from recommndr.retrieval.popularity import PopularityRetriever
from recommndr.similarity.copurchase import CoPurchaseRetriever

SOURCE_ALS, SOURCE_COPURCHASE, SOURCE_POPULARITY, SOURCE_EXPLORE = 1, 2, 4, 8
REPEATABLE_SHARE = 0.05
RECENT = 10


@dataclass
class Candidates:
    items: I64
    sources: npt.NDArray[np.uint8]
    als_score: F32
    als_rank: F32
    cop_score: F32
    pop_score: F32


@dataclass(frozen=True)
class LivePopular:
    """What the streaming job says is popular this hour, for the popularity candidates and the
    cold-start list (``two_stage.popular``): catalogue products (dense indices) by their events
    in the last hour, most first, with those counts. ``candidates``: how many of the first join
    every shopper's popularity candidates (``CandidateGenerator.generate``)."""

    items: I64
    events: F32
    candidates: int


@dataclass
class Exclusions:
    """Sorted keys user * n_items + item of durables each user bought; repeatable leaf categories."""

    keys: I64
    n_items: int
    repeatable_l3: npt.NDArray[np.bool_]

    @classmethod
    def fit(cls, inter: Interactions, all_seen: bool = False) -> Exclusions:
        """Durables each user bought; with ``all_seen`` every product the user had at all (the
        random protocol's "seen items removed"). Repeatable categories are learned either way."""
        cat = inter.catalogue
        buy = inter.etype == 2
        u, i = inter.user[buy].astype(np.int64), inter.item[buy].astype(np.int64)
        key = u * cat.n_items + i
        n_l3 = len(cat.l3_names)
        total = np.bincount(cat.l3[i], minlength=n_l3)
        uniq = np.unique(key)
        first = np.bincount(cat.l3[uniq % cat.n_items], minlength=n_l3)
        share = np.where(total > 0, 1.0 - first / np.maximum(total, 1), 0.0)
        repeatable = share >= REPEATABLE_SHARE
        if all_seen:
            seen = np.unique(inter.user.astype(np.int64) * cat.n_items + inter.item)
            return cls(seen, cat.n_items, repeatable)
        durable = ~repeatable[cat.l3[uniq % cat.n_items]]
        return cls(uniq[durable], cat.n_items, repeatable)

    def save(self, path: Path) -> None:
        save_arrays(path, {"keys": self.keys, "repeatable_l3": self.repeatable_l3})

    @classmethod
    def load(cls, path: Path, n_items: int) -> Exclusions:
        z = load_arrays(path)
        return cls(z["keys"], n_items, z["repeatable_l3"])

    def items_of(self, user: int) -> I64:
        """The durables ``user`` bought before the cut-off (dense indices)."""
        if user < 0:
            return np.zeros(0, np.int64)
        lo, hi = user_range(self.keys, user, self.n_items)
        items: I64 = self.keys[lo:hi] - user * self.n_items
        return items

    def allowed(self, user: int, items: I64) -> npt.NDArray[np.bool_]:
        if user < 0 or self.keys.size == 0:
            return np.ones(items.shape[0], dtype=bool)
        q = user * self.n_items + items
        pos = np.minimum(np.searchsorted(self.keys, q), self.keys.shape[0] - 1)
        return np.asarray(self.keys[pos] != q)


def recent_items(inter: Interactions, n: int = RECENT) -> tuple[I64, I64]:
    """CSR (indptr over dense users, items) of each user's last ``n`` distinct products, newest first."""
    df = (
        pl.DataFrame({"u": inter.user, "i": inter.item, "t": inter.ts})
        .group_by("u", "i")
        .agg(pl.col("t").max())
        .sort(["u", "t"], descending=[False, True])
        .with_columns(pl.int_range(pl.len()).over("u").alias("r"))
        .filter(pl.col("r") < n)
    )
    counts = np.bincount(df["u"].to_numpy(), minlength=inter.n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, df["i"].to_numpy().astype(np.int64)


def user_recent(indptr: npt.NDArray[np.integer[Any]], recent: npt.NDArray[np.integer[Any]], u: int) -> I64:
    """User ``u``'s recent products (CSR ``indptr``, ``recent``; int32 in a saved bundle) as int64."""
    if u < 0:
        return np.zeros(0, np.int64)
    return recent[indptr[u] : indptr[u + 1]].astype(np.int64)


def queries_for(
    users: I64, indptr: npt.NDArray[np.integer[Any]], recent: npt.NDArray[np.integer[Any]]
) -> list[Query]:
    return [Query(int(u), user_recent(indptr, recent, int(u))) for u in users]


class CandidateGenerator:
    def __init__(
        self,
        als: ALSRetriever,
        popularity: PopularityRetriever,
        copurchase: CoPurchaseRetriever,
        exclusions: Exclusions,
        cfg: CandidateConfig,
    ) -> None:
        self.als = als
        self.popularity = popularity
        self.copurchase = copurchase
        self.exclusions = exclusions
        self.cfg = cfg
        self._local = threading.local()

    def _scratch(self) -> Any:
        """Per-thread arrays over the catalogue, all -1 / 0 between calls."""
        s = self._local
        if not hasattr(s, "pos"):
            n = self.exclusions.n_items
            s.pos = np.full(n, -1, dtype=np.int32)
            s.flags = np.zeros(n, dtype=np.uint8)
            s.value = np.zeros(n, dtype=np.float32)
        return s

    def generate(self, queries: Sequence[Query], live: LivePopular | None = None) -> list[Candidates]:
        """Each query's candidates. With ``live`` (the stream is live), the first
        ``live.candidates`` of the products with the most events in the last hour join every
        query's popularity list, ahead of the batch one: they are popularity candidates (same source
        bit, same batch features, which the ranker was trained on, so the live counts add no
        train/serve skew: they only decide *which* products the ranker sees), and being first in
        the list they are not cut by ``total``. A product that is also a co-purchase or ALS
        candidate is one candidate, as always. Without ``live``: the batch lists alone."""
        c = self.cfg
        als = self.als.retrieve(queries, c.als)
        cop = self.copurchase.retrieve(queries, c.copurchase) if c.copurchase else [None] * len(queries)
        pop = self.popularity.retrieve(queries, c.popularity)
        hot = live.items[: live.candidates] if live is not None and live.candidates > 0 else None
        out = []
        for q, a, cp, p in zip(queries, als, cop, pop, strict=True):
            if hot is not None and hot.size:
                p = (np.concatenate([hot, p[0]]), p[1])  # noqa: PLW2901 - the list, lifted
            out.append(self._merge(q, a, cp, p))
        return out

    def _merge(
        self, q: Query, als: tuple[I64, F32], cop: tuple[I64, F32] | None, pop: tuple[I64, F32]
    ) -> Candidates:
        c = self.cfg
        cop_items = cop[0] if cop is not None else np.zeros(0, np.int64)
        s = self._scratch()
        # priority: co-purchase, popularity, then ALS by rank fills the rest (first occurrence wins;
        # O(n) with per-thread scratch arrays over the catalogue instead of sorting: the request path)
        everything = np.concatenate([cop_items, pop[0], als[0]])
        order = np.arange(everything.shape[0], dtype=np.int32)
        s.pos[everything[::-1]] = order[::-1]
        items = everything[s.pos[everything] == order]
        s.pos[everything] = -1
        keep = self.exclusions.allowed(q.user, items)
        if q.exclude.size:
            keep &= ~np.isin(items, q.exclude)
        items = items[keep][: c.total]
        n = items.shape[0]
        s.flags[als[0]] |= SOURCE_ALS
        s.flags[cop_items] |= SOURCE_COPURCHASE
        s.flags[pop[0]] |= SOURCE_POPULARITY
        sources = s.flags[items]
        s.flags[everything] = 0
        vec = self.als.user_vector(q)
        als_score = (
            (self.als.item_factors[items] @ vec).astype(np.float32)
            if vec is not None
            else np.zeros(n, np.float32)
        )
        s.pos[als[0]] = np.arange(1, als[0].shape[0] + 1, dtype=np.int32)
        rank = s.pos[items]
        als_rank = np.where(rank > 0, rank, c.als + 1).astype(np.float32)
        s.pos[als[0]] = -1
        cop_score = np.zeros(n, np.float32)
        if cop is not None and cop[0].size:
            s.value[cop[0]] = cop[1]
            cop_score = s.value[items].copy()
            s.value[cop[0]] = 0.0
        a1, a2 = self.popularity.affinity(q.recent_items)
        pop_score = self.popularity.score_items(items, a1, a2)
        return Candidates(items, sources, als_score, als_rank, cop_score, pop_score)

    def extend(self, q: Query, c: Candidates, items: I64) -> Candidates:
        """``c`` and, after them, ``items`` (products in none of the three lists, such as the
        popular ones that top up a list filtered short) as popularity candidates, with the
        signals ``_merge`` gives a candidate outside the ALS and co-purchase lists."""
        n = items.shape[0]
        vec = self.als.user_vector(q)
        als_score = (
            (self.als.item_factors[items] @ vec).astype(np.float32)
            if vec is not None
            else np.zeros(n, np.float32)
        )
        a1, a2 = self.popularity.affinity(q.recent_items)
        return Candidates(
            np.concatenate([c.items, items]),
            np.concatenate([c.sources, np.full(n, SOURCE_POPULARITY, dtype=np.uint8)]),
            np.concatenate([c.als_score, als_score]),
            np.concatenate([c.als_rank, np.full(n, self.cfg.als + 1, dtype=np.float32)]),
            np.concatenate([c.cop_score, np.zeros(n, np.float32)]),
            np.concatenate([c.pop_score, self.popularity.score_items(items, a1, a2)]),
        )
