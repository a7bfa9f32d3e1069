from __future__ import annotations

import numpy as np
import pytest

from recommndr.data.synthetic.sampling import sample_rows, sample_segments

pytestmark = pytest.mark.unit


def test_segments_stay_inside_bounds_and_skip_zero_weights() -> None:
    w = np.array([1.0, 0.0, 3.0, 0.0, 0.0, 2.0, 2.0, 0.0])
    cdf = np.cumsum(w)
    rng = np.random.default_rng(0)
    lo = np.repeat(np.array([0, 2, 5]), 20_000)
    hi = np.repeat(np.array([3, 5, 8]), 20_000)
    pos = sample_segments(cdf, lo, hi, rng)
    assert ((pos >= lo) & (pos < hi)).all()
    assert not np.isin(pos, [1, 3, 4, 7]).any()  # zero weight: never drawn
    first = pos[:20_000]
    assert abs((first == 0).mean() - 0.25) < 0.01  # weights 1 : 3
    last = pos[40_000:]
    assert abs((last == 5).mean() - 0.5) < 0.01


def test_rows_follow_each_rows_weights() -> None:
    w = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    rows = np.array([0, 1] * 10_000)
    cols = sample_rows(w, rows, np.random.default_rng(1))
    assert (cols[rows == 0] == 0).all()
    assert set(np.unique(cols[rows == 1])) == {1, 2}
