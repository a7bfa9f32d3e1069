"""Vectorised sampling from many categorical distributions at once.

The distributions are laid end to end in one flat array of weights; its cumulative sum is
monotonic, so a draw from the segment ``[lo, hi)`` is one ``searchsorted`` for all draws together.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def sample_segments(cdf: F64, lo: I64, hi: I64, rng: np.random.Generator) -> I64:
    """For each i, draw a position in ``[lo[i], hi[i])`` with probability proportional to the
    weights whose cumulative sum is ``cdf``. Segments must have positive total weight."""
    start = np.where(lo > 0, cdf[np.maximum(lo - 1, 0)], 0.0)
    end = cdf[hi - 1]
    x = np.minimum(start + (1.0 - rng.random(lo.shape[0])) * (end - start), end)
    pos = np.searchsorted(cdf, x, side="left")
    return np.asarray(np.clip(pos, lo, hi - 1), dtype=np.int64)


def sample_rows(weights: F64, rows: I64, rng: np.random.Generator) -> I64:
    """For each entry of ``rows``, draw a column of ``weights[row]`` proportionally to its weight."""
    n_cols = weights.shape[1]
    cdf = np.cumsum(weights.ravel())
    lo = rows * n_cols
    out: I64 = sample_segments(cdf, lo, lo + n_cols, rng) - lo
    return out
