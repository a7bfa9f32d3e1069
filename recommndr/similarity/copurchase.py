"""Frequently bought together: co-purchase within baskets scored by NPMI with a minimum support.

A basket is a session's carted or bought products (purchase-only data: its purchases). A pair's
score is its normalised pointwise mutual information, log(p(ab) / p(a)p(b)) / -log p(ab), in
[-1, 1]: it rewards products bought *together* more than chance, so a merely popular product,
which is in many baskets anyway, does not dominate; ``min_support`` drops pairs seen too rarely
to trust. The same table gives the ranker its co-purchase feature and retrieval its neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from recommndr.arrays import load_arrays, save_arrays
from recommndr.data.interactions import Interactions
from recommndr.params import CopurchaseConfig
from recommndr.retrieval.base import F32, I64, Query, Retriever


@dataclass
class CoPurchase:
    """CSR of each product's best co-purchased products: ``nbr[indptr[a]:indptr[a+1]]``."""

    indptr: I64
    nbr: I64
    score: F32  # NPMI
    support: npt.NDArray[np.int32]  # baskets with both
    n_baskets: int

    def save(self, path: Path) -> None:
        save_arrays(path, {"indptr": self.indptr, "nbr": self.nbr, "score": self.score,
                           "support": self.support, "n_baskets": np.int64(self.n_baskets)})  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> CoPurchase:
        z = load_arrays(path)
        return cls(z["indptr"], z["nbr"], z["score"], z["support"], int(z["n_baskets"]))

    def neighbours(self, item: int, k: int) -> tuple[I64, F32]:
        s, e = self.indptr[item], min(self.indptr[item + 1], self.indptr[item] + k)
        return self.nbr[s:e], self.score[s:e]

    def pair_scores(self, a: I64, b: I64) -> F32:
        """NPMI of each pair (a[i], b[i]); 0 where the pair is not in the table."""
        n_items = self.indptr.shape[0] - 1
        keys = self._keys(n_items)
        q = a.astype(np.int64) * n_items + b.astype(np.int64)
        pos = np.minimum(np.searchsorted(keys, q), max(keys.shape[0] - 1, 0))
        hit = keys.shape[0] > 0
        out = np.where(hit & (keys[pos] == q), self._sorted_score[pos], 0.0) if hit else np.zeros(q.shape[0])
        return np.asarray(out, dtype=np.float32)

    def _keys(self, n_items: int) -> I64:
        if not hasattr(self, "_key_cache"):
            src = np.repeat(np.arange(n_items, dtype=np.int64), np.diff(self.indptr))
            keys = src * n_items + self.nbr
            order = np.argsort(keys)
            self._key_cache = keys[order]
            self._sorted_score = self.score[order]
        return self._key_cache


def fit_copurchase(inter: Interactions, cfg: CopurchaseConfig) -> CoPurchase:
    n_items = inter.catalogue.n_items
    has_carts = bool((inter.etype >= 1).any())
    mask = inter.etype >= 1 if has_carts else np.ones(inter.etype.shape[0], dtype=bool)
    baskets = (
        pl.DataFrame({"s": inter.session[mask], "i": inter.item[mask].astype(np.int64), "t": inter.ts[mask]})
        .group_by("s", "i")
        .agg(pl.col("t").min())
        .sort("s", "t")
        .with_columns(pl.int_range(pl.len()).over("s").alias("r"))
        .filter(pl.col("r") < cfg.max_basket)
        .select("s", "i")
    )
    n_baskets = baskets["s"].n_unique()
    count = baskets.group_by("i").len().rename({"len": "n"})
    multi = baskets.join(baskets.group_by("s").len().filter(pl.col("len") > 1).select("s"), on="s")
    pairs = (
        multi.join(multi, on="s", suffix="_b")
        .filter(pl.col("i") != pl.col("i_b"))
        .group_by("i", "i_b")
        .len()
        .filter(pl.col("len") >= cfg.min_support)
    )
    if pairs.height == 0:
        return CoPurchase(
            np.zeros(n_items + 1, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
            np.zeros(0, np.int32),
            n_baskets,
        )
    pairs = pairs.join(count, on="i").join(count.rename({"i": "i_b", "n": "n_b"}), on="i_b")
    nb = float(n_baskets)
    pairs = pairs.with_columns(
        ((pl.col("len") * nb / (pl.col("n") * pl.col("n_b"))).log() / -(pl.col("len") / nb).log()).alias(
            "npmi"
        )
    ).filter(pl.col("npmi") > 0)
    pairs = (
        pairs.sort(["i", "npmi", "len"], descending=[False, True, True])
        .with_columns(pl.int_range(pl.len()).over("i").alias("r"))
        .filter(pl.col("r") < cfg.neighbours)
    )
    src = pairs["i"].to_numpy()
    indptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n_items))]).astype(np.int64)
    return CoPurchase(
        indptr=indptr,
        nbr=pairs["i_b"].to_numpy().astype(np.int64),
        score=pairs["npmi"].to_numpy().astype(np.float32),
        support=pairs["len"].to_numpy().astype(np.int32),
        n_baskets=n_baskets,
    )


class CoPurchaseRetriever(Retriever):
    """Neighbours of the user's recent products, weighted by recency and NPMI."""

    name = "copurchase"

    def __init__(self, table: CoPurchase, recent_items: int) -> None:
        self.table = table
        self.recent_items = recent_items

    def retrieve(self, queries: Sequence[Query], k: int) -> list[tuple[I64, F32]]:
        out = []
        for q in queries:
            items, scores = [], []
            for rank, r in enumerate(q.recent_items[: self.recent_items]):
                nb, sc = self.table.neighbours(int(r), k)
                items.append(nb)
                scores.append(sc * (0.8**rank))
            if not items:
                out.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
                continue
            it, sc = np.concatenate(items), np.concatenate(scores)
            if it.size == 0:
                out.append((it.astype(np.int64), sc.astype(np.float32)))
                continue
            uniq, inv = np.unique(it, return_inverse=True)
            total = np.bincount(inv, weights=sc).astype(np.float32)
            keep = ~np.isin(uniq, q.recent_items)
            out.append(self.top_k(total[keep], k, uniq[keep]))
        return out
