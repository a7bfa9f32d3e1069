"""What the API served and received, kept in bounded memory for the drift check.

A :class:`Window` is what a drift check compares with the bundle's reference
(``reference.py``): per served list the feature rows of its top products, its scores, the top-1
score margin and the candidate sources; per event its price, top-level category and type; the
counts of accepted and refused events. ``drift.check`` takes one; ``profile.py`` makes one from an
events file (a replay), and :class:`LiveWindow` keeps one while the API runs.

:class:`LiveWindow` holds time buckets (:data:`BUCKET_S` seconds each, the last
:data:`N_BUCKETS`), each with a fixed-size uniform reservoir (Vitter's algorithm R) of lists and
of events and exact counters. Recording a list or an event is a few array writes under a lock
(no I/O, no allocation beyond the reservoir's first use); a snapshot of the last ``seconds``
merges the buckets in it, each bucket contributing in proportion to what it saw, so the merged
sample stays a uniform sample of the window. Memory is bounded by construction:
:meth:`LiveWindow.capacity_bytes` states it (1.8 MB for the 29 ranking features).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
ROWS_PER_LIST = 3  # feature rows kept per served list: its top products' (two_stage.TOP_FEATURE_ROWS)
SCORES_PER_LIST = 10  # scores kept per served list
BUCKET_S = 300
N_BUCKETS = 12  # one hour
LISTS_PER_BUCKET = 300
EVENTS_PER_BUCKET = 1000
MAX_LABELS = 1024  # distinct categories and event types a window names; more are "(other)"
MAX_WINDOW_S = BUCKET_S * N_BUCKETS


@dataclass
class Window:
    """A window of traffic, in the shape the drift check reads. ``features``: rows x features
    (NaN where a list had fewer than :data:`ROWS_PER_LIST` products); ``scores`` and ``sources``
    per list and slot (NaN / 0 padded); ``margin`` per list (top-1 minus top-2 score; NaN for a
    list of one); ``price``/``category``/``event_type`` per event; ``failures`` of ``events_seen``
    events were refused by validation."""

    feature_names: tuple[str, ...]
    features: F32
    scores: F32
    margin: F32
    sources: npt.NDArray[np.uint8]
    price: F64
    category: list[str]
    event_type: list[str]
    failures: int
    events_seen: int
    lists_seen: int
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (lists of numbers; NaN as null) for ``GET /monitoring/window``."""

        def nums(a: npt.NDArray[Any]) -> list[Any]:
            """Numbers as JSON has them: NaN and infinities as null."""
            out = np.asarray(a, np.float64).astype(object)
            out[~np.isfinite(np.asarray(a, np.float64))] = None
            return out.tolist()  # type: ignore[no-any-return]

        return {
            "feature_names": list(self.feature_names),
            "features": nums(self.features),
            "scores": nums(self.scores),
            "margin": nums(self.margin),
            "sources": self.sources.astype(np.int64).tolist(),
            "price": nums(self.price),
            "category": self.category,
            "event_type": self.event_type,
            "failures": self.failures,
            "events_seen": self.events_seen,
            "lists_seen": self.lists_seen,
            "seconds": self.seconds,
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Window:
        """The inverse of :meth:`to_json`; raises ValueError naming what is malformed."""
        try:
            names = tuple(str(n) for n in d["feature_names"])
            f = len(names)

            def arr(key: str, width: int | None) -> F32:
                a = np.asarray(d[key], dtype=np.float64)  # None -> nan
                if width is not None:
                    a = a.reshape(-1, width) if a.size else np.zeros((0, width))
                return a.astype(np.float32)

            w = cls(
                names,
                arr("features", f),
                arr("scores", SCORES_PER_LIST),
                arr("margin", None).reshape(-1),
                _sources(d["sources"]),
                np.asarray(d["price"], np.float64).reshape(-1),
                [str(c) for c in d["category"]],
                [str(t) for t in d["event_type"]],
                int(d["failures"]),
                int(d["events_seen"]),
                int(d["lists_seen"]),
                float(d.get("seconds", 0.0)),
                dict(d.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"not a monitoring window: {exc}") from exc
        if len(w.category) != w.price.shape[0] or len(w.event_type) != w.price.shape[0]:
            raise ValueError("not a monitoring window: price, category and event_type differ in length")
        if not 0 <= w.failures <= w.events_seen or w.lists_seen < 0:
            raise ValueError("not a monitoring window: the counts are inconsistent")
        if (
            w.features.shape[0] != w.scores.shape[0] * ROWS_PER_LIST
            or w.sources.shape[0] != w.scores.shape[0]
        ):
            raise ValueError("not a monitoring window: features, scores and sources differ in length")
        return w


def _sources(value: Any) -> npt.NDArray[np.uint8]:
    a = np.asarray(value, np.int64).reshape(-1, SCORES_PER_LIST)
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ValueError("sources outside 0..255")
    return a.astype(np.uint8)


class _Reservoir:
    """A uniform sample of at most ``capacity`` rows of what was offered (algorithm R)."""

    def __init__(self, capacity: int, width: int, dtype: Any, fill: Any) -> None:
        self.rows = np.full((capacity, width), fill, dtype=dtype)
        self.capacity = capacity
        self.seen = 0

    def slot(self, rng: np.random.Generator) -> int:
        """The row to write the next offered item to, or -1 to drop it."""
        i = self.seen
        self.seen += 1
        if i < self.capacity:
            return i
        j = int(rng.integers(0, i + 1))
        return j if j < self.capacity else -1

    def kept(self) -> int:
        return min(self.seen, self.capacity)


class _Bucket:
    def __init__(self, start: float, n_features: int) -> None:
        self.start = start
        w = ROWS_PER_LIST * n_features + 2 * SCORES_PER_LIST + 1
        self.lists = _Reservoir(LISTS_PER_BUCKET, w, np.float32, np.nan)
        self.events = _Reservoir(EVENTS_PER_BUCKET, 3, np.float64, np.nan)  # price, category, type codes
        self.failures = 0


class LiveWindow:
    """The API's window for one variant (see the module docstring); thread-safe."""

    def __init__(self, feature_names: tuple[str, ...], seed: int = 0) -> None:
        self.feature_names = feature_names
        self._f = len(feature_names)
        self._buckets: list[_Bucket] = []
        self._codes: dict[str, int] = {}  # category and event type names, coded in the reservoir
        self._names: list[str] = []
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(seed)

    @staticmethod
    def capacity_bytes(n_features: int) -> int:
        """The most this window can hold, in bytes (every bucket full)."""
        row = (ROWS_PER_LIST * n_features + 2 * SCORES_PER_LIST + 1) * 4
        return N_BUCKETS * (LISTS_PER_BUCKET * row + EVENTS_PER_BUCKET * 3 * 8)

    def _bucket(self, now: float) -> _Bucket:
        start = now - now % BUCKET_S
        if not self._buckets or self._buckets[-1].start != start:
            self._buckets.append(_Bucket(start, self._f))
            del self._buckets[:-N_BUCKETS]
        return self._buckets[-1]

    def record_list(
        self, features: F32, scores: F32, sources: npt.NDArray[np.uint8], now: float | None = None
    ) -> None:
        """One served list: its top products' feature rows (best first), its scores and sources."""
        n = min(scores.shape[0], SCORES_PER_LIST)
        if n == 0 or features.ndim != 2 or sources.shape[0] < n:
            return
        with self._lock:
            b = self._bucket(time.time() if now is None else now)
            i = b.lists.slot(self._rng)
            if i < 0:
                return
            row = b.lists.rows[i]
            row[:] = np.nan
            r = min(features.shape[0], ROWS_PER_LIST)
            f = self._f
            if r and features.shape[1] == f:
                row[: r * f] = features[:r].reshape(-1)
            base = ROWS_PER_LIST * f
            row[base : base + n] = scores[:n]
            row[base + SCORES_PER_LIST : base + SCORES_PER_LIST + n] = sources[:n]
            row[base + SCORES_PER_LIST : base + 2 * SCORES_PER_LIST][n:] = 0
            row[-1] = scores[0] - scores[1] if n > 1 else np.nan

    def record_events(
        self, events: Sequence[tuple[float, str, str]], failures: int = 0, now: float | None = None
    ) -> None:
        """Accepted events as (price, top-level category, event type), and how many were refused."""
        with self._lock:
            b = self._bucket(time.time() if now is None else now)
            b.failures += failures
            for price, category, etype in events:
                i = b.events.slot(self._rng)
                if i >= 0:
                    b.events.rows[i] = (price, self._code(category), self._code(etype))

    def _code(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            if len(self._names) >= MAX_LABELS:
                return len(self._names)  # snapshot names this code "(other)"
            code = self._codes[name] = len(self._names)
            self._names.append(name)
        return code

    def snapshot(self, seconds: float = MAX_WINDOW_S, now: float | None = None) -> Window:
        """The last ``seconds`` (at most :data:`MAX_WINDOW_S`), as one uniform sample."""
        now = time.time() if now is None else now
        seconds = min(float(seconds), MAX_WINDOW_S)
        with self._lock:
            buckets = [b for b in self._buckets if b.start + BUCKET_S > now - seconds]
            width = ROWS_PER_LIST * self._f + 2 * SCORES_PER_LIST + 1
            lists = _merge([(b.lists.rows, b.lists.kept(), b.lists.seen) for b in buckets], width, self._rng)
            picked = _merge_index([(b.events.kept(), b.events.seen) for b in buckets], self._rng)
            ev = np.concatenate(
                [b.events.rows[idx] for b, idx in zip(buckets, picked, strict=True)] or [np.zeros((0, 3))]
            )
            names = np.asarray([*self._names, "(other)"], dtype=object)
            failures = sum(b.failures for b in buckets)
            events_seen = sum(b.events.seen for b in buckets) + failures
            lists_seen = sum(b.lists.seen for b in buckets)
        f = self._f
        base = ROWS_PER_LIST * f
        return Window(
            self.feature_names,
            lists[:, :base].reshape(-1, f),
            lists[:, base : base + SCORES_PER_LIST],
            lists[:, -1],
            np.nan_to_num(lists[:, base + SCORES_PER_LIST : base + 2 * SCORES_PER_LIST]).astype(np.uint8),
            ev[:, 0],
            names[ev[:, 1].astype(np.int64)].tolist(),
            names[ev[:, 2].astype(np.int64)].tolist(),
            failures,
            events_seen,
            lists_seen,
            seconds,
        )


def _merge_index(parts: list[tuple[int, int]], rng: np.random.Generator) -> list[npt.NDArray[np.int64]]:
    """Which kept rows of each bucket to take so the union samples every bucket at one rate:
    the rate of the most sampled-down bucket (each bucket kept ``kept`` of ``seen``)."""
    rates = [kept / seen for kept, seen in parts if seen]
    rate = min(rates) if rates else 1.0
    out = []
    for kept, seen in parts:
        take = min(kept, round(seen * rate))
        out.append(np.sort(rng.choice(kept, take, replace=False)) if take < kept else np.arange(kept))
    return out


def _merge(parts: list[tuple[F32, int, int]], width: int, rng: np.random.Generator) -> F32:
    idx = _merge_index([(k, s) for _, k, s in parts], rng)
    rows = [r[i] for (r, _, _), i in zip(parts, idx, strict=True)]
    return np.concatenate(rows) if rows else np.zeros((0, width), np.float32)
