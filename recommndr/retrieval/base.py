"""The contract every retriever follows (and that ``tests`` check for each, with one mixin)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Query:
    """Who to retrieve for: a dense user index (-1 for a user the model has not seen) and the
    user's recent products, most recent first (dense item indices; may be empty), and products not
    to recommend (durables bought since the model's cut-off, from the online store, and what the
    request filters out; duplicates allowed)."""

    user: int
    recent_items: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    exclude: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


class Retriever(ABC):
    """Returns, for each query, up to ``k`` distinct dense item indices with scores, best first."""

    name: ClassVar[str]

    @abstractmethod
    def retrieve(self, queries: Sequence[Query], k: int) -> list[tuple[I64, F32]]: ...

    @staticmethod
    def top_k(scores: F32, k: int, items: I64 | None = None) -> tuple[I64, F32]:
        """Best ``k`` of ``scores`` (over ``items`` or over all indices), sorted, finite only."""
        n = scores.shape[0]
        if n == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        k = min(k, n)
        part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
        part = part[np.isfinite(scores[part])]
        order = part[np.argsort(-scores[part], kind="stable")]
        idx = order if items is None else items[order]
        return idx.astype(np.int64), scores[order].astype(np.float32)
