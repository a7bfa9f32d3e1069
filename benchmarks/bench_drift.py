"""The drift check's calibration, measured: false alarms on windows that did not drift, detection
of planted shifts, and the time of one check.

    python benchmarks/bench_drift.py [--data data/demo] [--artifacts artifacts/demo] [--windows 300]

The reference period's lists and events are split as ``train`` splits them (reference half,
calibration half); the calibration half is split again at random: one part calibrates the
thresholds (as ``train`` does on the whole half), the other — never seen by the calibration —
gives the test windows: consecutive time slices of its events (replays) and bootstrap resamples,
each with a bootstrap resample of its lists. False-alarm rate = share of those windows where the
check flags anything. Planted shifts on the same windows: every price +10 %; one category's share
doubled (the median-sized top-level category, by reweighting the window's events); a ranker
that returns random scores (the lists re-ranked by it). Last line: ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recommndr.data.interactions import load_catalogue
from recommndr.lifecycle.canary import of_the_model
from recommndr.loading import load_bundle
from recommndr.monitoring import drift, profile
from recommndr.monitoring.reference import reference_from
from recommndr.monitoring.sequential import spent_alpha
from recommndr.monitoring.window import Window


class RandomRanker:
    """A broken ranker: uniform random scores, whatever the features."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def score(self, X: np.ndarray) -> np.ndarray:
        return self.rng.random(X.shape[0]).astype(np.float32)


def split_lists(w: Window, rng: np.random.Generator) -> tuple[Window, Window]:
    a, b = np.array_split(rng.permutation(w.scores.shape[0]), 2)
    return profile.take_lists(w, np.sort(a)), profile.take_lists(w, np.sort(b))


def split_events(w: Window, rng: np.random.Generator) -> tuple[Window, Window]:
    half = rng.random(len(w.event_type)) < 0.5
    return profile.take_events(w, np.flatnonzero(half)), profile.take_events(w, np.flatnonzero(~half))


def double_category(w: Window, rng: np.random.Generator, category: str) -> Window:
    """``w``'s events resampled so that ``category``'s share doubles (same size)."""
    cats = np.asarray(w.category, object)
    hit = cats == category
    s = hit.mean()
    weight = np.where(hit, 2 * (1 - s) / (1 - 2 * s), 1.0)
    idx = rng.choice(len(cats), len(cats), replace=True, p=weight / weight.sum())
    return profile.take_events(w, idx)


def with_events(w: Window, ev: Window) -> Window:
    return profile.combine(w, ev)


def prefix(w: Window, share: float) -> Window:
    """The first ``share`` of ``w``'s lists and of its events: the window as a look partway through
    would have seen it."""
    n_l = max(1, math.ceil(share * w.scores.shape[0]))
    n_e = max(1, math.ceil(share * len(w.event_type)))
    return with_events(profile.take_lists(w, np.arange(n_l)), profile.take_events(w, np.arange(n_e)))


def canary_flags(report: dict[str, Any]) -> bool:
    """What the canary's drift guard acts on in a report: its kinds, the feature kind counting the
    quantities that can move by the model's doing only (``canary.of_the_model``)."""
    kinds = dict(report["kinds"])
    kinds["feature"] = any(f["drift"] and of_the_model(n) for n, f in report["features"].items())
    return any(kinds.values())


def repeated_looks(
    ref: Any, series: list[Window], looks: int, alpha: float, min_lists: int = 30
) -> tuple[float, float, float | None]:
    """The canary's drift guard over ``looks`` looks at each window of ``series``, seen growing
    (look j: its first j/looks), checked once it holds ``min_lists`` lists (the canary's rule),
    the k-th check at ``spent_alpha(alpha, k) / 4`` for each of the four kinds: (share of series
    flagged at some look with every check at the fixed level ``alpha``, the same at the spent
    levels, the median number of the first check flagged at the spent levels, None when none
    was). One arm only (no champion's window to cancel a shift of both)."""
    fixed = spent = 0
    first: list[int] = []
    for w in series:
        hit_fixed = hit_spent = False
        k = 0
        for j in range(1, looks + 1):
            part = prefix(w, j / looks)
            if part.scores.shape[0] < min_lists:
                continue
            k += 1
            if not canary_flags(drift.check(ref, part, alpha)):
                continue
            hit_fixed = True
            if canary_flags(drift.check(ref, part, spent_alpha(alpha, k) / len(drift.KINDS))):  # a subset
                hit_spent = True
                first.append(k)
                break
        fixed += hit_fixed
        spent += hit_spent
    return fixed / len(series), spent / len(series), statistics.median(first) if first else None


def shift_feature(w: Window, name: str, by: float = 0.0, times: float = 1.0) -> Window:
    """``w`` with the ranking feature ``name`` (every one, for ``"*"``) of its lists' rows moved:
    ``x * times + by``."""
    f = w.features.copy()
    cols = range(f.shape[1]) if name == "*" else [w.feature_names.index(name)]
    for c in cols:
        f[:, c] = f[:, c] * times + by
    return Window(w.feature_names, f, w.scores, w.margin, w.sources, w.price, w.category, w.event_type,
                  w.failures, w.events_seen, w.lists_seen)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/demo"))
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts/demo"))
    ap.add_argument("--windows", type=int, default=300)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--looks", type=int, default=40, help="looks of the repeated-look study (a canary's)")
    a = ap.parse_args()

    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import recommndr.monitoring.drift"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    cumulative = {line.split("|")[2].strip(): int(line.split("|")[1]) / 1e6
                  for line in out.stderr.splitlines()[1:] if "|" in line}  # fmt: skip
    import_s = cumulative["recommndr.monitoring.drift"]
    numpy_s = cumulative.get("numpy", 0.0)
    bundle = load_bundle(a.artifacts)
    cat = load_catalogue(a.data)
    events = profile.events_with_price(a.data)
    rng = np.random.default_rng(a.seed)
    end_us = int(events["ts_us"].max())
    ref_window, cal_lists, cal_events = profile.reference_parts(bundle, cat, events, end_us, a.days, rng)
    ref = reference_from(ref_window, a.seed)
    fit_lists, test_lists = split_lists(cal_lists, rng)
    fit_events, test_events = split_events(cal_events, rng)
    drift.calibrate(ref, profile.null_windows(fit_lists, fit_events, rng))
    print(f"reference: {ref_window.lists_seen:,} lists, {ref_window.events_seen:,} events; calibrated on "
          f"{ref.calibration['windows']} windows (PSI multiplier {ref.calibration['multiplier']:.2f}); "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip

    tests = profile.null_windows(test_lists, test_events, rng, a.windows)
    n_lists = tests[0].scores.shape[0]
    n_events = len(tests[0].event_type)
    print(
        f"test windows: {len(tests)} ({n_lists:,} lists, {n_events:,} events each; replays of time slices, the rest bootstrap resamples)"
    )
    flagged = [drift.check(ref, w) for w in tests]
    fa = float(np.mean([r["drift"] for r in flagged]))
    fa_kind = {k: float(np.mean([r["kinds"][k] for r in flagged])) for k in drift.KINDS}
    print(
        f"false alarms: {fa:.2%} of checks  (" + ", ".join(f"{k} {v:.2%}" for k, v in fa_kind.items()) + ")"
    )

    # planted shifts
    shares = {
        c: float(np.mean(np.asarray(ref_window.category, object) == c)) for c in set(ref_window.category)
    }
    mid = sorted(shares, key=shares.get)[len(shares) // 2]  # type: ignore[arg-type]
    users = events.filter(events["ts_us"] >= end_us - a.days * 86_400_000_000)["user_id"].unique().to_numpy()
    users = np.sort(rng.choice(users, min(users.shape[0], 2 * n_lists), replace=False))
    broken = profile.served_lists(bundle, users.astype(np.int64), RandomRanker(a.seed))
    shifts = {
        "price +10%": lambda w: Window(w.feature_names, w.features, w.scores, w.margin, w.sources, w.price * 1.1,
                                       w.category, w.event_type, w.failures, w.events_seen, w.lists_seen),
        f"category '{mid}' share x2 ({shares[mid]:.1%})": lambda w: with_events(w, double_category(w, rng, mid)),
        "random ranker scores": lambda w: with_events(
            profile.take_lists(broken, rng.integers(0, broken.scores.shape[0], n_lists)), w),
    }  # fmt: skip
    detect = {}
    for name, plant in shifts.items():
        reports = [drift.check(ref, plant(w)) for w in tests[: max(a.windows // 3, 20)]]
        detect[name] = float(np.mean([r["drift"] for r in reports]))
        kinds = {k: float(np.mean([r["kinds"][k] for r in reports])) for k in drift.KINDS}
        print(
            f"detected {name}: {detect[name]:.0%} of checks  ("
            + ", ".join(f"{k} {v:.0%}" for k, v in kinds.items())
            + ")"
        )

    # the canary's drift guard: the same check at every look of a window that grows
    n_series = max(a.windows // 3, 20)
    fa_fixed, fa_spent, _ = repeated_looks(ref, tests[:n_series], a.looks, drift.ALPHA)
    print(f"the canary's guard, {n_series} windows seen growing over {a.looks} looks: flagged at some look "
          f"{fa_fixed:.1%} with every look at {drift.ALPHA}, {fa_spent:.1%} at the spent levels "
          f"(check k at {drift.ALPHA} x 6/(pi^2 k^2) / 4 a kind)")  # fmt: skip
    canary_shifts = {
        "products 10% pricier (item_log_price + ln 1.1)": lambda w: shift_feature(w, "item_log_price", by=math.log(1.1)),
        "products 50% pricier (item_log_price + ln 1.5)": lambda w: shift_feature(w, "item_log_price", by=math.log(1.5)),
        "every ranking feature x1.6 (the drift fault)": lambda w: shift_feature(w, "*", times=1.6),
        "random ranker scores": shifts["random ranker scores"],
    }  # fmt: skip
    looks_detect = {}
    for name, plant in canary_shifts.items():
        planted = [plant(w) for w in tests[: max(n_series // 3, 10)]]
        _, power, first_look = repeated_looks(ref, planted, a.looks, drift.ALPHA)
        looks_detect[name] = power
        print(f"  {name}: caught at the spent levels in {power:.0%} of {len(planted)} windows, median first "
              f"check {first_look if first_look is not None else '-'}")  # fmt: skip

    # one check over a 10,000-event window
    w = tests[0]
    times = []
    for _ in range(30):
        t = time.perf_counter()
        drift.check(ref, w)
        times.append(time.perf_counter() - t)
    check_ms = statistics.median(times) * 1e3
    print(f"one check ({n_events:,} events, {n_lists:,} lists, {len(ref.numeric) + len(ref.categorical)} quantities): "
          f"median {check_ms:.1f} ms; `import recommndr.monitoring.drift` {import_s:.2f} s, of which numpy {numpy_s:.2f} s")  # fmt: skip
    det = " ".join(f"detect_{i}={v:.3f}" for i, v in enumerate(detect.values()))
    det += f" looks_false_alarm_fixed={fa_fixed:.3f} looks_false_alarm_spent={fa_spent:.3f} "
    det += " ".join(f"looks_detect_{i}={v:.3f}" for i, v in enumerate(looks_detect.values()))
    print(
        f"false_alarm_rate={fa:.4f} {det} check_ms={check_ms:.1f} import_s={import_s:.2f} import_without_numpy_s={import_s - numpy_s:.2f} windows={len(tests)}"
    )


if __name__ == "__main__":
    main()
