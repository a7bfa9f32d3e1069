"""Faults injected into the challenger on purpose, to prove that the canary rolls a bad one back
(``benchmarks/bench_rollback.py``, ``recommndr retrain --local --canary-fault``).

Only with ``fault_injection`` on, only ever into the challenger, and only into the challenger
version that was loaded when the fault was set (``Fault.version``): a fault left in the control
file never reaches the next canary's model, nor the champion after a promotion. Every worker
applies the fault of the shared control file (``control.py``).

- ``errors``: ``fault_error_rate`` of the challenger's ``/recommendations`` answer a 500
  ``injected_fault`` — every ``1/rate``-th request of each worker, exactly, so a test or a bench
  sees the stated rate and not a binomial draw around it.
- ``slow``: each of them takes ``fault_delay_s`` longer, slept in the worker thread that computes
  the list (a slow model holds its thread, as a real one does).
- ``random``: the ranker's scores are replaced by uniform random numbers: a random ranker. The
  drift window records those scores, so ``recommndr monitor drift`` flags score drift.
- ``drift``: the continuous ranking features are scaled by :data:`DRIFT_SCALE` before the ranker
  sees them (the 0/1 flags are left alone); the window records the scaled rows, so the drift
  check flags feature drift, and the scores follow from the ranker.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np

from recommndr.errors import RecommndrError
from recommndr.ranking.features import F32, FEATURES

FaultKind = Literal["none", "errors", "slow", "random", "drift"]
KINDS: tuple[FaultKind, ...] = ("none", "errors", "slow", "random", "drift")
DRIFT_SCALE = 1.6  # on the log counts, affinities and scores: well past the drift check's thresholds
_FLAGS = frozenset({"from_als", "from_copurchase", "from_popularity", "item_repeatable"})
DRIFT_COLUMNS = np.array([i for i, name in enumerate(FEATURES) if name not in _FLAGS], dtype=np.int64)


class InjectedFaultError(RecommndrError):
    """The ``errors`` fault: a 500 by design (fault injection on)."""

    code = "injected_fault"
    http_status = 500


class Fault:
    """One injected fault of one challenger version; ``since`` is when it was set (Unix seconds).
    Thread-safe: the recommendation threads share it."""

    def __init__(
        self,
        kind: FaultKind,
        since: float,
        version: str | None,
        error_rate: float = 0.1,
        delay_s: float = 0.3,
        seed: int | None = None,
    ) -> None:
        if kind not in KINDS or kind == "none":
            raise ValueError(f"not a fault: {kind!r}")
        self.kind = kind
        self.since = since
        self.version = version
        self.error_rate = error_rate
        self.delay_s = delay_s
        self.perturbs = kind in ("random", "drift")  # acts inside the ranking (TwoStageRecommender.perturb)
        self._requests = itertools.count()  # next() is atomic in CPython: no lock
        self._rng = np.random.default_rng(seed)  # a Generator serialises its draws itself

    @property
    def key(self) -> tuple[str, float, str | None]:
        """What identifies the fault in the control file (the same key: the same fault, kept)."""
        return (self.kind, self.since, self.version)

    def enter(self) -> float:
        """Before the challenger computes a list: InjectedFaultError for the requests the
        ``errors`` fault fails (the n-th request fails when ``floor(n * rate)`` steps up), else the
        seconds to wait first (``slow``; 0 otherwise)."""
        if self.kind == "errors":
            n = next(self._requests)
            if math.floor((n + 1) * self.error_rate + 1e-9) > math.floor(n * self.error_rate + 1e-9):
                raise InjectedFaultError("injected fault: the challenger failed this request on purpose")
            return 0.0
        return self.delay_s if self.kind == "slow" else 0.0

    def features(self, X: F32) -> F32:
        """The feature rows the ranker sees (``drift``: the continuous columns scaled)."""
        if self.kind != "drift" or X.size == 0:
            return X
        out = X.copy()
        out[:, DRIFT_COLUMNS] *= np.float32(DRIFT_SCALE)
        return out

    def scores(self, scores: F32) -> F32:
        """The scores the list is ranked by (``random``: uniform on [0, 1))."""
        if self.kind != "random":
            return scores
        out: F32 = self._rng.random((scores.shape[0],), dtype=np.float32)
        return out
