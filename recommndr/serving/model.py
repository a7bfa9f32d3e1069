"""The warm model the API serves: the artifact bundle, the two-stage recommender, the catalogue,
and the explanations ("because you bought ...", "popular in ...", "trending")."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recommndr.ranking.features import FEATURES, compute_features
from recommndr.registry.artifacts import Bundle, load_bundle
from recommndr.retrieval.base import Query
from recommndr.retrieval.candidates import SOURCE_COPURCHASE
from recommndr.serving.catalog import ProductCatalog

log = logging.getLogger(__name__)
TREND_COL = FEATURES.index("item_trend")
TRENDING = 2.0  # last week's daily events at least twice the month's


@dataclass
class Recommendation:
    item_id: int
    score: float
    reason: str


class ServingModel:
    def __init__(self, bundle: Bundle, catalog: ProductCatalog, version: str) -> None:
        self.bundle = bundle
        self.catalog = catalog
        self.version = version
        self.generator = bundle.candidate_generator()
        self.loaded_at = time.time()

    @classmethod
    def load(cls, artifacts: Path) -> ServingModel:
        t0 = time.perf_counter()
        bundle = load_bundle(artifacts)
        catalog = ProductCatalog.load(artifacts)
        if not np.array_equal(catalog.item_ids, bundle.catalog.item_ids):
            from recommndr.registry.artifacts import ArtifactError

            raise ArtifactError(f"{artifacts}: products.parquet does not match the model's catalogue")
        from recommndr.retrieval.index import OnnxIndex

        int8 = (bundle.manifest.get("index") or {}).get("int8")
        if int8 and (Path(artifacts) / int8).exists():  # measured recall >= 0.99; re-scored exactly
            bundle.als.use_index(OnnxIndex((Path(artifacts) / int8).read_bytes()), shortlist=2)
        else:
            bundle.als.use_index(OnnxIndex(bundle.index_onnx))
        version = hashlib.sha256(str(sorted(bundle.manifest["files"].items())).encode()).hexdigest()[:12]
        model = cls(bundle, catalog, version)
        model.warm()
        log.info("loaded model %s from %s in %.2f s", version, artifacts, time.perf_counter() - t0)
        return model

    def warm(self) -> None:
        """Run every path once so the first request pays no lazy initialisation."""
        self.recommend(int(self.bundle.user_ids[0]) if self.bundle.user_ids.size else -1, 10)
        self.recommend(-1, 10)
        self.similar(0, 5)
        self.bundle.copurchase.pair_scores(np.zeros(1, np.int64), np.zeros(1, np.int64))

    # --- recommendations ----------------------------------------------------------------------
    def _query(self, user_id: int) -> Query:
        b = self.bundle
        u = int(b.user_index(np.array([user_id], dtype=np.int64))[0])
        recent = (
            b.recent_items[b.recent_indptr[u] : b.recent_indptr[u + 1]] if u >= 0 else np.zeros(0, np.int64)
        )
        return Query(u, recent)

    def recommend(
        self, user_id: int, k: int, category: str | None = None
    ) -> tuple[list[Recommendation], bool, str | None]:
        """Top ``k`` for a user, whether it was the cold-start path, and the fallback used if the
        ranker failed (None when it did not)."""
        q = self._query(user_id)
        mask = self.catalog.category_mask(category) if category else None
        if q.user < 0 and q.recent_items.size == 0:
            return self._popular_recs(k, mask), True, None
        cand = self.generator.generate([q])[0]
        keep = np.ones(cand.items.shape[0], dtype=bool) if mask is None else mask[cand.items]
        items = cand.items[keep]
        if items.size == 0:
            return self._popular_recs(k, mask), False, None
        user = np.full(items.shape[0], q.user, dtype=np.int64)
        X = compute_features(self.bundle.features, user, items, cand.als_score[keep], cand.als_rank[keep],
                             cand.cop_score[keep], cand.pop_score[keep], cand.sources[keep])  # fmt: skip
        degraded = None
        try:
            scores = self.bundle.ranker.score(X)
        except Exception:  # degrade, never fail: keep the retrieval order
            log.exception("ranker failed; serving the retrieval order")
            degraded = "ranker_unavailable"
            scores = (-np.log1p(cand.als_rank[keep]) + cand.cop_score[keep]).astype(np.float32)
        order = np.argsort(-scores, kind="stable")[:k]
        recs = [
            Recommendation(int(self.catalog.item_ids[items[j]]), float(scores[j]),
                           self._reason(q, int(items[j]), int(cand.sources[keep][j]), float(X[j, TREND_COL])))
            for j in order
        ]  # fmt: skip
        return recs, False, degraded

    def _reason(self, q: Query, item: int, sources: int, trend: float) -> str:
        b = self.bundle
        if sources & SOURCE_COPURCHASE and q.recent_items.size:
            pair = b.copurchase.pair_scores(q.recent_items, np.full(q.recent_items.shape[0], item))
            best = int(np.argmax(pair))
            if pair[best] > 0:
                title = self.catalog.product(int(q.recent_items[best]))["title"]
                return f"bought together with {title}"
        if trend >= TRENDING:
            return "trending"
        if q.recent_items.size:
            same = q.recent_items[b.catalog.l3[q.recent_items] == b.catalog.l3[item]]
            if same.size:
                return f"because you viewed {self.catalog.product(int(same[0]))['title']}"
            if (b.catalog.l1[q.recent_items] == b.catalog.l1[item]).any():
                return f"more in {b.catalog.l1_names[b.catalog.l1[item]]}"
        return f"popular in {b.catalog.l1_names[b.catalog.l1[item]]}"

    def _popular_recs(self, k: int, mask: np.ndarray | None) -> list[Recommendation]:
        items, scores = self.popular(k, mask)
        names = self.bundle.catalog.l1_names
        return [
            Recommendation(
                int(self.catalog.item_ids[i]), float(s), f"popular in {names[self.bundle.catalog.l1[i]]}"
            )
            for i, s in zip(items, scores, strict=True)
        ]

    def popular(self, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        pop = self.bundle.popularity
        if mask is None:
            return pop.popular(k)
        items = np.flatnonzero(mask)
        return pop.top_k(pop.pop[items], k, items)

    # --- item to item ---------------------------------------------------------------------------
    def similar(self, idx: int, k: int) -> list[Recommendation]:
        items, scores, source = self.bundle.similar.similar(idx, k)
        reason = "similar shoppers liked it" if source == "als" else "same category"
        return [
            Recommendation(int(self.catalog.item_ids[i]), float(s), reason)
            for i, s in zip(items, scores, strict=True)
        ]

    def frequently_bought_together(self, idx: int, k: int) -> list[Recommendation]:
        items, scores = self.bundle.copurchase.neighbours(idx, k)
        return [
            Recommendation(int(self.catalog.item_ids[i]), float(s), "frequently bought together")
            for i, s in zip(items, scores, strict=True)
        ]

    def info(self) -> dict[str, Any]:
        m = self.bundle.manifest
        return {
            "version": self.version,
            "trained_on": m["data"]["sha256"][:12],
            "cutoff": m["cutoff_us"],
            "users": m["users"],
            "items": m["items"],
            "loaded_at": self.loaded_at,
        }
