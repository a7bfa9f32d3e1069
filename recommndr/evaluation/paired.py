"""Paired comparison of two arms measured on the same units (shoppers): ratio metrics (a sum
over units divided by another, as ``clicks / lists``), their difference, a percentile interval
from the paired bootstrap (units resampled together with both arms' values) and a paired
z-test on the delta-method linearisation.

Why both: the bootstrap interval makes no normal assumption about the ratio's distribution; the
z-test gives a p-value without 2,000 resamples. For a ratio ``R = sum(y) / sum(x)`` the unit's
linearised value is ``(y - R x) / mean(x)``: the mean of its paired differences is the first-order
error of ``R_a - R_b``, so the test is the paired t-test on those values (exactly the paired
t-test of ``y`` when ``x`` is 1 for every unit). Its false-alarm rate and power are measured by
``benchmarks/bench_abtest.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
BOOTSTRAP_CHUNK = 64  # resamples per block (a block holds chunk x units counts)


@dataclass(frozen=True)
class Ratio:
    """A metric: ``numerator`` summed over units divided by ``denominator`` summed over units
    (both names of per-unit statistics)."""

    numerator: str
    denominator: str


@dataclass(frozen=True)
class Difference:
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float

    def as_dict(self) -> dict[str, float]:
        return {
            "estimate": self.estimate,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
        }


def ratio(stats: dict[str, F64], m: Ratio) -> float:
    """The metric over all units; 0 when the denominator is 0 (no clicks: no cart rate), as the
    API's rates are."""
    den = float(stats[m.denominator].sum())
    return float(stats[m.numerator].sum()) / den if den else 0.0


def _linearised(stats: dict[str, F64], m: Ratio) -> F64:
    y, x = stats[m.numerator], stats[m.denominator]
    mean_x = float(x.mean())
    if mean_x == 0.0:
        return np.zeros_like(y)
    r = float(y.sum()) / float(x.sum())
    return np.asarray((y - r * x) / mean_x)


def z_test(a: dict[str, F64], b: dict[str, F64], m: Ratio) -> float:
    """Two-sided p-value of the paired z-test of ``ratio(a) == ratio(b)``."""
    d = _linearised(a, m) - _linearised(b, m)
    n = d.shape[0]
    diff = ratio(a, m) - ratio(b, m)
    se = float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    if se == 0.0:
        return 1.0 if diff == 0.0 else 0.0
    return math.erfc(abs(diff) / se / math.sqrt(2.0))


def bootstrap_counts(n: int, resamples: int, rng: np.random.Generator) -> F64:
    """How often each unit is drawn in each resample: (resamples, n), each row summing to n."""
    out = np.empty((resamples, n), dtype=np.float64)
    for s in range(0, resamples, BOOTSTRAP_CHUNK):
        r = min(BOOTSTRAP_CHUNK, resamples - s)
        idx = rng.integers(0, n, (r, n)) + (np.arange(r) * n)[:, None]
        out[s : s + r] = np.bincount(idx.ravel(), minlength=r * n).reshape(r, n)
    return out


def compare(
    a: dict[str, F64],
    b: dict[str, F64],
    metrics: dict[str, Ratio],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Difference]:
    """Per metric: ``ratio(a) - ratio(b)``, its paired-bootstrap percentile interval (every
    metric from the same resamples) and the paired z-test's p-value. ``a`` and ``b`` hold the
    same units in the same order."""
    n = next(iter(a.values())).shape[0]
    if n < 2:
        raise ValueError("a paired comparison needs at least 2 units")
    names = sorted({s for m in metrics.values() for s in (m.numerator, m.denominator)})
    stack = np.column_stack([a[s] for s in names] + [b[s] for s in names])  # (n, 2 x stats)
    sums = np.empty((resamples, stack.shape[1]))
    rng = np.random.default_rng(seed)
    for s in range(0, resamples, BOOTSTRAP_CHUNK):
        counts = bootstrap_counts(n, min(BOOTSTRAP_CHUNK, resamples - s), rng)
        sums[s : s + counts.shape[0]] = counts @ stack
    col = {f"a.{s}": i for i, s in enumerate(names)} | {f"b.{s}": len(names) + i for i, s in enumerate(names)}
    alpha = (1.0 - level) / 2.0
    out = {}
    for key, m in metrics.items():
        reps = []
        for arm in ("a", "b"):
            num, den = sums[:, col[f"{arm}.{m.numerator}"]], sums[:, col[f"{arm}.{m.denominator}"]]
            reps.append(np.divide(num, den, out=np.zeros_like(num), where=den != 0))
        diff = reps[0] - reps[1]
        lo, hi = np.quantile(diff, [alpha, 1.0 - alpha])
        out[key] = Difference(ratio(a, m) - ratio(b, m), float(lo), float(hi), z_test(a, b, m))
    return out
