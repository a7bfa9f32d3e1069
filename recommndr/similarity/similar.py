"""Similar items: cosine over ALS item factors (never the item itself), with a same-category
fallback (by current popularity) for products ALS has not seen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recommndr.arrays import exact, load_arrays, save_arrays
from recommndr.data.interactions import Catalogue
from recommndr.retrieval.base import F32, I64, Retriever
from recommndr.retrieval.popularity import grouped_top
from recommndr.retrieval.rows import PermutedRows


def similar_table(
    item_factors: F32 | PermutedRows, known: npt.NDArray[np.bool_], k: int, block: int = 2048
) -> tuple[I64, F32]:
    """Top-``k`` cosine neighbours of every known product, shape (n_items, k); -1 / -inf padding.

    Runs the same ONNX MatMul + TopK graph as the retrieval index over unit-length factors, a
    block of products at a time (ONNX Runtime's TopK is several times faster than numpy's
    argpartition over 100K columns).
    """
    from recommndr.retrieval.index import OnnxIndex, build_index

    item_factors = np.asarray(item_factors)  # (a loaded bundle's are in scan order: product order here)
    n = item_factors.shape[0]
    norms = np.linalg.norm(item_factors, axis=1)
    unit = np.where(known[:, None], item_factors / np.maximum(norms, 1e-12)[:, None], 0.0).astype(np.float32)
    mask = np.where(known, 0.0, -np.inf).astype(np.float32)
    index = OnnxIndex(build_index(unit, mask), threads=0)
    nbr = np.full((n, k), -1, dtype=np.int64)
    sim = np.full((n, k), -np.inf, dtype=np.float32)
    rows = np.flatnonzero(known)
    kk = min(k + 1, int(known.sum()))
    for s in range(0, rows.shape[0], block):
        r = rows[s : s + block]
        scores, items = index.search(unit[r], kk)
        self_hit = items == r[:, None]  # never the item itself
        order = np.argsort(self_hit, axis=1, kind="stable")[:, : kk - 1]
        take = min(k, kk - 1)
        nbr[r, :take] = np.take_along_axis(items, order, axis=1)[:, :take]
        sim[r, :take] = np.take_along_axis(scores, order, axis=1)[:, :take]
    return nbr, sim


class SimilarItems:
    def __init__(
        self,
        catalogue: Catalogue,
        nbr: npt.NDArray[np.integer[Any]],
        sim: F32,
        known: npt.NDArray[np.bool_],
        pop: F32,
    ) -> None:
        self.catalogue = catalogue
        self.nbr = nbr
        self.sim = sim
        self.known = known
        self.pop = pop
        self.l3_ptr, self.l3_top = grouped_top(catalogue.l3, pop, len(catalogue.l3_names), 100)

    def save(self, path: Path) -> None:
        """The neighbour table to ``path`` (.npz; the products as int32, checked): the fallback's
        inputs belong to other components."""
        save_arrays(path, {"nbr": exact(self.nbr, np.int32, f"{path}: nbr"), "sim": self.sim})

    @classmethod
    def load(cls, path: Path, catalogue: Catalogue, known: npt.NDArray[np.bool_], pop: F32) -> SimilarItems:
        """The table :meth:`save` wrote; ``known`` (ALS's products) and ``pop`` (current popularity)
        come from the retrievers of the same bundle."""
        z = load_arrays(path)
        return cls(catalogue, z["nbr"], z["sim"], known, pop)

    def similar(self, item: int, k: int) -> tuple[I64, F32, str]:
        """``k`` products like ``item`` and where they came from ('als' or 'category')."""
        if self.known[item]:
            row = self.nbr[item]
            ok = (row >= 0) & np.isfinite(self.sim[item])
            if ok.sum() >= k:
                return row[ok][:k].astype(np.int64), self.sim[item][ok][:k], "als"
        c = int(self.catalogue.l3[item])
        items = self.l3_top[self.l3_ptr[c] : self.l3_ptr[c + 1]]
        items = items[items != item]
        top, scores = Retriever.top_k(self.pop[items], k, items)
        return top, scores, "category"
