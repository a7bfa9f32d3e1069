"""The bundle's reference for monitoring (``monitoring.npz``), recorded at ``train`` time.

For every monitored quantity — each ranking feature of the served lists' top products, the
events' price, the lists' scores and top-1 margin (numeric); the events' top-level category and
type and the served products' candidate sources (categorical) — fixed bins from the reference
data's quantiles with the share in each (for PSI), and a bounded sorted sample (for KS and
Wasserstein); the share of events that failed validation; and the thresholds the calibration
(``drift.calibrate``) chose on stationary windows of the same period.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recommndr.arrays import load_arrays, save_arrays
from recommndr.monitoring.window import Window

F64 = npt.NDArray[np.float64]
FILE = "monitoring.npz"
SAMPLE = 5000  # reference values kept per numeric quantity (KS, Wasserstein)
BINS = 10
OTHER = "(other)"  # a category the reference never saw
SOURCE_NAMES = ("als", "copurchase", "popularity", "explore")  # the SOURCE_* bits, lowest first
EVENT_NUMERIC = ("price",)
EVENT_CATEGORICAL = ("category", "event_type")
LIST_CATEGORICAL = ("source",)
SCORE, MARGIN = "score", "margin"


@dataclass
class Numeric:
    edges: F64
    shares: F64
    sample: F64  # sorted
    n: int  # values the shares were counted on


@dataclass
class Categorical:
    categories: tuple[str, ...]  # the last is OTHER
    shares: F64
    n: int


@dataclass
class Reference:
    """See the module docstring. ``thresholds``: per quantity the PSI above which (with a
    significant test) it is flagged, and ``calibrated_n`` the window size it was calibrated at
    (``drift.threshold`` scales it for other sizes)."""

    feature_names: tuple[str, ...]
    numeric: dict[str, Numeric]
    categorical: dict[str, Categorical]
    validation_failure_rate: float
    thresholds: dict[str, float] = field(default_factory=dict)
    calibrated_n: dict[str, int] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {}
        for name, r in self.numeric.items():
            arrays |= {f"num.{name}.edges": r.edges, f"num.{name}.shares": r.shares,
                       f"num.{name}.sample": r.sample.astype(np.float64)}  # fmt: skip
        for name, c in self.categorical.items():
            arrays[f"cat.{name}.shares"] = c.shares
        meta = {
            "feature_names": list(self.feature_names),
            "numeric_n": {k: v.n for k, v in self.numeric.items()},
            "categorical": {
                k: {"categories": list(v.categories), "n": v.n} for k, v in self.categorical.items()
            },
            "validation_failure_rate": self.validation_failure_rate,
            "thresholds": self.thresholds,
            "calibrated_n": self.calibrated_n,
            "calibration": self.calibration,
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        save_arrays(path, arrays)

    @classmethod
    def load(cls, path: Path) -> Reference:
        a = load_arrays(path)
        meta = json.loads(bytes(a["meta"]).decode())
        numeric = {
            name: Numeric(np.asarray(a[f"num.{name}.edges"], np.float64), np.asarray(a[f"num.{name}.shares"], np.float64),
                          np.asarray(a[f"num.{name}.sample"], np.float64), int(n))
            for name, n in meta["numeric_n"].items()
        }  # fmt: skip
        categorical = {
            name: Categorical(
                tuple(c["categories"]), np.asarray(a[f"cat.{name}.shares"], np.float64), int(c["n"])
            )
            for name, c in meta["categorical"].items()
        }
        return cls(tuple(meta["feature_names"]), numeric, categorical, float(meta["validation_failure_rate"]),
                   {k: float(v) for k, v in meta["thresholds"].items()},
                   {k: int(v) for k, v in meta["calibrated_n"].items()}, meta["calibration"])  # fmt: skip


def source_labels(sources: npt.NDArray[np.uint8]) -> list[str]:
    """Each served product's candidate sources as one label ("als+copurchase"); 0 (no product in
    that slot) is left out."""
    s = np.asarray(sources).reshape(-1)
    s = s[s > 0]
    names: dict[int, str] = {}
    for v in np.unique(s).tolist():
        names[v] = "+".join(n for b, n in enumerate(SOURCE_NAMES) if v & (1 << b)) or "none"
    return [names[v] for v in s.tolist()]


def numeric_values(w: Window) -> dict[str, F64]:
    """Every numeric quantity of a window, finite values only."""
    out: dict[str, F64] = {}
    for j, name in enumerate(w.feature_names):
        out[name] = np.asarray(w.features[:, j], np.float64) if w.features.shape[0] else np.zeros(0)
    out["price"] = np.asarray(w.price, np.float64)
    out[SCORE] = np.asarray(w.scores, np.float64).reshape(-1)
    out[MARGIN] = np.asarray(w.margin, np.float64)
    return {k: v[np.isfinite(v)] for k, v in out.items()}


def categorical_values(w: Window) -> dict[str, list[str]]:
    return {"category": w.category, "event_type": w.event_type, "source": source_labels(w.sources)}


def counts_of(ref: Categorical, values: list[str]) -> F64:
    """The live counts in the reference's categories (unseen ones counted as OTHER)."""
    index = {c: i for i, c in enumerate(ref.categories)}
    other = index[OTHER]
    out = np.zeros(len(ref.categories))
    for value, n in Counter(values).items():
        out[index.get(value, other)] += n
    return out


def reference_from(w: Window, seed: int = 0) -> Reference:
    """Bins, shares and samples of every quantity of ``w`` (thresholds are set by calibration)."""
    from recommndr.monitoring import stats

    rng = np.random.default_rng(seed)
    numeric: dict[str, Numeric] = {}
    for name, v in numeric_values(w).items():
        if v.size == 0:
            continue
        edges = stats.quantile_edges(v, BINS)
        counts = stats.bin_counts(v, edges)
        sample = v if v.size <= SAMPLE else rng.choice(v, SAMPLE, replace=False)
        numeric[name] = Numeric(edges, counts / counts.sum(), np.sort(sample), int(v.size))
    categorical: dict[str, Categorical] = {}
    for name, labels in categorical_values(w).items():
        if not labels:
            continue
        c = Counter(labels)
        cats = (*sorted(c), OTHER)
        counts = np.array([c.get(k, 0) for k in cats], np.float64)
        categorical[name] = Categorical(cats, counts / counts.sum(), len(labels))
    rate = w.failures / w.events_seen if w.events_seen else 0.0
    return Reference(w.feature_names, numeric, categorical, rate)
