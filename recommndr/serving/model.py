"""The warm model the API serves: the artifact bundle, the two-stage recommender, the catalogue,
and the explanations ("because you bought ...", "popular in ...", "trending")."""

from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recommndr.bundle import Bundle
from recommndr.data.interactions import Catalogue
from recommndr.errors import ArtifactError, RecommndrError
from recommndr.features.online import UserRealtime
from recommndr.loading import load_bundle
from recommndr.monitoring.reference import FILE as REFERENCE_FILE
from recommndr.monitoring.reference import Reference
from recommndr.monitoring.window import LiveWindow
from recommndr.ranking.candidates import RECENT, SOURCE_COPURCHASE, SOURCE_EXPLORE, user_recent
from recommndr.ranking.features import FEATURES
from recommndr.ranking.two_stage import Ranked, TwoStageRecommender, popular
from recommndr.registry.artifacts import model_version, read_manifest
from recommndr.retrieval.base import Query
from recommndr.retrieval.popularity import PopularityRetriever
from recommndr.serving.catalogue import ProductCatalogue
from recommndr.serving.faults import Fault
from recommndr.serving.filters import NOTHING, Exclude
from recommndr.serving.stream import StreamSnapshot

log = logging.getLogger(__name__)
TRENDING = 2.0  # last week's daily events at least twice the month's
TRENDING_MIN_EVENTS = 3  # events last week for /trending (a rise from nothing is noise)
MAX_SHOPPERS = 20  # the most /shoppers answers
I64 = npt.NDArray[np.int64]


def trim_heap() -> None:
    """Give the heap that loading freed back to the system: glibc keeps freed memory for reuse
    (~10 MB of a full-scale load's temporaries). Nothing where the C library is not glibc."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return
    trim(0)


class ModelUnavailableError(RecommndrError):
    """Only the popularity fallback is loaded: this endpoint needs the full model."""

    code = "model_unavailable"
    http_status = 503


@dataclass
class Recommendation:
    item_id: int
    score: float
    reason: str


class ServingModel:
    """The full two-stage model, or (``bundle`` None) the popularity fallback that serves when the
    bundle's models cannot be loaded; ``fallback`` says why."""

    def __init__(
        self,
        bundle: Bundle | None,
        catalogue: ProductCatalogue,
        version: str,
        cat: Catalogue,
        pop: PopularityRetriever,
        manifest: dict[str, Any],
        fallback: str | None = None,
    ) -> None:
        self.bundle = bundle
        self.manifest = manifest
        self.catalogue = catalogue
        self.version = version
        self.cat = cat
        self.pop = pop
        self.fallback = fallback
        self.generator = bundle.candidate_generator() if bundle is not None else None
        self.ranking = (
            TwoStageRecommender(self.generator, bundle.features, bundle.ranker)
            if bundle is not None and self.generator is not None
            else None
        )
        # lists that depend on the bundle only: computed here, never per request
        self._trend = self._trend_order(bundle) if bundle is not None else None
        self._shoppers = self._pick_shoppers(bundle, MAX_SHOPPERS) if bundle is not None else []
        self.loaded_at = time.time()
        # what this model served, for the drift check (bounded: LiveWindow.capacity_bytes)
        self.window = LiveWindow(FEATURES)
        self.reference: Reference | None = None  # the bundle's monitoring reference, if it has one
        # a fault injected on purpose (challengers only, fault_injection on; see faults.py)
        self.fault: Fault | None = None

    def inject(self, fault: Fault | None) -> None:
        """Serve with ``fault`` from now on (None: healthy again). ``errors`` and ``slow`` act in
        the route (``fault.enter``), ``random`` and ``drift`` inside the ranking."""
        self.fault = fault
        if self.ranking is not None:
            self.ranking.perturb = fault if fault is not None and fault.perturbs else None

    @staticmethod
    def _version(manifest: dict[str, Any]) -> str:
        return model_version(manifest)

    @classmethod
    def load(cls, artifacts: Path, allow_fallback: bool = False) -> ServingModel:
        """Load, verify and warm the bundle. With ``allow_fallback``, a bundle whose models fail to
        load still serves popularity (hash-checked catalogue and popularity files) if it can."""
        t0 = time.perf_counter()
        try:
            model = cls._load_full(Path(artifacts))
        except RecommndrError as exc:
            if not allow_fallback:
                raise
            model = cls._load_popularity(Path(artifacts), str(exc))
        model.warm()
        model.window = LiveWindow(FEATURES)  # the warm-up's lists are not traffic
        trim_heap()
        log.info("loaded model %s from %s in %.2f s", model.version, artifacts, time.perf_counter() - t0)
        return model

    @classmethod
    def _load_full(cls, artifacts: Path) -> ServingModel:
        bundle = load_bundle(artifacts)
        catalogue = ProductCatalogue.load(artifacts)
        if not np.array_equal(catalogue.item_ids, bundle.catalogue.item_ids):
            raise ArtifactError(f"{artifacts}: products.parquet does not match the model's catalogue")
        bundle.als.use_index()
        version = cls._version(bundle.manifest)
        model = cls(bundle, catalogue, version, bundle.catalogue, bundle.popularity, bundle.manifest)
        if REFERENCE_FILE in bundle.manifest["files"]:  # hash-checked with the bundle (an optional file)
            try:
                model.reference = Reference.load(artifacts / REFERENCE_FILE)
            except (KeyError, ValueError, OSError) as exc:  # monitoring is blind, serving is not
                log.error("%s: the monitoring reference does not load: %s", artifacts, exc)
        return model

    @classmethod
    def _load_popularity(cls, artifacts: Path, why: str) -> ServingModel:
        manifest = read_manifest(artifacts, only=(*Bundle.POPULARITY_FILES, "products.parquet"))
        try:
            cat, pop = Bundle.load_popularity(artifacts, manifest)
        except (KeyError, ValueError, OSError) as exc:
            raise ArtifactError(f"{why}; the popularity fallback cannot load either: {exc}") from exc
        catalogue = ProductCatalogue.load(artifacts)
        log.error("serving popularity only: %s", why)
        return cls(None, catalogue, cls._version(manifest), cat, pop, manifest, fallback=why)

    def _full(self) -> Bundle:
        if self.bundle is None:
            raise ModelUnavailableError(f"only the popularity fallback is loaded: {self.fallback}")
        return self.bundle

    def warm(self) -> None:
        """Run every path once so the first request pays no lazy initialisation."""
        self.recommend(-1, 10)
        if self.bundle is None:
            return
        self.recommend(int(self.bundle.user_ids[0]) if self.bundle.user_ids.size else -1, 10)
        self.recommend(-1, 10, online=UserRealtime([int(self.catalogue.item_ids[0])], [], 0, 1))
        self.similar(0, 5)
        self.bundle.copurchase.pair_scores(np.zeros(1, np.int64), np.zeros(1, np.int64))

    # --- recommendations ----------------------------------------------------------------------
    def _query(
        self, b: Bundle, user_id: int, online: UserRealtime | None, exclude: Exclude = NOTHING
    ) -> Query:
        u = int(b.user_index(np.array([user_id], dtype=np.int64))[0])
        recent = user_recent(b.recent_indptr, b.recent_items, u)
        blocked = np.zeros(0, np.int64)
        if online is not None and (online.recent_items or online.purchased_items):
            # what the shopper did since the cut-off comes first; unknown product ids are ignored
            live = self.catalogue.positions(online.recent_items)
            recent = np.concatenate([live, recent])
            _, first = np.unique(recent, return_index=True)
            recent = recent[np.sort(first)][:RECENT]
            bought = self.catalogue.positions(online.purchased_items)
            blocked = bought[~b.exclusions.repeatable_l3[b.catalogue.l3[bought]]]  # durables only
        if exclude:
            blocked = np.concatenate([blocked, self._excluded(exclude, online, b, u)])
        return Query(u, recent, blocked)

    def _excluded(self, f: Exclude, online: UserRealtime | None, b: Bundle | None, u: int) -> I64:
        """Dense products the request filters out: its ids, and what the shopper has in the states
        asked, from the model (before its cut-off) and from the online store (since): ``viewed``
        is any product they touched (the store's recent list), ``carted`` and ``purchased`` its
        carted and bought lists. Unknown product ids are ignored."""
        parts = [self.catalogue.positions(list(f.items))] if f.items else []
        if b is not None and u >= 0 and f.states:
            parts.append(b.features.user_items(u, viewed=f.viewed, carted=f.carted, purchased=f.purchased))
        if online is not None:
            if f.viewed:
                parts.append(self.catalogue.positions(online.recent_items))
            if f.carted and not f.viewed:
                parts.append(self.catalogue.positions(online.carted_items))
            if f.purchased and not f.viewed:
                parts.append(self.catalogue.positions(online.purchased_items))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def recommend(
        self,
        user_id: int,
        k: int,
        category: str | None = None,
        online: UserRealtime | None = None,
        exclude: Exclude = NOTHING,
        explore: float = 0.0,
        stream: StreamSnapshot | None = None,
    ) -> tuple[list[Recommendation], bool, str | None]:
        """Top ``k`` for a user (with the online features, if any), whether it was the cold-start
        path, and what degraded (None when nothing did). The ranking is ``TwoStageRecommender.rank``,
        the one evaluation measures; this adds the query, the category filter, what ``exclude``
        leaves out (on every path, the popularity fallback included), ``explore`` (the share of
        the list given to new products) and the reasons. ``stream``: the streaming job's windows
        while live, whose popular products of the hour join the popularity candidates and lift
        the cold-start list (``TwoStageRecommender.rank``)."""
        mask = self.catalogue.category_mask(category) if category else None
        live = stream.popular(self.catalogue) if stream is not None else None
        if self.bundle is None or self.ranking is None:
            blocked = self._excluded(exclude, online, None, -1) if exclude else None
            return self._popular_recs(*popular(self.pop, k, mask, blocked, live)), True, "model_unavailable"
        q = self._query(self.bundle, user_id, online, exclude)
        r = self.ranking.rank([q], k, None if mask is None else [mask], explore=explore, live=live)[0]
        if r.popular:
            return self._popular_recs(r.items, r.scores), r.cold, None
        if r.top_features is not None and mask is None and not exclude:
            self._monitor(r)
        reasons = self._reasons(q, r.items, r.sources, r.trend)
        ids = self.catalogue.item_ids[r.items].tolist()
        recs = [Recommendation(i, s, why) for i, s, why in zip(ids, r.scores.tolist(), reasons, strict=True)]
        return recs, r.cold, "ranker_unavailable" if r.degraded else None

    def _monitor(self, r: Ranked) -> None:
        """Keep an unfiltered ranked list for the drift check, as the reference was ranked: its
        explored slots (new products placed by the exploration share) are left out of the
        sources; a failure here is logged, never the request's."""
        if r.top_features is None:
            return
        try:
            self.window.record_list(
                r.top_features, r.scores, np.where(r.sources & SOURCE_EXPLORE, 0, r.sources)
            )
        except Exception:
            log.exception("the drift window did not record a list")

    def _reasons(self, q: Query, items: np.ndarray, sources: np.ndarray, trend: np.ndarray) -> list[str]:
        """Why each item is shown, for all of them at once: a co-purchase with a recent product,
        trending, the same leaf category as a recent product, the same top-level one, or popular."""
        cat = self._full().catalogue
        recent = q.recent_items
        n = items.shape[0]
        out: list[str | None] = [None] * n
        if recent.size:
            cop = np.flatnonzero(sources & SOURCE_COPURCHASE)
            if cop.size:
                pair = self._full().copurchase.pair_scores(
                    np.tile(recent, cop.size), np.repeat(items[cop], recent.size)
                )
                pair = pair.reshape(cop.size, recent.size)
                best = pair.argmax(axis=1)
                for c, bi, score in zip(
                    cop.tolist(), best.tolist(), pair[np.arange(cop.size), best], strict=True
                ):
                    if score > 0:
                        out[c] = f"bought together with {self.catalogue.product(int(recent[bi]))['title']}"
            same3 = cat.l3[items][:, None] == cat.l3[recent][None, :]
            first3, has3 = same3.argmax(axis=1), same3.any(axis=1)
            has1 = (cat.l1[items][:, None] == cat.l1[recent][None, :]).any(axis=1)
        trending = trend >= TRENDING
        new = (sources & SOURCE_EXPLORE) > 0
        for j in range(n):
            if out[j] is not None:
                continue
            if new[j]:
                out[j] = f"new in {cat.l1_names[cat.l1[items[j]]]}"
            elif trending[j]:
                out[j] = "trending"
            elif recent.size and has3[j]:
                out[j] = f"because you viewed {self.catalogue.product(int(recent[first3[j]]))['title']}"
            elif recent.size and has1[j]:
                out[j] = f"more in {cat.l1_names[cat.l1[items[j]]]}"
            else:
                out[j] = f"popular in {cat.l1_names[cat.l1[items[j]]]}"
        return [r or "" for r in out]

    def popular_recs(
        self, k: int, mask: np.ndarray | None = None, stream: StreamSnapshot | None = None
    ) -> list[Recommendation]:
        """The most popular products now (in ``mask``), each "popular in <category>"; lifted by
        the last hour's events while the stream is live (``two_stage.popular``)."""
        return self._popular_recs(*self.popular(k, mask, stream))

    def _popular_recs(self, items: np.ndarray, scores: np.ndarray) -> list[Recommendation]:
        names = self.cat.l1_names
        return [
            Recommendation(int(self.catalogue.item_ids[i]), float(s), f"popular in {names[self.cat.l1[i]]}")
            for i, s in zip(items, scores, strict=True)
        ]

    def trending(self, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Products whose last week's daily events most exceed their month's (the ranker's
        ``item_trend``), among those with at least ``TRENDING_MIN_EVENTS`` events last week."""
        if self._trend is None:
            raise ModelUnavailableError(f"only the popularity fallback is loaded: {self.fallback}")
        order, score = self._trend
        if mask is not None:
            order = order[mask[order]]
        return order[:k], score[order[:k]]

    def trending_live(
        self, k: int, mask: np.ndarray | None, stream: StreamSnapshot
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The streaming job's trending products (``ProductWindows.trend``, best first; products
        this catalogue does not know skipped) in ``mask``; None while the stream is not live, or
        when none of its trending products is in ``mask`` (a category nothing is trending in: the
        batch list, flagged, rather than an empty live one). Works with the popularity fallback
        too: it needs only the catalogue."""
        v = stream.view(self.catalogue)
        if v is None:
            return None
        items, trend = v.trending, v.trend
        if mask is not None:
            keep = mask[items]
            items, trend = items[keep], trend[keep]
        if not items.size:
            return None
        return items[:k], trend[:k]

    @staticmethod
    def _trend_order(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
        t = bundle.features
        score = t.item_trend
        eligible = np.flatnonzero(t.item_events_7d >= TRENDING_MIN_EVENTS)
        order = eligible[np.lexsort((-t.item_events_7d[eligible], -score[eligible]))]
        return order.astype(np.int64), score

    def popular(
        self, k: int, mask: np.ndarray | None = None, stream: StreamSnapshot | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The cold-start list (``ranking.two_stage.popular``), also with the popularity fallback;
        lifted by the last hour's events while ``stream`` is live."""
        return popular(self.pop, k, mask, live=stream.popular(self.catalogue) if stream is not None else None)

    def shoppers(self, n: int) -> list[dict[str, Any]]:
        """Real shoppers for the storefront's demo switcher (at most ``MAX_SHOPPERS``)."""
        return self._shoppers[:n]

    @staticmethod
    def _pick_shoppers(b: Bundle, n: int) -> list[dict[str, Any]]:
        """Active users with recent history, one per favourite top-level category where possible
        (deterministic; greedy, so the first m of n are the picks for m)."""
        recent_n = np.diff(b.recent_indptr)
        events = b.features.user_events[: recent_n.shape[0]]
        order = np.lexsort((np.arange(recent_n.shape[0]), -events))  # most active first
        order = order[recent_n[order] >= 3][: max(50 * n, 500)]
        picked: list[dict[str, Any]] = []
        seen: set[int] = set()
        for u in order:
            recent = b.recent_items[b.recent_indptr[u] : b.recent_indptr[u + 1]]
            fav = int(np.bincount(b.catalogue.l1[recent]).argmax())
            if fav in seen:
                continue
            seen.add(fav)
            picked.append({"user_id": int(b.user_ids[u]), "events": int(events[u]),
                           "favourite_category": str(b.catalogue.l1_names[fav])})  # fmt: skip
            if len(picked) == n:
                break
        return picked

    # --- item to item ---------------------------------------------------------------------------
    def similar(self, idx: int, k: int) -> list[Recommendation]:
        items, scores, source = self._full().similar.similar(idx, k)
        reason = "similar shoppers liked it" if source == "als" else "same category"
        return [
            Recommendation(int(self.catalogue.item_ids[i]), float(s), reason)
            for i, s in zip(items, scores, strict=True)
        ]

    def frequently_bought_together(self, idx: int, k: int) -> list[Recommendation]:
        items, scores = self._full().copurchase.neighbours(idx, k)
        return [
            Recommendation(int(self.catalogue.item_ids[i]), float(s), "frequently bought together")
            for i, s in zip(items, scores, strict=True)
        ]

    def info(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "version": self.version,
            "fallback": self.fallback,
            "trained_on": m["data"]["sha256"][:12],
            "cutoff": m["cutoff_us"],
            "users": m["users"],
            "items": m["items"],
            "loaded_at": self.loaded_at,
        }
