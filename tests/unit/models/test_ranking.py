"""The ranker: float32-exact export, ONNX parity, loud failures; the shared features."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.data.interactions import Interactions
from recommndr.params import RankerConfig, TrainConfig
from recommndr.ranking.features import FEATURES, FeatureTables, build_feature_tables, compute_features
from recommndr.ranking.ranker import (
    ExportError,
    TrainingSet,
    check_parity,
    float32_exact,
    to_onnx,
    train_ranker,
)
from recommndr.retrieval.als import ModelFitError, fit_als
from recommndr.retrieval.popularity import PopularityRetriever

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


def test_nan_factors_fail_before_anything_is_published(
    world_inter: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    original = AlternatingLeastSquares.fit

    def poisoned(self, *a, **kw):  # type: ignore[no-untyped-def]
        original(self, *a, **kw)
        self.item_factors[0, 0] = np.nan

    monkeypatch.setattr(AlternatingLeastSquares, "fit", poisoned)
    cfg = TrainConfig()
    with pytest.raises(ModelFitError, match="NaN"):
        fit_als(world_inter, cfg.weights, cfg.als.model_copy(update={"factors": 8, "iterations": 2}), seed=1)


def test_features_are_the_same_in_batch_and_one_by_one(world_inter: Interactions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig()
    pop = PopularityRetriever.fit(world_inter, cfg.weights, cfg.popularity)
    tables = build_feature_tables(world_inter, pop.pop, np.zeros(len(world_inter.catalogue.l3_names), bool))
    rng = np.random.default_rng(0)
    n = 400
    user = rng.integers(-1, world_inter.n_users, n)
    item = rng.integers(0, world_inter.catalogue.n_items, n)
    sig = [rng.random(n).astype(np.float32) for _ in range(4)]
    src = rng.integers(0, 8, n).astype(np.uint8)
    batch = compute_features(tables, user, item, *sig, src)
    assert batch.shape == (n, len(FEATURES)) and batch.dtype == np.float32
    assert np.isfinite(batch).all()
    one = np.vstack(
        [
            compute_features(
                tables, user[i : i + 1], item[i : i + 1], *(s[i : i + 1] for s in sig), src[i : i + 1]
            )
            for i in range(0, n, 37)
        ]
    )
    assert np.array_equal(one, batch[::37])
    tables.save(tmp_path / "t.npz")
    again = compute_features(FeatureTables.load(tmp_path / "t.npz"), user, item, *sig, src)
    assert np.array_equal(again, batch)
    # a user's own history shows in the user x product features
    u = int(world_inter.user[0])
    it = int(world_inter.item[0])
    f = compute_features(
        tables,
        np.array([u]),
        np.array([it]),
        *(np.zeros(1, np.float32) for _ in range(4)),
        np.zeros(1, np.uint8),
    )
    assert f[0, FEATURES.index("user_item_views_log")] > 0
    assert f[0, FEATURES.index("user_affinity_l1")] > 0
