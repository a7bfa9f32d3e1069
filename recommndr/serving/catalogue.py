"""The product catalogue held in memory for the API: lookups, filters, search, pages."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from recommndr.data.schema import read_table

I64 = npt.NDArray[np.int64]


@dataclass
class ProductCatalogue:
    item_ids: I64  # sorted, same order as the model's dense indices
    table: pa.Table
    _search: (
        pl.Series
    )  # lower-case title, brand and categories (pyarrow.compute would import pandas: ~1 s of start-up)
    _rows: list[dict[str, Any]]
    _by_category: dict[str, I64]  # lower-case category name (any level) -> product positions
    _price: npt.NDArray[np.float64]
    _categories: list[dict[str, Any]]

    @classmethod
    def load(cls, artifacts: Path) -> ProductCatalogue:
        t = read_table(artifacts, "products").sort_by("item_id")
        text = pl.from_arrow(t.select(["title", "brand", "category_l1", "category_l2", "category_l3"]))
        assert isinstance(text, pl.DataFrame)
        search = text.select(
            pl.concat_str([pl.col(c).cast(pl.String) for c in text.columns], separator=" ").str.to_lowercase()
        ).to_series()
        rows = t.drop(["created_at"]).to_pylist()
        by_category: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            for level in ("category_l1", "category_l2", "category_l3"):
                members = by_category.setdefault(str(r[level]).strip().lower(), [])
                if not members or members[-1] != i:
                    members.append(i)
        index = {k: np.array(v, dtype=np.int64) for k, v in by_category.items()}
        # through polars: pyarrow's to_numpy imports pandas (~1 s of the API's start-up)
        numbers = pl.from_arrow(t.select(["item_id", "price"]))
        assert isinstance(numbers, pl.DataFrame)
        ids = numbers["item_id"].to_numpy().astype(np.int64)
        price = numbers["price"].to_numpy().astype(np.float64)
        return cls(ids, t, search, rows, index, price, cls._category_tree(rows))

    def index_of(self, item_id: int) -> int:
        pos = int(np.searchsorted(self.item_ids, item_id))
        return pos if pos < self.item_ids.shape[0] and self.item_ids[pos] == item_id else -1

    def positions(self, item_ids: list[int]) -> I64:
        """Dense indices of the known ``item_ids`` (unknown ones dropped), in order."""
        if not item_ids:
            return np.zeros(0, np.int64)
        ids = np.asarray(item_ids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.item_ids, ids), self.item_ids.shape[0] - 1)
        return np.asarray(pos[self.item_ids[pos] == ids], dtype=np.int64)

    def product(self, idx: int) -> dict[str, Any]:
        return self._rows[idx]

    def category_mask(self, category: str) -> npt.NDArray[np.bool_]:
        """Products whose category at any level equals ``category`` (case-insensitive)."""
        mask = np.zeros(self.item_ids.shape[0], dtype=bool)
        mask[self._by_category.get(category.strip().lower(), np.zeros(0, np.int64))] = True
        return mask

    def categories(self) -> list[dict[str, Any]]:
        """The category tree (levels 1 and 2) with product counts, for the storefront's filters."""
        return self._categories

    @staticmethod
    def _category_tree(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        counts = Counter((r["category_l1"], r["category_l2"]) for r in rows)
        tree: dict[str, list[dict[str, Any]]] = {}
        for (l1, l2), n in sorted(counts.items(), key=lambda kv: [(v is None, v or "") for v in kv[0]]):
            tree.setdefault(l1, []).append({"name": l2, "count": n})
        return [
            {"name": name, "count": sum(c["count"] for c in children), "children": children}
            for name, children in tree.items()
        ]

    def query(
        self,
        category: str | None,
        q: str | None,
        page: int,
        page_size: int,
        min_price: float | None = None,
        max_price: float | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        mask = np.ones(self.item_ids.shape[0], dtype=bool)
        if category:
            mask &= self.category_mask(category)
        if min_price is not None:
            mask &= self._price >= min_price
        if max_price is not None:
            mask &= self._price <= max_price
        if q:
            for word in q.lower().split():
                mask &= self._search.str.contains(word, literal=True).fill_null(False).to_numpy()
        idx = np.flatnonzero(mask)
        start = (page - 1) * page_size
        return int(idx.shape[0]), [self._rows[i] for i in idx[start : start + page_size]]
