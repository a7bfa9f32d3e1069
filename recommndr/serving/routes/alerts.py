"""Alerts: Alertmanager's webhook (a bearer secret) and the admin's view of what it delivered."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from recommndr.errors import InvalidRequestError, PayloadTooLargeError, ServiceUnavailableError
from recommndr.serving.deps import INT64_MAX, Admin, AlertSender, State, json_response
from recommndr.serving.handlers import validation_message
from recommndr.serving.schemas import AlertsOut, AlertsReceived, AlertWebhookIn, errors

log = logging.getLogger(__name__)
router = APIRouter(tags=["alerts"])

# A body of MAX_ALERTS alerts with a dozen labels and annotations each is ~150 KB
MAX_WEBHOOK_BYTES = 512 * 1024
MAX_LIST = 1000


def document_body(openapi: dict[str, Any]) -> None:
    """The webhook body's schema in the OpenAPI document (the route reads the body itself, after
    the caller is checked, so FastAPI does not document it)."""
    schema = AlertWebhookIn.model_json_schema(ref_template="#/components/schemas/{model}")
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    components.update(schema.pop("$defs", {}))
    components["AlertWebhookIn"] = schema
    body = openapi["paths"]["/alerts/webhook"]["post"]["requestBody"]
    body["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/AlertWebhookIn"}}}


@router.post(
    "/alerts/webhook",
    dependencies=[AlertSender],
    responses={200: {"description": "stored", "model": AlertsReceived}, **errors(401, 403, 413, 422, 503)},
    openapi_extra={"requestBody": {"required": True}},  # its schema: document_body()
)
async def alert_webhook(request: Request, state: State) -> Any:
    """Alertmanager's webhook (payload version 4, at most 100 alerts and 512 KiB): each alert is
    kept in the inbox (the last ``RECOMMNDR_ALERT_INBOX_SIZE``) and counted in
    ``recommndr_alerts_received_total``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_WEBHOOK_BYTES:
        raise PayloadTooLargeError(f"body: at most {MAX_WEBHOOK_BYTES} bytes are accepted")
    raw = await request.body()  # also capped by BodyLimitMiddleware
    if len(raw) > MAX_WEBHOOK_BYTES:
        raise PayloadTooLargeError(f"body: at most {MAX_WEBHOOK_BYTES} bytes are accepted")
    try:
        body = AlertWebhookIn.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise InvalidRequestError("body: not valid JSON") from exc
        raise InvalidRequestError(validation_message(list(exc.errors())), code="invalid_alerts") from exc  # type: ignore[arg-type]
    try:
        ids = await asyncio.to_thread(state.alerts.record, body)
    except (OSError, sqlite3.Error) as exc:  # unwritable folder, disk full, locked past the timeout
        log.error("alert inbox write failed: %s", exc)
        raise ServiceUnavailableError(
            f"the alerts were not stored ({exc}); retry", code="alerts_unavailable"
        ) from exc
    for a in body.alerts:
        state.metrics.count_alert(a.labels.get("alertname"), a.status, a.labels.get("severity"))
        log.warning("alert %s %s (%s)", a.labels.get("alertname"), a.status, a.labels.get("variant", "-"))
    return json_response({"received": len(ids), "ids": ids})


@router.get("/alerts", response_model=AlertsOut, responses=errors(401, 403, 422, 503))
async def alerts(
    claims: Admin,
    state: State,
    after: Annotated[
        int | None,
        Query(ge=0, le=INT64_MAX, description="only alerts with a larger id, oldest first (a cursor)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST, description="at most this many (1-1000)")] = 100,
) -> Any:
    """Admin: the alerts received, in the order received; without ``after`` the newest ``limit``."""
    try:
        found = await asyncio.to_thread(state.alerts.since, after, limit)
    except (OSError, sqlite3.Error) as exc:
        log.error("alert inbox read failed: %s", exc)
        raise ServiceUnavailableError(
            f"the alert inbox cannot be read ({exc})", code="alerts_unavailable"
        ) from exc
    return json_response({"alerts": found, "capacity": state.alerts.capacity})
