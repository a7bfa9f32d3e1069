"""``POST /events``: shoppers' events, 202 once they are durably stored, then folded into the
online features."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from recommndr.errors import InvalidRequestError, ServiceUnavailableError
from recommndr.serving.deps import State
from recommndr.serving.events import EPOCH, MAX_FUTURE, EventIn
from recommndr.serving.handlers import validation_message
from recommndr.serving.runtime import ServingState
from recommndr.serving.schemas import EventsAccepted, errors
from recommndr.serving.traffic import bucket_of

log = logging.getLogger(__name__)
US = timedelta(microseconds=1)
BUCKET_KINDS = {"view": "views", "purchase": "purchases"}  # the canary's successes per bucket
router = APIRouter(tags=["events"])

MAX_EVENTS_PER_REQUEST = 1000


def document_body(openapi: dict[str, Any]) -> None:
    """The body's schema in the OpenAPI document: one event or a list of 1-1000. Set on the
    finished document (FastAPI's own models would turn int64 bounds into floats, 2^63)."""
    event = EventIn.model_json_schema()
    body = openapi["paths"]["/events"]["post"]["requestBody"]
    body["content"] = {"application/json": {"schema": {"oneOf": [
        event, {"type": "array", "items": event, "minItems": 1, "maxItems": MAX_EVENTS_PER_REQUEST},
    ]}}}  # fmt: skip


@router.post(
    "/events",
    status_code=202,
    responses={202: {"description": "stored durably", "model": EventsAccepted}, **errors(413, 422, 503)},
    openapi_extra={"requestBody": {"required": True}},  # its schema: document_body()
)
async def events(request: Request, state: State) -> Any:
    """One event or a list of at most 1000; 202 once they are durably stored."""
    raw_body = await request.body()  # capped by BodyLimitMiddleware (413 past the limit)
    try:
        body = orjson.loads(raw_body)
    except orjson.JSONDecodeError as exc:
        refused(state, 1)
        raise InvalidRequestError("body: not valid JSON") from exc
    batch = body if isinstance(body, list) else [body]
    if not batch:
        refused(state, 1)
        raise InvalidRequestError("body: the list of events is empty")
    if len(batch) > MAX_EVENTS_PER_REQUEST:
        refused(state, 1)
        raise InvalidRequestError(
            f"body: at most {MAX_EVENTS_PER_REQUEST} events per request", code="too_many_events"
        )
    parsed: list[EventIn] = []
    problems: list[str] = []
    for i, raw in enumerate(batch):
        where = f"events[{i}]" if isinstance(body, list) else "event"
        try:
            parsed.append(EventIn.model_validate(raw))
        except ValidationError as exc:
            problems.append(validation_message(list(exc.errors()), where))  # type: ignore[arg-type]
    if problems:
        refused(state, len(problems))
        raise InvalidRequestError("; ".join(problems[:20]), code="invalid_event")
    # one receipt time for the log, the topic and the write-through: an event without ``ts`` gets it
    # here, so the job's session and the API's record name the same event time (the session metric)
    received = datetime.now(UTC)
    for e in parsed:
        if e.ts is None:
            e.ts = received
    try:
        ids = await state.events.append(parsed)
    except OSError as exc:  # nothing was acknowledged: tell the caller to retry
        log.error("event log write failed: %s", exc)
        raise ServiceUnavailableError(
            f"the events were not stored ({exc.strerror}); retry", code="events_unavailable"
        ) from exc
    if state.online is not None:  # the events are durable already; a store error only degrades
        cap = received + MAX_FUTURE  # as the topic's ts_ms is capped
        await asyncio.to_thread(
            state.online.record,
            [(e.user_id, e.item_id, e.event_type, (min(e.ts or received, cap) - EPOCH) // US)
             for e in parsed],  # exact integer microseconds (a float's may round below the ms)
        )  # fmt: skip
    try:  # the events are durable already: monitoring never turns their 202 into an error
        record_fields(state, parsed)
    except Exception:
        log.exception("the drift window did not record the events")
    for e in parsed:  # from a list (variant sent): counted under the variant the API assigns the user,
        # so a caller can neither invent a label nor credit the other variant; else "none"
        variant = state.slots.variant_of(e.user_id) if e.variant is not None else "none"
        state.metrics.events.labels(e.event_type, variant).inc()
        if variant != "none" and e.event_type in BUCKET_KINDS:
            state.metrics.canary_bucket.labels(
                variant, str(bucket_of(e.user_id)), BUCKET_KINDS[e.event_type]
            ).inc()
    return JSONResponse({"accepted": len(ids), "event_ids": ids}, status_code=202)


def refused(state: ServingState, n: int) -> None:
    """``n`` events failed validation: counted, and kept in the drift check's window."""
    state.metrics.events_rejected.inc(n)
    state.event_window.record_events([], failures=n)


def record_fields(state: ServingState, parsed: list[EventIn]) -> None:
    """The accepted events' price (the event's, else the catalogue's), top-level category and
    type, into the drift check's window (an unknown product: category "(unknown)")."""
    model = state.slots.champion
    if model is None:
        return
    cat = model.catalogue
    rows = []
    for e in parsed:
        idx = cat.index_of(e.item_id)
        price = e.price if e.price is not None else (cat.price_of(idx) if idx >= 0 else float("nan"))
        rows.append((round(price, 2), cat.category_l1(idx) if idx >= 0 else "(unknown)", e.event_type))
    state.event_window.record_events(rows)
