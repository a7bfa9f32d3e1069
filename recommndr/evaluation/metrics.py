"""Ranking metrics for one ranked list against graded targets (gain 1 view, 2 cart, 3 purchase)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


def user_metrics(ranked: I64, targets: dict[int, int], ks: tuple[int, ...]) -> dict[str, float]:
    """recall@k, ndcg@k (graded, exponential gain), map@k and hit_rate@k of one user."""
    out: dict[str, float] = {}
    rel = np.array([targets.get(int(i), 0) for i in ranked], dtype=np.float64)
    # an item repeated in the list counts only where it first appears (else recall, ndcg and map
    # of a list that repeats its good items exceed the perfect list's)
    first = np.zeros(rel.shape[0], dtype=bool)
    first[np.unique(ranked, return_index=True)[1]] = True
    rel[~first] = 0.0
    hits = rel > 0
    n_t = len(targets)
    ideal = np.sort(np.array(list(targets.values()), dtype=np.float64))[::-1]
    for k in ks:
        h = hits[:k]
        out[f"recall@{k}"] = float(h.sum() / n_t) if n_t else 0.0
        out[f"hit_rate@{k}"] = float(h.any())
        disc = 1.0 / np.log2(np.arange(2, k + 2))
        dcg = float(((2.0 ** rel[:k] - 1.0) * disc[: rel[:k].shape[0]]).sum())
        idcg = float(((2.0 ** ideal[:k] - 1.0) * disc[: min(k, ideal.shape[0])]).sum())
        out[f"ndcg@{k}"] = dcg / idcg if idcg > 0 else 0.0
        prec = np.cumsum(h) / np.arange(1, h.shape[0] + 1) if h.shape[0] else np.zeros(0)
        out[f"map@{k}"] = float((prec * h).sum() / min(n_t, k)) if n_t else 0.0
    return out


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {}
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
