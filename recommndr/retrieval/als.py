"""ALS retrieval with ``implicit`` on confidence built from event types and age.

CPU and GPU (``use_gpu``, e.g. on Colab) share one factory in ``implicit.als``. Users the model has
not seen are folded in from their recent products (one small least-squares solve), so a shopper
with a few clicks gets personal results before the next retrain.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from recommndr.arrays import exact, load_arrays, narrowest_int, save_arrays
from recommndr.data.interactions import Interactions
from recommndr.errors import RecommndrError
from recommndr.params import ALSConfig, EventWeights
from recommndr.retrieval.base import F32, I64, Query, Retriever
from recommndr.retrieval.cold import attribute_factors
from recommndr.retrieval.index import F64, NormBoundIndex
from recommndr.retrieval.rows import PermutedRows, QuantisedRows
from recommndr.retrieval.weights import event_weights

# float32 matrices when fitted; as a saved bundle keeps them once loaded (retrieval/rows.py)
UserFactors = F32 | QuantisedRows
ItemFactors = F32 | PermutedRows

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


def gram_matrix(item_factors: F32, reg: float, block: int = 8192) -> F64:
    """V'V + reg I over the item factors (float64), a block of rows at a time."""
    f = item_factors.shape[1]
    gram = np.zeros((f, f))
    for s in range(0, item_factors.shape[0], block):
        v = item_factors[s : s + block].astype(np.float64)
        gram += v.T @ v
    out: F64 = gram + reg * np.eye(f)
    return out


class ALSRetriever(Retriever):
    """``user_factors`` and ``item_factors`` read as float32 rows (``factors[i]``, ``factors[idx]``)
    either way: fitted, they are float32 matrices; in a loaded bundle the user factors are their
    int8 per-row quantisation (``QuantisedRows``) and the item factors their float32 rows in the
    exact index's scan order (``PermutedRows``), which the index scans in place. The item factors
    are not quantised: they are a tenth of the users' size, the index scans them (an int8 block
    took 2.5 times as long, float16 25 times in numpy), and ``als_score`` and the fold-in gather
    them."""

    name = "als"

    def __init__(
        self,
        user_factors: UserFactors,
        item_factors: ItemFactors,
        item_known: npt.NDArray[np.bool_],
        reg: float,
        gram: F64 | None = None,
        index_norms: F64 | None = None,
    ) -> None:
        self.user_factors = user_factors
        self.item_factors = item_factors
        self.item_known = item_known
        self.mask = np.where(item_known, 0.0, -np.inf).astype(np.float32)
        self.reg = reg
        self._dense: F32 | None = None  # the item factors in product order, for scores()
        # the fold-in's V'V + reg I (given: as saved, so loading reads no item factor)
        # over the known products only: an unseen one's factors are placed from its attributes
        # (retrieval/cold.py) and must not weigh in the fold-in
        self._gram = gram if gram is not None else gram_matrix(self._items_dense()[item_known], reg)
        # with item factors in scan order: the norms of the known ones, which lead (as saved)
        self._index_norms = index_norms
        if index_norms is not None:
            if not isinstance(item_factors, PermutedRows):
                raise ValueError("index norms come with item factors in scan order")
            lead = item_factors.order[: index_norms.shape[0]]
            if index_norms.shape[0] != int(item_known.sum()) or not item_known[lead].all():
                raise ValueError("the item factors' scan order does not start with the known products")
        self.index: NormBoundIndex | None = None  # the request path's exact index (use_index)

    def _items_dense(self) -> F32:
        if isinstance(self.item_factors, np.ndarray):
            return self.item_factors
        if self._dense is None:
            self._dense = np.asarray(self.item_factors)
        return self._dense

    def save(self, path: Path, user_ids: npt.NDArray[np.integer[Any]]) -> None:
        """The factors to ``path`` (.npz, every array mapped in place when loaded) with
        ``user_ids``, the user id of each row of them (in the narrowest integer type that holds
        them: int32 at full scale): the user factors int8 with a scale per row
        (``user_codes``, ``user_scales``); the item factors float32 in the exact index's scan
        order (``item_rows``: the known products by descending norm, then the others;
        ``item_order``: the product of each row; ``index_norms``: the known ones' norms); and the
        fold-in's Gram matrix."""
        users = self.user_factors
        if not isinstance(users, QuantisedRows):
            users = QuantisedRows.quantise(users)
        if isinstance(self.item_factors, PermutedRows) and self._index_norms is not None:
            rows, order, norms = self.item_factors.rows, self.item_factors.order, self._index_norms
        else:
            dense = self._items_dense()
            if self.index is not None:
                known, factors, norms = self.index.items, self.index.factors, self.index.norms
            else:
                known, factors, norms = NormBoundIndex.sort(dense, self.item_known)
            others = np.flatnonzero(~self.item_known)
            order = np.concatenate([known, others])
            rows = np.concatenate([factors, dense[others].astype(np.float32)])
        save_arrays(
            path,
            {
                "user_codes": users.codes,
                "user_scales": users.scales,
                "user_ids": narrowest_int(user_ids, f"{path}: user_ids"),
                "item_rows": rows,
                "item_order": exact(order, np.int32, f"{path}: item_order"),
                "index_norms": norms,
                "item_known": self.item_known,
                "reg": np.float64(self.reg),
                "gram": self._gram,
            },
        )

    @classmethod
    def load(cls, path: Path) -> tuple[ALSRetriever, npt.NDArray[np.integer[Any]]]:
        """What :meth:`save` wrote (arrays mapped from the file), or what versions before it
        wrote (float32 ``user_factors`` and ``item_factors``; the index is then built by
        :meth:`use_index`): the retriever and the user id of each row of its factors."""
        z = load_arrays(path)
        users: UserFactors = (
            QuantisedRows(z["user_codes"], z["user_scales"]) if "user_codes" in z else z["user_factors"]
        )
        if "item_rows" in z:
            items: ItemFactors = PermutedRows(z["item_rows"], z["item_order"])
            norms = z["index_norms"]
        else:
            items, norms = z["item_factors"], None
        als = cls(users, items, z["item_known"], float(z["reg"]), z.get("gram"), norms)
        return als, z["user_ids"]

    def use_index(self) -> None:
        """Answer one shopper at a time through an exact norm-bounded index (``retrieval/index.py``)
        instead of scoring every product: same top k, about a tenth of the work."""
        if isinstance(self.item_factors, PermutedRows) and self._index_norms is not None:
            n = self._index_norms.shape[0]
            rows = self.item_factors.rows[:n]
            self.index = NormBoundIndex.from_sorted(self.item_factors.order[:n], rows, self._index_norms)
        else:
            self.index = NormBoundIndex(self._items_dense(), self.item_known)

    @classmethod
    def fit(cls, inter: Interactions, weights: EventWeights, cfg: ALSConfig, seed: int) -> ALSRetriever:
        users, items = fit_als(inter, weights, cfg, seed)
        known = np.zeros(inter.catalogue.n_items, dtype=bool)
        known[np.unique(inter.item)] = True
        # unseen products get factors from their attributes (retrieval/cold.py); item_known stays
        # False for them, so retrieval and the gram above ignore them: only exploration uses them
        items = attribute_factors(inter.catalogue, items, known)
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
        out: F32 = vectors @ self._items_dense().T + self.mask[None, :]
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
