"""The drift statistics, on numpy alone (no drift library: see FACTS.md for why; not even scipy,
whose ``scipy.special`` takes ~0.3–1 s to import: the three tail probabilities the check needs
are written here and tested against scipy's).

Every function takes a reference (bins and shares fixed at training time, or a stored sample) and
the live values, and is vectorised: one call per feature, no Python loop over rows.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
PSI_FLOOR = 1e-4  # a bin's share is never taken below this (an empty bin would make PSI infinite)


def quantile_edges(x: npt.ArrayLike, bins: int = 10) -> F64:
    """The interior edges of ``bins`` equal-frequency bins of ``x`` (ties collapse: a feature
    with few distinct values gets fewer bins, never an empty one by construction)."""
    a = np.asarray(x, np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return np.zeros(0)
    edges = np.unique(np.quantile(a, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf"))
    return np.asarray(
        edges[edges > a.min()], np.float64
    )  # an edge at the minimum would leave the first bin empty


def bin_counts(x: npt.ArrayLike, edges: F64) -> F64:
    """Counts of ``x`` in the bins the interior ``edges`` cut (``len(edges) + 1`` bins; a value
    equal to an edge goes right, as ``np.quantile`` split it); non-finite values are dropped."""
    a = np.asarray(x, np.float64)
    a = a[np.isfinite(a)]
    return np.bincount(np.searchsorted(edges, a, side="right"), minlength=edges.shape[0] + 1).astype(
        np.float64
    )


def _shares(counts: F64, floor: float = PSI_FLOOR) -> F64:
    total = counts.sum()
    p = counts / total if total > 0 else np.full(counts.shape, 1.0 / max(counts.shape[0], 1))
    p = np.maximum(p, floor)
    return np.asarray(p / p.sum(), np.float64)


def psi(ref_shares: npt.ArrayLike, counts: npt.ArrayLike, floor: float = PSI_FLOOR) -> float:
    """Population stability index of the live ``counts`` against the reference shares, each bin's
    share floored at ``floor`` (then renormalised)."""
    p = _shares(np.asarray(ref_shares, np.float64), floor)
    q = _shares(np.asarray(counts, np.float64), floor)
    return float(np.sum((q - p) * np.log(q / p)))


def _finite_sorted(x: npt.ArrayLike) -> F64:
    a = np.asarray(x, np.float64)
    return np.sort(a[np.isfinite(a)])


def ks(ref_sample: npt.ArrayLike, live: npt.ArrayLike, ref_sorted: bool = False) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov statistic and its asymptotic p-value (Stephens' small-sample
    correction; conservative with ties, which many features have). ``ref_sorted``: the reference
    is already sorted and finite (the stored samples are), which saves its sort."""
    d, p, _ = ks_wasserstein(ref_sample, live, ref_sorted, wasserstein=False)
    return d, p


def wasserstein_normed(ref_sample: npt.ArrayLike, live: npt.ArrayLike, ref_sorted: bool = False) -> float:
    """The 1-Wasserstein distance (the area between the two empirical CDFs) divided by the
    reference's standard deviation, so it reads in reference standard deviations whatever the
    feature's unit (0 for a constant reference)."""
    return ks_wasserstein(ref_sample, live, ref_sorted)[2]


def ks_wasserstein(
    ref_sample: npt.ArrayLike, live: npt.ArrayLike, ref_sorted: bool = False, wasserstein: bool = True
) -> tuple[float, float, float]:
    """:func:`ks` and :func:`wasserstein_normed` from one pass over the two empirical CDFs (both
    are read at every point of the merged samples)."""
    a = np.asarray(ref_sample, np.float64) if ref_sorted else _finite_sorted(ref_sample)
    b = _finite_sorted(live)
    if a.size == 0 or b.size == 0:
        return 0.0, 1.0, 0.0
    # the merged samples in order, each step +1/m (a reference value) or -1/n (a live one): the
    # running sum is F_ref - F_live; it is read at the end of each run of equal values
    z = np.concatenate([a, b])
    order = np.argsort(z, kind="stable")
    x = z[order]
    steps = np.where(order < a.size, b.size, -a.size)  # in units of 1 / (m n): exact
    gap = np.abs(np.cumsum(steps)) / (a.size * b.size)
    ends = np.append(x[1:] != x[:-1], True)
    d = float(gap[ends].max())
    en = math.sqrt(a.size * b.size / (a.size + b.size))
    p = kolmogorov_sf((en + 0.12 + 0.11 / en) * d)
    w = 0.0
    if wasserstein:
        sd = float(a.std())
        w = float(np.dot(gap[:-1], np.diff(x))) / sd if sd > 0 else 0.0
    return d, p, w


def chi_square(ref_shares: npt.ArrayLike, counts: npt.ArrayLike, floor: float = PSI_FLOOR) -> float:
    """p-value of Pearson's goodness-of-fit test of the live ``counts`` against the reference
    shares (floored as in :func:`psi`)."""
    c = np.asarray(counts, np.float64)
    n = c.sum()
    if n <= 0 or c.shape[0] < 2:
        return 1.0
    expected = _shares(np.asarray(ref_shares, np.float64), floor) * n
    # the test needs expected counts of about 5 or more: rarer categories (an unseen one included)
    # are pooled into one cell, and that cell into the smallest other one while it is too small
    rare = expected < 5
    if rare.any():
        keep_e, keep_c = list(expected[~rare]), list(c[~rare])
        pool_e, pool_c = float(expected[rare].sum()), float(c[rare].sum())
        while pool_e < 5 and keep_e:
            j = int(np.argmin(keep_e))
            pool_e, pool_c = pool_e + keep_e.pop(j), pool_c + keep_c.pop(j)
        expected, c = np.array([*keep_e, pool_e]), np.array([*keep_c, pool_c])
    if c.shape[0] < 2:
        return 1.0
    stat = float(np.sum((c - expected) ** 2 / expected))
    return chi2_sf(stat, c.shape[0] - 1)


def jensen_shannon(ref_shares: npt.ArrayLike, counts: npt.ArrayLike) -> float:
    """Jensen–Shannon distance (base 2: 0 identical, 1 disjoint) between the two distributions."""
    p = np.asarray(ref_shares, np.float64)
    q = np.asarray(counts, np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: F64) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def holm(pvalues: npt.ArrayLike) -> F64:
    """Holm–Bonferroni adjusted p-values (family-wise error control, any dependence)."""
    p = np.asarray(pvalues, np.float64)
    m = p.shape[0]
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adj
    return out


def benjamini_hochberg(pvalues: npt.ArrayLike) -> F64:
    """Benjamini–Hochberg adjusted p-values (false-discovery-rate control)."""
    p = np.asarray(pvalues, np.float64)
    m = p.shape[0]
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    out = np.empty(m)
    out[order] = adj
    return out


def binomial_excess(failures: int, total: int, rate0: float) -> float:
    """One-sided p-value that a window with ``failures`` of ``total`` has a failure rate above
    ``rate0`` (exact binomial tail; 1 for an empty window)."""
    if total <= 0:
        return 1.0
    if failures <= 0:
        return 1.0
    # P(X >= failures) = P(X > failures - 1): the binomial survival function
    return binomial_sf(failures, total, min(max(rate0, 0.0), 1.0))


def kolmogorov_sf(z: float) -> float:
    """P(K > z) for the Kolmogorov distribution: 2 sum_k (-1)^(k-1) exp(-2 k^2 z^2)."""
    if z < 0.2:  # the series converges slowly there, and the answer is 1 to 1e-15
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * z * z)
        total += term if k % 2 else -term
        if term < 1e-17:
            break
    return min(1.0, max(0.0, 2.0 * total))


def _gamma_q(a: float, x: float) -> float:
    """The regularised upper incomplete gamma function Q(a, x) (series below a + 1, Lentz's
    continued fraction above)."""
    if x <= 0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(1000):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return min(1.0, h * math.exp(log_front))


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for a chi-square variable with ``df`` degrees of freedom."""
    return _gamma_q(df / 2.0, x / 2.0)


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (tiny if abs(d) < tiny else d)
    h = d
    for m in range(1, 1000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # fmt: skip
            d = 1 + num * d
            d = 1 / (tiny if abs(d) < tiny else d)
            c = 1 + num / c
            c = tiny if abs(c) < tiny else c
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def _beta_i(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1 - x) / b


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p) (= I_p(k, n - k + 1))."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    return min(1.0, max(0.0, _beta_i(k, n - k + 1, p)))
