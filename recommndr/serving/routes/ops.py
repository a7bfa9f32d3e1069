"""Operations: liveness, readiness, the loaded models and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from recommndr.errors import ServiceUnavailableError
from recommndr.serving.deps import State
from recommndr.serving.schemas import errors
from recommndr.serving.traffic import CHALLENGER, CHAMPION

router = APIRouter(tags=["ops"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", responses=errors(503))
async def ready(state: State) -> Any:
    m = state.slots.champion
    if m is None or m.fallback is not None:
        raise ServiceUnavailableError(state.slots.not_ready, code="not_ready")
    online = "off" if state.online is None else state.online.store.name
    if state.online is not None and not state.online.available:
        online = f"unavailable ({state.online.last_error}); serving batch features"
    # where events go: the log, or the broker ("up" / "down (why)") and the spool's backlog; whether
    # /trending serves the streaming job's live windows or the batch list
    return {
        "status": "ready",
        "model_version": m.version,
        "online_store": online,
        "events": state.events.status(),
        "trending": state.stream.describe(),
    }


@router.get("/models")
async def models(state: State) -> dict[str, Any]:
    slots = state.slots
    loaded = [{"variant": CHAMPION, **slots.champion.info()}] if slots.champion else []
    if slots.challenger is not None:
        loaded.append({"variant": CHALLENGER, **slots.challenger.info()})
    return {"models": loaded, "traffic": state.traffic.shares if loaded else {}}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format",
                     "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
)  # fmt: skip
async def metrics(state: State) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
