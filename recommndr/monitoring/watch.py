"""The drift check against a running API, once (``recommndr monitor drift --api``) or on a timer
(``recommndr monitor watch``) with its results as Prometheus gauges and each alerting run in MLflow.

The API is asked for its window (``GET /monitoring/window``, an admin endpoint: a short-lived
token is minted from ``RECOMMNDR_ADMIN_JWT_SECRET``, or ``RECOMMNDR_ADMIN_TOKEN`` is sent as it
is); the statistics run here, not in the API, which keeps its request path free of them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from recommndr.config import Settings
from recommndr.errors import UserInputError
from recommndr.monitoring import drift
from recommndr.monitoring.reference import Reference
from recommndr.monitoring.window import Window

log = logging.getLogger(__name__)
MAX_WINDOW_BYTES = 16 * 1024 * 1024  # a full window is ~7 MB of JSON; a larger answer is refused


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
    """The API's window for ``variant`` and the model version serving it; UserInputError for an
    API that cannot be reached, refuses, or answers with anything but a window of bounded size."""
    url = api.rstrip("/") + "/monitoring/window"
    try:
        with (
            httpx.Client(timeout=timeout_s) as client,
            client.stream(
                "GET",
                url,
                params={"variant": variant, "seconds": seconds},
                headers={"Authorization": f"Bearer {token}"},
            ) as r,
        ):
            chunks, size = [], 0
            for chunk in r.iter_bytes():
                size += len(chunk)
                if size > MAX_WINDOW_BYTES:
                    raise UserInputError(
                        f"--api: {url} sent more than {MAX_WINDOW_BYTES:,} bytes; a window is less"
                    )
                chunks.append(chunk)
            status, raw = r.status_code, b"".join(chunks)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise UserInputError(f"--api: {url} could not be reached: {exc}") from exc
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if status != 200:
        error = body.get("error") if isinstance(body, dict) else None
        detail = error.get("message") if isinstance(error, dict) else raw[:200].decode(errors="replace")
        raise UserInputError(f"--api: {url} answered {status}: {detail}")
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


def check_api(
    ref: Reference, api: str, variant: str, seconds: float, settings: Settings, version: str | None = None
) -> dict[str, Any]:
    """One check of the API's ``variant`` against ``ref``, the reference of the bundle with
    ``version`` (when given, a window served by another version is refused: after a promotion
    or a rollback that traffic is not this reference's to judge)."""
    window, served = fetch_window(api, variant, seconds, admin_token(settings))
    if version is not None and served != version:
        raise UserInputError(
            f"the API's {variant} is version {served}, the reference's bundle is {version}: "
            "check it against the bundle it serves"
        )
    report = drift.check(ref, window)
    report["variant"] = variant
    report["model_version"] = served
    return report


def watch(
    refs: Mapping[str, tuple[Reference, str | None]],
    api: str,
    every_s: float,
    seconds: float,
    settings: Settings,
    gauges: DriftGauges,
    count: int | None = None,
    on_report: Callable[[dict[str, Any]], None] | None = None,
    log_runs: bool = True,
) -> int:
    """Check each variant of ``refs`` (its reference and bundle version) every ``every_s``
    seconds (``count`` times, or until interrupted); a check that flags drift is logged to
    MLflow. Returns the rounds made. A check that fails (the API down, another version serving,
    a malformed answer) is logged and skipped: the watcher outlives what it watches."""
    admin_token(settings)  # no admin access is a set-up error: said once, at the start
    done = 0
    while count is None or done < count:
        t0 = time.monotonic()
        for variant, (ref, version) in refs.items():
            try:
                report = check_api(ref, api, variant, seconds, settings, version)
            except Exception as exc:  # try again next round
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
