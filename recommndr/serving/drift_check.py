"""The drift check inside the API process: each loaded variant's window (what this process
served and received) against its bundle's reference, the results as the same gauges the watcher
exports (``recommndr_feature_psi``, ``recommndr_drift``, ...) in the API's own registry — which
``serving/telemetry.py`` forwards to Application Insights on Azure — and each alerting check
logged (and sent to MLflow where it is installed and ``MLFLOW_TRACKING_URI`` is set).

On Azure this is the timer Function of ``functions/drift.py`` (every 5 minutes): it checks the
window of the worker process it runs in — with a scaled-out app (a timer runs on one instance) or
several worker processes, a share of the traffic, not all of it. Locally ``recommndr monitor watch``
runs the same check from outside, over ``GET /monitoring/window``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from typing import Any

from recommndr.monitoring import drift
from recommndr.monitoring.profile import combine
from recommndr.monitoring.watch import DriftGauges
from recommndr.monitoring.window import MAX_WINDOW_S
from recommndr.serving.runtime import ServingState

log = logging.getLogger(__name__)


def check_served(state: ServingState, seconds: float = MAX_WINDOW_S) -> dict[str, dict[str, Any]]:
    """One check per loaded variant that has a reference; returns the reports by variant."""
    if state.drift_gauges is None:
        state.drift_gauges = DriftGauges(state.metrics.registry)
    events = state.event_window.snapshot(seconds)
    reports: dict[str, dict[str, Any]] = {}
    for variant, model in (("champion", state.slots.champion), ("challenger", state.slots.challenger)):
        if model is None or model.reference is None:
            continue
        report = drift.check(model.reference, combine(model.window.snapshot(seconds), events, seconds))
        report |= {"variant": variant, "model_version": model.version}
        state.drift_gauges.set(variant, report)
        if report["drift"]:
            flagged = sorted(n for n, f in report["features"].items() if f["drift"])
            log.warning("drift in %s (%s): %s; features %s", variant, model.version,
                        ", ".join(k for k, v in report["kinds"].items() if v), ", ".join(flagged) or "-")  # fmt: skip
            log.info("drift report %s", json.dumps(report))
            _to_mlflow(report)
        reports[variant] = report
    return reports


def _to_mlflow(report: dict[str, Any]) -> None:
    if not os.environ.get("MLFLOW_TRACKING_URI") or importlib.util.find_spec("mlflow") is None:
        return  # the Functions app does not ship MLflow: the log above is the record there
    from recommndr.registry.tracking import log_drift

    try:
        report["mlflow_run_id"] = log_drift(
            report, {"variant": report["variant"], "model_version": report["model_version"]}
        )
    except Exception as exc:  # tracking down: the gauges and the log still say it
        log.error("drift run not logged to MLflow: %s", exc)
