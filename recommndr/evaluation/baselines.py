"""The baselines every evaluation runs beside ``two_stage``, each fit on the same training part:

- ``global_popularity``: products by the number of distinct shoppers who had them (no recency);
- ``popularity``: recency-weighted popularity — event type x age, the half-life of
  ``train.popularity`` — leaning to the categories of the shopper's recent products: the API's
  popularity source (``retrieval/popularity.py``; a shopper with no history gets the overall list);
- ``sar``: item-to-item co-occurrence in the manner of Microsoft's SAR — Jaccard similarity of
  products' shopper sets, scored against each shopper's time-decayed affinity (event weights,
  30-day half-life, SAR's default);
- ``als_plain``: ``implicit``'s ALS with its default settings on the binary shopper x product matrix.

The co-occurrence counts also give the intra-list diversity of every model's lists
(:func:`diversity`, Microsoft Recommenders' "co-occurrence" item similarity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recommndr.data.interactions import Interactions
from recommndr.params import EventWeights
from recommndr.ranking.candidates import Exclusions
from recommndr.retrieval.base import F32, I64
from recommndr.retrieval.weights import event_weights

SAR_HALF_LIFE_DAYS = 30.0
MAX_ITEMS_PER_USER = 300  # a shopper's most recent distinct products counted in co-occurrence
BATCH = 256  # users scored at once (a dense batch x products block)


def user_item_binary(inter: Interactions, max_items: int | None = None) -> sp.csr_matrix:
    """1 where the shopper had the product; with ``max_items`` only their most recent ones."""
    key = inter.user.astype(np.int64) * inter.catalogue.n_items + inter.item
    # last occurrence of each pair (events are in time order)
    rev_key = key[::-1]
    uniq, first_rev = np.unique(rev_key, return_index=True)
    last_pos = key.shape[0] - 1 - first_rev
    users = uniq // inter.catalogue.n_items
    items = uniq % inter.catalogue.n_items
    if max_items is not None:
        order = np.lexsort((-last_pos, users))  # per user, newest first
        u_sorted = users[order]
        start = np.searchsorted(u_sorted, u_sorted, side="left")
        rank = np.arange(u_sorted.shape[0]) - start
        keep = order[rank < max_items]
        users, items = users[keep], items[keep]
    m = sp.csr_matrix(
        (np.ones(users.shape[0], np.float32), (users, items)), shape=(inter.n_users, inter.catalogue.n_items)
    )
    m.sum_duplicates()
    return m


@dataclass
class Cooccurrence:
    """Products x products: how many shoppers had both (diagonal: had the product)."""

    counts: sp.csr_matrix
    diag: F32

    @classmethod
    def fit(cls, inter: Interactions) -> Cooccurrence:
        x = user_item_binary(inter, MAX_ITEMS_PER_USER)
        c = (x.T @ x).tocsr()
        c.sort_indices()
        return cls(c, np.asarray(c.diagonal(), dtype=np.float32))

    def pair_counts(self, a: I64, b: I64) -> F32:
        """C[a[i], b[i]] for each pair (scipy's sampled CSR lookup, in C)."""
        if a.size == 0:
            return np.zeros(0, np.float32)
        return np.asarray(self.counts[a, b], dtype=np.float32).ravel()

    def jaccard(self) -> sp.csr_matrix:
        """SAR's default similarity: C_ij / (C_ii + C_jj - C_ij), zero diagonal."""
        c = self.counts.tocoo()
        off = c.row != c.col
        r, k, v = c.row[off], c.col[off], c.data[off]
        sim = v / (self.diag[r] + self.diag[k] - v)
        n = self.counts.shape[0]
        return sp.csr_matrix((sim.astype(np.float32), (r, k)), shape=(n, n))


def top_k_masked(scores: F32, k: int, banned: I64) -> I64:
    """The best ``k`` finite scores of one row, leaving out ``banned`` items (scores is modified)."""
    if banned.size:
        scores[banned] = -np.inf
    n = scores.shape[0]
    kk = min(k, n)
    part = np.argpartition(-scores, kk - 1)[:kk] if kk < n else np.arange(n)
    part = part[np.isfinite(scores[part])]
    return part[np.argsort(-scores[part], kind="stable")].astype(np.int64)


def banned_items(excl: Exclusions, user: int) -> I64:
    """The products ``excl`` keeps from ``user`` (dense indices)."""
    if user < 0 or excl.keys.size == 0:
        return np.zeros(0, np.int64)
    lo, hi = np.searchsorted(excl.keys, [user * excl.n_items, (user + 1) * excl.n_items])
    return (excl.keys[lo:hi] % excl.n_items).astype(np.int64)


def static_lists(score: F32, uidx: I64, k: int, excl: Exclusions) -> list[I64]:
    """One score per product for everyone (a popularity list), minus each user's exclusions."""
    out = []
    for u in uidx:
        out.append(top_k_masked(score.astype(np.float32).copy(), k, banned_items(excl, int(u))))
    return out


def global_popularity(inter: Interactions) -> F32:
    """Distinct shoppers per product."""
    x = user_item_binary(inter)
    n = np.asarray(x.sum(axis=0), dtype=np.float32).ravel()
    return np.where(n > 0, n, -np.inf).astype(np.float32)  # nobody had it: not on the list


def sar_lists(
    inter: Interactions, cooc: Cooccurrence, weights: EventWeights, uidx: I64, k: int, excl: Exclusions
) -> list[I64]:
    """SAR: each shopper's affinity (type-weighted events, 30-day half-life) times Jaccard."""
    w = event_weights(inter, weights, SAR_HALF_LIFE_DAYS)
    aff = sp.csr_matrix((w, (inter.user, inter.item)), shape=(inter.n_users, inter.catalogue.n_items))
    aff.sum_duplicates()
    sim = cooc.jaccard()
    out: list[I64] = []
    for s in range(0, uidx.shape[0], BATCH):
        block = uidx[s : s + BATCH]
        known = block >= 0
        scores = np.zeros((block.shape[0], inter.catalogue.n_items), np.float32)
        if known.any():
            scores[known] = (aff[block[known]] @ sim).toarray()
        scores[scores <= 0] = -np.inf  # a product with no co-occurrence is not a recommendation
        for row, u in enumerate(block):
            out.append(top_k_masked(scores[row], k, banned_items(excl, int(u))))
    return out


def fit_plain_als(inter: Interactions, seed: int, threads: int) -> tuple[F32, F32]:
    """``implicit``'s ALS with its defaults (100 factors, regularisation 0.01, alpha 1, 15
    iterations) on the binary shopper x product matrix."""
    from implicit.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(random_state=seed, num_threads=threads)
    model.fit(user_item_binary(inter), show_progress=False)
    return (
        np.asarray(model.user_factors, dtype=np.float32),
        np.asarray(model.item_factors, dtype=np.float32),
    )


def factor_lists(
    users: F32,
    items: F32,
    uidx: I64,
    k: int,
    excl: Exclusions,
    item_mask: npt.NDArray[np.bool_] | None = None,
) -> list[I64]:
    """Top ``k`` by inner product for users with a row in ``users`` (others get nothing)."""
    out: list[I64] = []
    for s in range(0, uidx.shape[0], BATCH):
        block = uidx[s : s + BATCH]
        scores = users[np.maximum(block, 0)] @ items.T
        if item_mask is not None:
            scores[:, ~item_mask] = -np.inf
        for row, u in enumerate(block):
            if u < 0:
                out.append(np.zeros(0, np.int64))
                continue
            out.append(top_k_masked(scores[row], k, banned_items(excl, int(u))))
    return out


def novelty(lists: list[I64], item_users: F32, n_users: int) -> float:
    """Mean self-information -log2(p) of the recommended products, p = share of training shoppers
    who had the product (a product nobody had counts as had by one), weighted by how often each
    product is recommended (Microsoft Recommenders' ``novelty``)."""
    rec = np.concatenate(lists) if lists else np.zeros(0, np.int64)
    if rec.size == 0 or n_users == 0:
        return 0.0
    p = np.maximum(item_users[rec], 1.0) / n_users
    return float(np.mean(-np.log2(p)))


def diversity(lists: list[I64], cooc: Cooccurrence) -> float:
    """Intra-list diversity: 1 - the mean cosine co-occurrence similarity over each list's pairs,
    averaged over lists (lists shorter than two products are left out)."""
    a_parts, b_parts, owner = [], [], []
    for j, items in enumerate(lists):
        n = items.shape[0]
        if n < 2:
            continue
        i1, i2 = np.triu_indices(n, k=1)
        a_parts.append(items[i1])
        b_parts.append(items[i2])
        owner.append(np.full(i1.shape[0], j, np.int64))
    if not a_parts:
        return 0.0
    a, b, who = np.concatenate(a_parts), np.concatenate(b_parts), np.concatenate(owner)
    c = cooc.pair_counts(a, b)
    denom = np.sqrt(cooc.diag[a] * cooc.diag[b])
    sim = np.where(denom > 0, c / np.where(denom > 0, denom, 1.0), 0.0)
    n = np.bincount(who)
    has = n > 0
    per_list = np.bincount(who, weights=sim)[has] / n[has]
    return float(1.0 - per_list.mean())
