"""The ranker: float32-exact export, ONNX parity, loud failures."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.params import RankerConfig
from recommndr.ranking.features import FEATURES
from recommndr.ranking.ranker import (
    ExportError,
    TrainingSet,
    check_parity,
    float32_exact,
    to_onnx,
    train_ranker,
)

pytestmark = pytest.mark.unit


def _training_set(seed: int = 0) -> TrainingSet:
    rng = np.random.default_rng(seed)
    n = 6000
    X = rng.random((n, len(FEATURES))).astype(np.float32)
    X[:, 4:7] = rng.random((n, 3)) < 0.5  # flags
    X[:, 23] = np.log1p(rng.integers(0, 4, n))  # discrete counts: where float32 thresholds bite
    y = ((X[:, 0] + X[:, 23] + rng.random(n) * 0.3) * 1.4).astype(np.int32).clip(0, 3)
    return TrainingSet(X, y, np.full(n // 60, 60, dtype=np.int64))


def test_onnx_ranker_matches_lightgbm() -> None:
    ts = _training_set()
    model = train_ranker(ts, RankerConfig(n_estimators=60, num_leaves=15, min_child_samples=10), seed=1)
    onnx_bytes = to_onnx(model)
    diff = check_parity(model, onnx_bytes, ts.X)
    assert diff <= 1e-5


def test_float32_exact_keeps_predictions() -> None:
    import lightgbm as lgb

    ts = _training_set(1)
    raw = lgb.LGBMRanker(n_estimators=40, num_leaves=15, min_child_samples=10, verbose=-1)
    raw.fit(ts.X, ts.y, group=ts.group)
    exact = float32_exact(raw.booster_)
    assert np.array_equal(raw.booster_.predict(ts.X), exact.predict(ts.X))


def test_parity_failure_is_loud() -> None:
    ts = _training_set(2)
    model = train_ranker(ts, RankerConfig(n_estimators=20, num_leaves=7, min_child_samples=10), seed=1)
    other = train_ranker(
        _training_set(3), RankerConfig(n_estimators=20, num_leaves=7, min_child_samples=10), seed=2
    )
    with pytest.raises(ExportError, match="differs from LightGBM"):
        check_parity(model, to_onnx(other), ts.X)
