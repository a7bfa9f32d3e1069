"""The drift check: a window of traffic (``window.py``) against the bundle's reference
(``reference.py``), and the calibration that sets its thresholds.

A quantity is flagged when two things hold: its distribution differs significantly — two-sample
KS for numeric quantities, Pearson's chi-square for categorical ones, the p-values of the
features (ranking features and event fields) adjusted together with Holm at level ``alpha`` — and
it differs by enough to matter: its PSI on the reference bins is at least its calibrated threshold.
The significance test alone flags any large window of a shop whose traffic moves with the hour;
the PSI threshold alone ignores how much a small window wobbles. Thresholds come from
:func:`calibrate`: on windows of the reference period that did not drift (replays cut by time, and
bootstrap resamples), each quantity's PSI is divided by its own 90th percentile, the largest ratio
of each window is taken, and the multiplier is that maximum's ``1 - false_alarm`` quantile — so on
those windows at most that share of checks flags anything, all quantities together. A threshold
is scaled up for a window smaller than the calibration's (PSI's sampling noise grows as
``1/n + 1/m``) and never down.

Scores and the top-1 margin are tested the same way on their own ("score", "confidence": the
margin must also have fallen), and the validation-failure rate by a one-sided exact binomial test
against the reference rate plus :data:`VALIDATION_MARGIN`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from recommndr.monitoring import stats
from recommndr.monitoring.reference import (
    EVENT_CATEGORICAL,
    EVENT_NUMERIC,
    LIST_CATEGORICAL,
    MARGIN,
    SCORE,
    Reference,
    categorical_values,
    counts_of,
    numeric_values,
)
from recommndr.monitoring.window import Window

ALPHA = 0.01
MIN_N = 100  # fewer values than this and a quantity is not tested (reported as such)
VALIDATION_MARGIN = 0.005  # a failure rate counts as a spike above the reference's + 0.5 points
SCALE_QUANTILE = 0.9
FALSE_ALARM = 0.005  # the calibration windows' share; measured out of sample by bench_drift (goal <= 1 %)
WASSERSTEIN_MIN_N = 1000  # normalised Wasserstein is reported for windows at least this large
KINDS = ("feature", "score", "confidence", "validation")


def measure(ref: Reference, w: Window, wasserstein: bool = True) -> dict[str, dict[str, Any]]:
    """Per quantity of ``ref``: n, psi, the test's p-value (``ks_p``: KS or chi-square) and, for
    numeric quantities of large windows, the normalised Wasserstein distance."""
    out: dict[str, dict[str, Any]] = {}
    num = numeric_values(w)
    for name, r in ref.numeric.items():
        v = num.get(name, np.zeros(0))
        m: dict[str, Any] = {"n": int(v.size), "psi": None, "ks_p": None, "wasserstein": None}
        if v.size >= MIN_N:
            m["psi"] = stats.psi(r.shares, stats.bin_counts(v, r.edges))
            with_w = wasserstein and v.size >= WASSERSTEIN_MIN_N
            _, m["ks_p"], w_dist = stats.ks_wasserstein(r.sample, v, ref_sorted=True, wasserstein=with_w)
            m["wasserstein"] = w_dist if with_w else None
        out[name] = m
    cat = categorical_values(w)
    for name, c in ref.categorical.items():
        counts = counts_of(c, cat.get(name, []))
        n = int(counts.sum())
        m = {"n": n, "psi": None, "ks_p": None, "wasserstein": None, "js": None}
        if n >= MIN_N:
            m["psi"] = stats.psi(c.shares, counts)
            m["ks_p"] = stats.chi_square(c.shares, counts)
            m["js"] = stats.jensen_shannon(c.shares, counts)
        out[name] = m
    return out


def threshold(ref: Reference, name: str, n: int) -> float:
    """``name``'s PSI threshold for a window of ``n`` values (see the module docstring)."""
    base = ref.thresholds.get(name, math.inf)
    m = (ref.numeric[name].n if name in ref.numeric else ref.categorical[name].n) or 1
    n_cal = ref.calibrated_n.get(name, n) or 1
    return base * max(1.0, (1 / max(n, 1) + 1 / m) / (1 / n_cal + 1 / m))


def feature_names(ref: Reference) -> list[str]:
    """The quantities of the "feature" kind: the ranking features and the event fields."""
    names = [*ref.feature_names, *EVENT_NUMERIC, *EVENT_CATEGORICAL, *LIST_CATEGORICAL]
    return [n for n in names if n in ref.numeric or n in ref.categorical]


def check(ref: Reference, w: Window, alpha: float = ALPHA) -> dict[str, Any]:
    """The drift report of ``w`` (the shape ``recommndr monitor drift --json`` prints)."""
    m = measure(ref, w)
    names = feature_names(ref)
    tested = [n for n in names if m[n]["ks_p"] is not None]
    adjusted = dict(zip(tested, stats.holm([m[n]["ks_p"] for n in tested]).tolist(), strict=True))
    features: dict[str, Any] = {}
    for n in names:
        e = m[n]
        p = adjusted.get(n)
        flag = p is not None and p < alpha and e["psi"] >= threshold(ref, n, e["n"])
        features[n] = {"psi": e["psi"], "ks_p": e["ks_p"], "p_adjusted": p, "wasserstein": e["wasserstein"],
                       "threshold": threshold(ref, n, e["n"]) if e["psi"] is not None else None,
                       "n": e["n"], "drift": bool(flag)}  # fmt: skip
        if "js" in e:
            features[n]["js"] = e["js"]

    def single(name: str) -> dict[str, Any]:
        e = m.get(name, {"n": 0, "psi": None, "ks_p": None, "wasserstein": None})
        flag = e["ks_p"] is not None and e["ks_p"] < alpha and e["psi"] >= threshold(ref, name, e["n"])
        return {"psi": e["psi"], "ks_p": e["ks_p"], "wasserstein": e["wasserstein"], "n": e["n"],
                "threshold": threshold(ref, name, e["n"]) if e["psi"] is not None else None,
                "drift": bool(flag)}  # fmt: skip

    score = single(SCORE)
    confidence = single(MARGIN)
    margins = numeric_values(w)[MARGIN]
    ref_median = float(np.median(ref.numeric[MARGIN].sample)) if MARGIN in ref.numeric else math.nan
    median = float(np.median(margins)) if margins.size else math.nan
    drop = 1.0 - median / ref_median if ref_median > 0 and margins.size else 0.0
    confidence |= {"median_margin": median if margins.size else None, "reference_median_margin": ref_median,
                   "drop": min(max(drop, 0.0), 1.0)}  # fmt: skip
    confidence["drift"] = bool(confidence["drift"] and drop > 0)
    rate = w.failures / w.events_seen if w.events_seen else 0.0
    # like every quantity, tested only on MIN_N events or more (one malformed post to an idle
    # instance is not a spike)
    p_val = (stats.binomial_excess(w.failures, w.events_seen, ref.validation_failure_rate + VALIDATION_MARGIN)
             if w.events_seen >= MIN_N else None)  # fmt: skip
    validation = {"failures": w.failures, "events": w.events_seen, "rate": rate,
                  "reference_rate": ref.validation_failure_rate, "p_value": p_val,
                  "drift": p_val is not None and p_val < alpha}  # fmt: skip
    kinds = {
        "feature": any(f["drift"] for f in features.values()),
        "score": score["drift"],
        "confidence": confidence["drift"],
        "validation": bool(validation["drift"]),
    }
    return {
        "drift": any(kinds.values()),
        "kinds": kinds,
        "features": features,
        "score": score,
        "confidence": confidence,
        "validation_failure_rate": rate,
        "validation": validation,
        "lists": int(w.scores.shape[0]),
        "events": len(w.event_type),
        "alpha": alpha,
        "correction": "holm",
        "window_seconds": w.seconds,
    }


def calibrate(ref: Reference, null_windows: list[Window], false_alarm: float = FALSE_ALARM) -> Reference:
    """Set ``ref``'s PSI thresholds from windows that did not drift (see the module docstring);
    returns ``ref``."""
    if not null_windows:
        raise ValueError("calibration needs at least one window")
    ms = [measure(ref, w, wasserstein=False) for w in null_windows]
    names = [*ref.numeric, *ref.categorical]
    psi = np.full((len(ms), len(names)), np.nan)
    ns = np.zeros((len(ms), len(names)))
    for i, m in enumerate(ms):
        for j, n in enumerate(names):
            if m[n]["psi"] is not None:
                psi[i, j] = m[n]["psi"]
            ns[i, j] = m[n]["n"]
    have = ~np.isnan(psi).all(axis=0)
    scale = np.full(len(names), np.nan)
    scale[have] = np.maximum(np.nanquantile(psi[:, have], SCALE_QUANTILE, axis=0), 1e-4)
    ratio = np.nanmax(psi[:, have] / scale[have], axis=1) if have.any() else np.zeros(len(ms))
    ratio = ratio[np.isfinite(ratio)]
    mult = float(np.quantile(ratio, 1 - false_alarm, method="higher")) if ratio.size else 1.0
    ref.thresholds = {n: float(mult * scale[j]) for j, n in enumerate(names) if have[j]}
    ref.calibrated_n = {n: int(np.median(ns[:, j])) for j, n in enumerate(names) if have[j]}
    ref.calibration = {"windows": len(ms), "false_alarm": false_alarm, "multiplier": mult,
                       "scale_quantile": SCALE_QUANTILE, "alpha": ALPHA}  # fmt: skip
    return ref
