"""The drift check against a running API, once (``recommndr monitor drift --api``) or on a timer
(``recommndr monitor watch``) with its results as Prometheus gauges and each alerting run in MLflow.

The API is asked for its window (``GET /monitoring/window``, an admin endpoint: a short-lived
token is minted from ``RECOMMNDR_ADMIN_JWT_SECRET``, or ``RECOMMNDR_ADMIN_TOKEN`` is sent as it
is); the statistics run here, not in the API, which keeps its request path free of them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from recommndr.config import Settings
from recommndr.errors import UserInputError
from recommndr.monitoring import drift
from recommndr.monitoring.reference import Reference
from recommndr.monitoring.window import Window

log = logging.getLogger(__name__)
MAX_WINDOW_BYTES = 64 * 1024 * 1024  # an answer larger than any window the API can hold is refused


def admin_token(settings: Settings, lifetime_s: int = 300) -> str:
    """A bearer token for the API's admin endpoints: ``RECOMMNDR_ADMIN_TOKEN``, or one minted
    from the configured secret."""
    given = os.environ.get("RECOMMNDR_ADMIN_TOKEN")
    if given:
        return given
    secret = settings.admin_jwt_secret
    if not secret:
        raise UserInputError(
            "--api needs admin access: set RECOMMNDR_ADMIN_JWT_SECRET (the API's) or RECOMMNDR_ADMIN_TOKEN"
        )
    import jwt

    now = int(time.time())
    claims = {"sub": "recommndr-monitor", "iss": settings.admin_jwt_issuer, "aud": settings.admin_jwt_audience,
              "iat": now, "exp": now + min(lifetime_s, settings.admin_token_max_lifetime_s)}  # fmt: skip
    return jwt.encode(claims, secret, algorithm="HS256")


def fetch_window(
    api: str, variant: str, seconds: float, token: str, timeout_s: float = 30.0
) -> tuple[Window, str]:
    """The API's window for ``variant`` and the model version serving it."""
    url = api.rstrip("/") + "/monitoring/window"
    try:
        with httpx.Client(timeout=timeout_s) as client:
            r = client.get(url, params={"variant": variant, "seconds": seconds},
                           headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    except httpx.HTTPError as exc:
        raise UserInputError(f"--api: {url} could not be reached: {exc}") from exc
    if r.status_code != 200:
        try:
            detail = r.json().get("error", {}).get("message", r.text[:200])
        except ValueError:
            detail = r.text[:200]
        raise UserInputError(f"--api: {url} answered {r.status_code}: {detail}")
    if len(r.content) > MAX_WINDOW_BYTES:
        raise UserInputError(
            f"--api: {url} sent {len(r.content):,} bytes; a window is at most {MAX_WINDOW_BYTES:,}"
        )
    body = r.json()
    try:
        return Window.from_json(body["window"]), str(body["model_version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserInputError(f"--api: {url} did not send a monitoring window: {exc}") from exc


class DriftGauges:
    """The check's results as Prometheus gauges, in their own registry (served by ``watch``) or
    in ``registry`` (the API's, for the check inside it: ``serving/drift_check.py``)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Gauge

        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.psi = Gauge("recommndr_feature_psi", "PSI of a monitored quantity against the bundle's reference",
                         ["variant", "feature"], registry=r)  # fmt: skip
        self.drift = Gauge("recommndr_drift", "1 when the calibrated drift check flags this kind",
                           ["variant", "kind"], registry=r)  # fmt: skip
        self.score_psi = Gauge("recommndr_score_psi", "PSI of the ranker's scores", ["variant"], registry=r)
        self.confidence_drop = Gauge("recommndr_confidence_drop",
                                     "Relative drop of the median top-1 score margin against the reference (0..1)",
                                     ["variant"], registry=r)  # fmt: skip
        self.failure_rate = Gauge("recommndr_validation_failure_rate", "Share of events refused in the window",
                                  registry=r)  # fmt: skip
        self.last_check = Gauge("recommndr_drift_last_check_timestamp_seconds", "When the last check ran",
                                registry=r)  # fmt: skip
        self.window_size = Gauge("recommndr_drift_window_size", "Lists in the checked window", ["variant"],
                                 registry=r)  # fmt: skip

    def set(self, variant: str, report: dict[str, Any]) -> None:
        for name, f in report["features"].items():
            if f["psi"] is not None:
                self.psi.labels(variant, name).set(f["psi"])
        for kind, flagged in report["kinds"].items():
            self.drift.labels(variant, kind).set(1.0 if flagged else 0.0)
        if report["score"]["psi"] is not None:
            self.score_psi.labels(variant).set(report["score"]["psi"])
        self.confidence_drop.labels(variant).set(report["confidence"]["drop"])
        self.failure_rate.set(report["validation_failure_rate"])
        self.window_size.labels(variant).set(report["lists"])
        self.last_check.set(time.time())


def check_api(ref: Reference, api: str, variant: str, seconds: float, settings: Settings) -> dict[str, Any]:
    """One check of the API's ``variant`` against ``ref``."""
    window, version = fetch_window(api, variant, seconds, admin_token(settings))
    report = drift.check(ref, window)
    report["variant"] = variant
    report["model_version"] = version
    return report


def watch(
    refs: dict[str, Reference],
    api: str,
    every_s: float,
    seconds: float,
    settings: Settings,
    gauges: DriftGauges,
    count: int | None = None,
    on_report: Callable[[dict[str, Any]], None] | None = None,
    log_runs: bool = True,
) -> int:
    """Check each variant of ``refs`` every ``every_s`` seconds (``count`` times, or until
    interrupted); a check that flags drift is logged to MLflow. Returns the checks made."""
    done = 0
    while count is None or done < count:
        t0 = time.monotonic()
        for variant, ref in refs.items():
            try:
                report = check_api(ref, api, variant, seconds, settings)
            except UserInputError as exc:  # the API is down or has no such variant: try again later
                log.warning("drift check of %s skipped: %s", variant, exc)
                continue
            gauges.set(variant, report)
            if report["drift"] and log_runs:
                from recommndr.registry.tracking import log_drift

                try:
                    report["mlflow_run_id"] = log_drift(
                        report, {"variant": variant, "model_version": report["model_version"]}
                    )
                except Exception as exc:  # tracking down: the gauges still say it
                    log.error("drift run not logged to MLflow: %s", exc)
            if on_report is not None:
                on_report(report)
        done += 1
        if count is not None and done >= count:
            break
        time.sleep(max(0.0, every_s - (time.monotonic() - t0)))
    return done
