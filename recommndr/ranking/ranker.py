"""LightGBM lambdarank on the shared features, exported to ONNX and checked before use."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recommndr.errors import RecommndrError
from recommndr.onnx_session import cpu_session
from recommndr.params import RankerConfig
from recommndr.ranking.features import FEATURES

log = logging.getLogger(__name__)
F32 = npt.NDArray[np.float32]
PARITY_TOLERANCE = 1e-5
ONNX_OPSET = 15


class ExportError(RecommndrError):
    """The exported model does not reproduce the trained one."""

    code = "export_error"


@dataclass
class TrainingSet:
    X: F32
    y: npt.NDArray[np.int32]
    group: npt.NDArray[np.int64]  # rows per user, in order


def train_ranker(ts: TrainingSet, cfg: RankerConfig, seed: int) -> Any:
    import lightgbm as lgb

    model = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=cfg.n_estimators,
        num_leaves=cfg.num_leaves,
        learning_rate=cfg.learning_rate,
        min_child_samples=cfg.min_child_samples,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.9,
        n_jobs=cfg.threads or None,
        device_type=cfg.device,
        random_state=seed,
        verbose=-1,
    )
    model.fit(ts.X, ts.y, group=ts.group, feature_name=list(FEATURES))
    return float32_exact(model.booster_)


def float32_exact(booster: Any) -> Any:
    """The same booster with every split threshold moved down to the largest float32 not above it.

    For float32 inputs ``x <= t`` and ``x <= floor32(t)`` are the same test, so predictions do not
    change; ONNX's TreeEnsemble stores thresholds as float32 (rounding to nearest), which without
    this flips the comparison for inputs equal to the rounded value (0.3% of rows here).
    """
    import lightgbm as lgb

    lines = booster.model_to_string().split("\n")
    for j, line in enumerate(lines):
        if line.startswith("threshold="):
            t = np.array([float(v) for v in line[len("threshold=") :].split()], dtype=np.float64)
            f = t.astype(np.float32)
            f = np.where(f.astype(np.float64) > t, np.nextafter(f, np.float32(-np.inf)), f)
            lines[j] = "threshold=" + " ".join(repr(float(v)) for v in f)
    # the header's byte sizes of the trees no longer hold: without them LightGBM parses in order
    lines = [ln for ln in lines if not ln.startswith("tree_sizes=")]
    return lgb.Booster(model_str="\n".join(lines))


def to_onnx(model: Any) -> bytes:
    """The (float32-exact) booster as an ONNX graph: input 'features' (n x F float32), output 'score' (n x 1)."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    onx = onnxmltools.convert_lightgbm(
        model,
        initial_types=[("features", FloatTensorType([None, len(FEATURES)]))],
        target_opset=ONNX_OPSET,
        zipmap=False,
    )
    data: bytes = onx.SerializeToString()
    return data


class OnnxRanker:
    """Scores feature rows with ONNX Runtime (one thread by default: the request path)."""

    def __init__(self, model: bytes, threads: int = 1) -> None:
        self.model = model  # the ONNX bytes, for save()
        self.session = cpu_session(model, threads)
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def save(self, path: Path) -> None:
        Path(path).write_bytes(self.model)

    @classmethod
    def load(cls, path: Path, threads: int = 1) -> OnnxRanker:
        return cls(Path(path).read_bytes(), threads=threads)

    def score(self, X: F32) -> F32:
        if X.shape[0] == 0:
            return np.zeros(0, np.float32)
        out = self.session.run([self.output], {self.input: np.ascontiguousarray(X, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


def check_parity(model: Any, onnx_bytes: bytes, X: F32, tolerance: float = PARITY_TOLERANCE) -> float:
    """Max |ONNX Runtime - LightGBM| on ``X``; raises ExportError above ``tolerance``."""
    native = model.predict(X)
    onnx = OnnxRanker(onnx_bytes, threads=2).score(X)
    diff = float(np.max(np.abs(native - onnx))) if X.shape[0] else 0.0
    if not np.isfinite(diff) or diff > tolerance:
        raise ExportError(f"ONNX ranker differs from LightGBM by {diff:.2e} (> {tolerance:.0e})")
    return diff
