"""The drift statistics against hand-computed answers and scipy's reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as ss

from recommndr.monitoring import stats

pytestmark = pytest.mark.unit


def test_psi_by_hand_and_its_floor() -> None:
    # q = (0.6, 0.4) against p = (0.5, 0.5): 0.1 ln 1.2 + 0.1 ln 1.25
    assert stats.psi([0.5, 0.5], [60, 40]) == pytest.approx(0.1 * math.log(1.2) + 0.1 * math.log(1.25))
    assert stats.psi([0.25] * 4, [25, 25, 25, 25]) == pytest.approx(0.0)
    # an empty live bin is floored, not infinite
    assert math.isfinite(stats.psi([0.5, 0.5], [100, 0])) and stats.psi([0.5, 0.5], [100, 0]) > 1


def test_bins_from_quantiles_hold_equal_shares_and_collapse_ties() -> None:
    x = np.arange(1000, dtype=float)
    edges = stats.quantile_edges(x, 10)
    assert edges.shape == (9,)
    counts = stats.bin_counts(x, edges)
    assert counts.sum() == 1000 and counts.min() >= 99 and counts.max() <= 101
    assert stats.quantile_edges(np.repeat([0.0, 1.0], 500), 10).shape[0] <= 2  # two values: at most 3 bins
    assert stats.bin_counts([np.nan, np.inf, 1.0], np.array([0.5])).tolist() == [0.0, 1.0]


@pytest.mark.parametrize(("n", "m", "shift"), [(500, 800, 0.0), (2000, 5000, 0.05), (300, 5000, 0.3)])
def test_ks_matches_scipy(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n)
    a, b = rng.normal(size=m), rng.normal(shift, 1, size=n)
    d, p = stats.ks(a, b)
    ref = ss.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, abs=0.01)
    assert stats.ks(np.sort(a), b, ref_sorted=True) == (d, p)


def test_ks_extremes() -> None:
    assert stats.ks([1.0, 2.0, 3.0] * 100, [1.0, 2.0, 3.0] * 50) == (0.0, 1.0)
    d, p = stats.ks(np.zeros(200), np.ones(200))
    assert d == 1.0 and p < 1e-30
    assert stats.ks([], [1.0]) == (0.0, 1.0)


def test_wasserstein_reads_in_reference_standard_deviations() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(10, 4, 3000)
    assert stats.wasserstein_normed(a, a + 2.0) == pytest.approx(2.0 / a.std(), rel=1e-9)
    b = rng.normal(10, 4, 1000)
    assert stats.wasserstein_normed(a, b) == pytest.approx(ss.wasserstein_distance(a, b) / a.std(), rel=1e-9)
    assert stats.wasserstein_normed(np.ones(10), np.zeros(10)) == 0.0  # constant reference


def test_chi_square_and_jensen_shannon() -> None:
    assert stats.chi_square([0.5, 0.3, 0.2], [60, 20, 20]) == pytest.approx(
        ss.chisquare([60, 20, 20], [50, 30, 20]).pvalue
    )
    assert stats.jensen_shannon([0.5, 0.5], [10, 10]) == pytest.approx(0.0)
    assert stats.jensen_shannon([1.0, 0.0], [0, 10]) == pytest.approx(1.0)


def test_holm_and_benjamini_hochberg_by_hand() -> None:
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(stats.benjamini_hochberg([0.01, 0.04, 0.03]), [0.03, 0.04, 0.04])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])
    assert stats.holm([]).shape == (0,)


def test_binomial_excess_is_the_binomial_tail() -> None:
    assert stats.binomial_excess(30, 1000, 0.02) == pytest.approx(ss.binom.sf(29, 1000, 0.02))
    assert stats.binomial_excess(0, 1000, 0.02) == 1.0
    assert stats.binomial_excess(5, 0, 0.02) == 1.0


@pytest.mark.parametrize("z", [0.1, 0.3, 0.5, 0.8, 1.0, 1.36, 1.63, 2.5, 4.0])
def test_kolmogorov_tail_matches_scipy(z: float) -> None:
    assert stats.kolmogorov_sf(z) == pytest.approx(float(ss.kstwobign.sf(z)), abs=1e-12)


@pytest.mark.parametrize(
    ("x", "df"), [(0.5, 1), (3.84, 1), (10.0, 3), (2.0, 9), (30.0, 9), (200.0, 40), (0.0, 2)]
)
def test_chi_square_tail_matches_scipy(x: float, df: int) -> None:
    assert stats.chi2_sf(x, df) == pytest.approx(float(ss.chi2.sf(x, df)), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("k", "n", "p"), [(1, 10, 0.1), (30, 1000, 0.02), (5, 10_000, 0.0001), (60, 100, 0.5),
                                           (900, 1000, 0.85), (10, 10, 0.99), (11, 10, 0.5)])  # fmt: skip
def test_binomial_tail_matches_scipy(k: int, n: int, p: float) -> None:
    assert stats.binomial_sf(k, n, p) == pytest.approx(float(ss.binom.sf(k - 1, n, p)), rel=1e-8, abs=1e-300)


def test_the_check_does_not_import_scipy() -> None:
    import subprocess
    import sys

    code = "import sys, recommndr.monitoring.drift; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_bin_is_empty_by_construction() -> None:
    x = np.concatenate([np.zeros(600), np.arange(1, 401, dtype=float)])
    counts = stats.bin_counts(x, stats.quantile_edges(x, 10))
    assert counts.min() > 0 and counts[0] == 600


def test_rare_categories_are_pooled_so_one_unseen_value_is_not_significant() -> None:
    shares = np.array([0.5, 0.3, 0.2, 0.0])  # the last: a category the reference never saw
    assert stats.chi_square(shares, [49, 30, 20, 1]) > 0.5
    assert stats.chi_square(shares, [30, 30, 20, 20]) < 1e-6  # a fifth of the window in it: real
