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
    """The products as Python columns (a row's dict is built when asked for: 100,000 dicts of
    7 keys, as earlier versions held, cost ~70 MB per API process at full scale; the columns, each
    distinct string once, ~20 MB)."""

    item_ids: I64  # sorted, same order as the model's dense indices
    _columns: dict[str, list[Any]]  # every column but created_at, in the table's order
    _search: (
        pl.Series
    )  # lower-case title, brand and categories (pyarrow.compute would import pandas: ~1 s of start-up)
    _by_category: dict[str, I64]  # lower-case category name (any level) -> product positions
    _price: npt.NDArray[np.float64]
    _categories: list[dict[str, Any]]

    @classmethod
    def load(cls, artifacts: Path) -> ProductCatalogue:
        """The products of the bundle in ``artifacts``. Arrow allocates through the system
        allocator meanwhile, which gives the Parquet read's buffers back (mimalloc, Arrow's
        default, kept ~17 MB more in each API process at full scale)."""
        previous = pa.default_memory_pool()
        pa.set_memory_pool(pa.system_memory_pool())
        try:
            return cls._read(artifacts)
        finally:
            pa.set_memory_pool(previous)

    @classmethod
    def _read(cls, artifacts: Path) -> ProductCatalogue:
        t = read_table(artifacts, "products").sort_by("item_id")
        columns: dict[str, list[Any]] = {}
        for name in t.column_names:
            if name == "created_at":
                continue
            values = t.column(name).to_pylist()
            if any(isinstance(v, str) for v in values[:1000]):
                shared: dict[str, str] = {}  # one object per distinct string (brands, categories)
                values = [v if v is None else shared.setdefault(v, v) for v in values]
            columns[name] = values
        # the search text in Python, then one polars column (polars' own string expressions kept
        # ~20 MB more per process); null where a field is null, as polars' concat_str makes it
        text = [columns[c] for c in ("title", "brand", "category_l1", "category_l2", "category_l3")]
        search = pl.Series(
            "search",
            [
                None if None in row else " ".join(str(v) for v in row).lower()
                for row in zip(*text, strict=True)
            ],
            dtype=pl.String,
        )
        by_category: dict[str, list[int]] = {}
        for level in ("category_l1", "category_l2", "category_l3"):
            for i, v in enumerate(columns[level]):
                members = by_category.setdefault(str(v).strip().lower(), [])
                if not members or members[-1] != i:
                    members.append(i)
        index = {k: np.array(v, dtype=np.int64) for k, v in by_category.items()}
        # through polars: pyarrow's to_numpy imports pandas (~1 s of the API's start-up)
        numbers = pl.from_arrow(t.select(["item_id", "price"]))
        assert isinstance(numbers, pl.DataFrame)
        ids = numbers["item_id"].to_numpy().astype(np.int64)
        price = numbers["price"].to_numpy().astype(np.float64)
        tree = cls._category_tree(columns["category_l1"], columns["category_l2"])
        del t, numbers
        pa.default_memory_pool().release_unused()
        return cls(ids, columns, search, index, price, tree)

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

    def price_of(self, idx: int) -> float:
        return float(self._price[idx])

    def category_l1(self, idx: int) -> str:
        return str(self._columns["category_l1"][idx])

    def product(self, idx: int) -> dict[str, Any]:
        return {name: values[idx] for name, values in self._columns.items()}

    def category_mask(self, category: str) -> npt.NDArray[np.bool_]:
        """Products whose category at any level equals ``category`` (case-insensitive)."""
        mask = np.zeros(self.item_ids.shape[0], dtype=bool)
        mask[self._by_category.get(category.strip().lower(), np.zeros(0, np.int64))] = True
        return mask

    def categories(self) -> list[dict[str, Any]]:
        """The category tree (levels 1 and 2) with product counts, for the storefront's filters."""
        return self._categories

    @staticmethod
    def _category_tree(level1: list[Any], level2: list[Any]) -> list[dict[str, Any]]:
        counts = Counter(zip(level1, level2, strict=True))
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
        return int(idx.shape[0]), [self.product(int(i)) for i in idx[start : start + page_size]]
