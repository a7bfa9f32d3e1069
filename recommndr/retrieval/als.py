"""ALS retrieval with ``implicit`` on confidence built from event types and age.

CPU and GPU (``use_gpu``, e.g. on Colab) share one factory in ``implicit.als``. Users the model has
not seen are folded in from their recent products (one small least-squares solve), so a shopper
with a few clicks gets personal results before the next retrain.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from recommndr.arrays import load_arrays, save_arrays
from recommndr.data.interactions import Interactions
from recommndr.errors import RecommndrError
from recommndr.params import ALSConfig, EventWeights
from recommndr.retrieval.base import F32, I64, Query, Retriever
from recommndr.retrieval.index import NormBoundIndex
from recommndr.retrieval.weights import event_weights

if TYPE_CHECKING:  # scipy only where a model is fitted: the API never imports it (~23 MB a process)
    import scipy.sparse as sp

log = logging.getLogger(__name__)


class ModelFitError(RecommndrError):
    """Training produced an unusable model (NaN factors, nothing to learn from)."""

    code = "model_fit_error"


def confidence_matrix(inter: Interactions, weights: EventWeights, cfg: ALSConfig) -> sp.csr_matrix:
    """users x items confidence: alpha * log1p(sum of type- and age-weighted events)."""
    import scipy.sparse as sp

    w = event_weights(inter, weights, cfg.half_life_days)
    m = sp.csr_matrix(
        (w, (inter.user, inter.item)), shape=(inter.n_users, inter.catalogue.n_items), dtype=np.float32
    )
    m.sum_duplicates()
    m.data = (cfg.alpha * np.log1p(m.data)).astype(np.float32)
    return m


def fit_als(inter: Interactions, weights: EventWeights, cfg: ALSConfig, seed: int) -> tuple[F32, F32]:
    """Fit ALS on the interactions; returns (user_factors, item_factors) as float32 arrays."""
    if inter.n_users == 0:
        raise ModelFitError("no interactions before the cut-off: nothing to train on")
    return fit_als_matrix(confidence_matrix(inter, weights, cfg), cfg, seed)


def fit_als_matrix(conf: sp.csr_matrix, cfg: ALSConfig, seed: int) -> tuple[F32, F32]:
    """Fit ALS on a users x items confidence matrix; fails loudly on NaN factors."""
    from implicit.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=cfg.factors,
        regularization=cfg.regularization,
        alpha=1.0,
        iterations=cfg.iterations,
        use_gpu=cfg.use_gpu,
        num_threads=cfg.threads,
        random_state=seed,
    )
    model.fit(conf, show_progress=False)
    if cfg.use_gpu:  # pragma: no cover - GPU only
        model = model.to_cpu()
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    if not (np.isfinite(users).all() and np.isfinite(items).all()):
        raise ModelFitError("NaN encountered in factors")
    return users, items


class ALSRetriever(Retriever):
    name = "als"

    def __init__(
        self, user_factors: F32, item_factors: F32, item_known: npt.NDArray[np.bool_], reg: float
    ) -> None:
        self.user_factors = user_factors
        self.item_factors = item_factors
        self.item_known = item_known
        self.mask = np.where(item_known, 0.0, -np.inf).astype(np.float32)
        self.reg = reg
        v = item_factors.astype(np.float64)
        self._gram = v.T @ v + reg * np.eye(v.shape[1])
        self.index: NormBoundIndex | None = None  # the request path's exact index (use_index)

    def save(self, path: Path, user_ids: I64) -> None:
        """The factors to ``path`` (.npz, mapped in place when loaded) with ``user_ids``, the user id
        of each row of them."""
        save_arrays(path, {"user_factors": self.user_factors, "item_factors": self.item_factors,
                           "item_known": self.item_known, "user_ids": user_ids,
                           "reg": np.float64(self.reg)})  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> tuple[ALSRetriever, I64]:
        """What :meth:`save` wrote: the retriever and the user id of each row of its factors."""
        z = load_arrays(path)
        return cls(z["user_factors"], z["item_factors"], z["item_known"], float(z["reg"])), z["user_ids"]

    def use_index(self) -> None:
        """Answer one shopper at a time through an exact norm-bounded index (``retrieval/index.py``)
        instead of scoring every product: same top k, about a tenth of the work."""
        self.index = NormBoundIndex(self.item_factors, self.item_known)

    @classmethod
    def fit(cls, inter: Interactions, weights: EventWeights, cfg: ALSConfig, seed: int) -> ALSRetriever:
        users, items = fit_als(inter, weights, cfg, seed)
        known = np.zeros(inter.catalogue.n_items, dtype=bool)
        known[np.unique(inter.item)] = True
        return cls(users, items, known, cfg.regularization)

    def user_vector(self, q: Query) -> F32 | None:
        if q.user >= 0:
            row: F32 = self.user_factors[q.user]
            return row
        recent = q.recent_items[self.item_known[q.recent_items]] if q.recent_items.size else q.recent_items
        if recent.size == 0:
            return None
        # Fold-in: least squares against the recent products with unit confidence.
        v = self.item_factors[recent].astype(np.float64)
        x = np.linalg.solve(self._gram + v.T @ v, v.sum(axis=0))
        out: F32 = x.astype(np.float32)
        return out

    def scores(self, vectors: F32) -> F32:
        """Scores of every product for a batch of user vectors (unknown products: -inf)."""
        out: F32 = vectors @ self.item_factors.T + self.mask[None, :]
        return out

    def retrieve(self, queries: Sequence[Query], k: int) -> list[tuple[I64, F32]]:
        vecs = [self.user_vector(q) for q in queries]
        have = [i for i, v in enumerate(vecs) if v is not None]
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        out: list[tuple[I64, F32]] = [empty] * len(queries)
        if self.index is not None:
            for i in have:
                scores, items = self.index.search_one(vecs[i], k)  # type: ignore[arg-type]
                out[i] = (items, scores)
            return out
        for start in range(0, len(have), 512):
            block = have[start : start + 512]
            s = self.scores(np.stack([vecs[i] for i in block]))  # type: ignore[misc]
            for row, i in enumerate(block):
                out[i] = self.top_k(s[row], k)
        return out
