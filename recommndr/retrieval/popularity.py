"""Recency-weighted, category-aware popularity: the cold-start path and a retrieval source.

An item's popularity is the sum of its events' weights (type x age, half-life of days), so what is
popular *now* wins. A user's category affinity comes from their recent products; a new user with
no history gets the overall list. Young products (new arrivals) of the user's categories are
offered too, so a new product can surface before the collaborative model knows it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from recommndr.arrays import load_arrays, save_arrays
from recommndr.data.interactions import Catalogue, Interactions
from recommndr.params import EventWeights, PopularityConfig
from recommndr.retrieval.base import F32, I64, Query, Retriever
from recommndr.retrieval.weights import event_weights

US_PER_DAY = 86_400_000_000


def grouped_top(groups: npt.NDArray[np.int32], score: F32, n_groups: int, per_group: int) -> tuple[I64, I64]:
    """For each group, its ``per_group`` best items by score, as CSR (indptr, items)."""
    order = np.lexsort((-score, groups))
    g = groups[order]
    start = np.searchsorted(g, np.arange(n_groups), side="left")
    end = np.minimum(np.searchsorted(g, np.arange(n_groups), side="right"), start + per_group)
    lengths = end - start
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    take = (
        np.concatenate([np.arange(s, e) for s, e in zip(start, end, strict=True)])
        if n_groups
        else np.zeros(0)
    )
    return indptr, order[take.astype(np.int64)].astype(np.int64)


class PopularityRetriever(Retriever):
    name = "popularity"

    def __init__(
        self, catalogue: Catalogue, pop: F32, new_arrival: npt.NDArray[np.bool_], per_category: int
    ) -> None:
        self.catalogue = catalogue
        self.pop = pop
        self.new_arrival = new_arrival
        self.per_category = per_category
        self._pop_max = float(pop.max()) if pop.size else 1.0
        self._pop_max = self._pop_max or 1.0
        self._local = threading.local()  # per-thread scratch (candidates())
        n_l1, n_l2 = len(catalogue.l1_names), len(catalogue.l2_names)
        self.global_top = self.top_k(pop, max(per_category * 5, 500))[0]
        self.l1_ptr, self.l1_top = grouped_top(catalogue.l1, pop, n_l1, per_category)
        self.l2_ptr, self.l2_top = grouped_top(catalogue.l2, pop, n_l2, per_category)
        fresh_score = np.where(
            new_arrival, pop + 1e-6 * (catalogue.created_us - catalogue.created_us.min()) / US_PER_DAY, -1
        )
        self.new_ptr, self.new_top = grouped_top(catalogue.l2, fresh_score.astype(np.float32), n_l2, 20)
        nz = self.new_top[new_arrival[self.new_top]]
        self.new_top_mask = np.isin(self.new_top, nz)

    @classmethod
    def fit(cls, inter: Interactions, weights: EventWeights, cfg: PopularityConfig) -> PopularityRetriever:
        w = event_weights(inter, weights, cfg.half_life_days)
        pop = np.bincount(inter.item, weights=w, minlength=inter.catalogue.n_items).astype(np.float32)
        age_days = (inter.cutoff_us - inter.catalogue.created_us) / US_PER_DAY
        new = (age_days >= 0) & (age_days <= cfg.new_arrival_days)
        return cls(inter.catalogue, pop, new, cfg.per_category)

    def save(self, path: Path) -> None:
        """The fitted scores to ``path`` (.npz); the lists above are recomputed on load."""
        save_arrays(path, {"pop": self.pop, "new_arrival": self.new_arrival,
                           "per_category": np.int64(self.per_category)})  # fmt: skip

    @classmethod
    def load(cls, path: Path, catalogue: Catalogue) -> PopularityRetriever:
        z = load_arrays(path)
        return cls(catalogue, z["pop"], z["new_arrival"], int(z["per_category"]))

    @property
    def top_score(self) -> float:
        """The highest popularity of any product (1 when there is none)."""
        return self._pop_max

    def _seen(self) -> npt.NDArray[np.bool_]:
        seen: npt.NDArray[np.bool_] | None = getattr(self._local, "seen", None)
        if seen is None:
            seen = np.zeros(self.pop.shape[0], dtype=bool)
            self._local.seen = seen
        return seen

    def affinity(self, recent: I64) -> tuple[F32, F32]:
        """Shares of the user's recent products (most recent weigh most) per top-level and
        second-level category, as dense vectors (all zero for no history)."""
        n1, n2 = len(self.catalogue.l1_names), len(self.catalogue.l2_names)
        if recent.size == 0:
            return np.zeros(n1, np.float32), np.zeros(n2, np.float32)
        w = 0.85 ** np.arange(recent.size)
        w = w / w.sum()
        a1 = np.bincount(self.catalogue.l1[recent], weights=w, minlength=n1).astype(np.float32)
        a2 = np.bincount(self.catalogue.l2[recent], weights=w, minlength=n2).astype(np.float32)
        return a1, a2

    def score_items(self, items: I64, a1: F32, a2: F32) -> F32:
        base = self.pop[items] / self._pop_max
        if not a1.any():
            return base.astype(np.float32)
        return (base * (0.05 + a2[self.catalogue.l2[items]] + 0.3 * a1[self.catalogue.l1[items]])).astype(
            np.float32
        )

    def candidates(self, a1: F32, a2: F32) -> I64:
        parts = [self.global_top[: self.per_category]]
        for c in np.flatnonzero(a2)[np.argsort(-a2[np.flatnonzero(a2)], kind="stable")][:4]:
            parts.append(self.l2_top[self.l2_ptr[c] : self.l2_ptr[c + 1]])
            fresh = self.new_top[self.new_ptr[c] : self.new_ptr[c + 1]]
            parts.append(fresh[self.new_top_mask[self.new_ptr[c] : self.new_ptr[c + 1]]])
        for c in np.flatnonzero(a1)[np.argsort(-a1[np.flatnonzero(a1)], kind="stable")][:2]:
            parts.append(self.l1_top[self.l1_ptr[c] : self.l1_ptr[c + 1]])
        if len(parts) == 1:
            return np.sort(parts[0])
        # distinct, sorted (as np.unique), with a per-thread mark over the catalogue: no hashing
        items = np.concatenate(parts)
        seen = self._seen()
        seen[items] = True
        out = np.flatnonzero(seen)  # the catalogue scan: a vectorised pass over n_items bytes
        seen[items] = False
        return out

    def retrieve(self, queries: Sequence[Query], k: int) -> list[tuple[I64, F32]]:
        out = []
        for q in queries:
            a1, a2 = self.affinity(q.recent_items)
            items = self.candidates(a1, a2)
            out.append(self.top_k(self.score_items(items, a1, a2), k, items))
        return out

    def popular(self, k: int, category_l1: int | None = None) -> tuple[I64, F32]:
        """The overall (or one top-level category's) most popular products now."""
        if category_l1 is None:
            items = self.global_top
        else:
            items = self.l1_top[self.l1_ptr[category_l1] : self.l1_ptr[category_l1 + 1]]
        return self.top_k(self.pop[items], k, items)
