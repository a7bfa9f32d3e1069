"""Train, evaluate on the hold-out, log and register, then the promotion gate: what
``recommndr train`` does, as functions the CLI and (with the loop issue) Durable activities call."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recommndr.lifecycle.gate import GATE_METRIC, promotion_gate
from recommndr.params import TrainConfig
from recommndr.registry import tracking
from recommndr.training.pipeline import TrainResult, train

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"  # beside the bundle (not one of its files)


@dataclass(frozen=True)
class Registration:
    run_id: str
    versions: dict[str, str]
    champion: bool  # whether the gate made it champion
    reason: str  # the gate's reason, with the figures
    tracking_uri: str


@dataclass(frozen=True)
class TrainOutcome:
    result: TrainResult
    metrics: dict[str, Any] | None  # the hold-out evaluation (None without a hold-out)
    registration: Registration | None  # None when not tracked


def write_metrics(artifacts: Path, metrics: dict[str, Any]) -> None:
    """The evaluation beside the bundle: ``artifacts/metrics.json``."""
    (Path(artifacts) / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")


def register(
    artifacts: Path,
    cfg: TrainConfig,
    timings: dict[str, float],
    metrics: dict[str, Any] | None,
    uri: str | None = None,
    promote: bool = True,
) -> Registration:
    """Log and register the bundle (alias ``challenger``), then let the gate decide whether it
    becomes ``champion``; the decision and its figures are logged. Without ``promote`` it stays
    ``challenger`` whatever its figures (the loop's canary decides)."""
    run = tracking.log_and_register(artifacts, cfg, timings, metrics, uri)
    if not promote:
        log.info("run %s registered as challenger (the canary decides)", run.run_id)
        return Registration(run.run_id, run.versions, False, "registered for a canary", run.tracking_uri)
    has_champion, champion_score = tracking.champion_metric(run.tracking_uri, GATE_METRIC)
    decision = promotion_gate(run.metrics.get(tracking.metric_key(GATE_METRIC)), has_champion, champion_score)
    if decision.promote:
        tracking.set_alias(run.tracking_uri, run.versions, "champion")
    log.info("run %s: %s (%s)", run.run_id, "champion" if decision.promote else "challenger", decision.reason)
    return Registration(run.run_id, run.versions, decision.promote, decision.reason, run.tracking_uri)


def train_and_register(
    data: Path,
    out: Path,
    cfg: TrainConfig,
    track: bool = True,
    eval_users: int = 20_000,
    step: Callable[[str], Any] | None = None,
    promote: bool = True,
    uri: str | None = None,
) -> TrainOutcome:
    """With a hold-out, fit before it and evaluate on it; fit the served bundle on every event
    into ``out``; with ``track``, log, register and gate. ``step(name)`` is called before each
    stage (a CLI shows progress)."""
    result = train(data, out, cfg, progress=step, eval_users=eval_users)
    metrics = result.metrics
    if metrics is not None:
        write_metrics(out, metrics)
    registration = None
    if track:
        if step is not None:
            step("logging to MLflow")
        registration = register(out, cfg, result.timings, metrics, uri, promote)
    return TrainOutcome(result, metrics, registration)
