"""Admin: the traffic split and a rollback to the champion (JWT bearer and IP allowlist), both
audited (``lifecycle/audit.py``) under the token's subject."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Response

from recommndr.errors import ConflictError, NotFoundError
from recommndr.monitoring.profile import combine
from recommndr.monitoring.window import MAX_WINDOW_S
from recommndr.serving.deps import Admin, State
from recommndr.serving.routes.canary import by_of, operator_request
from recommndr.serving.schemas import RollbackIn, RollbackOut, TrafficIn, errors

log = logging.getLogger(__name__)
router = APIRouter(tags=["admin"])


@router.post("/models/traffic", responses=errors(401, 403, 409, 422))
async def set_traffic(claims: Admin, state: State, body: TrafficIn) -> dict[str, Any]:
    """Admin: the challenger's share of users (the champion serves the rest)."""
    if state.slots.challenger is None and body.challenger > 0:
        raise ConflictError("no challenger is loaded: cannot send it traffic", code="no_challenger")
    previous = state.traffic.challenger_share
    state.traffic.set(body.challenger)
    saved = state.traffic.save(body.challenger, by_of(claims), "set")
    await state.record("traffic", by_of(claims), "set",
                       {"challenger": body.challenger, "previous": previous, "shared": saved})  # fmt: skip
    log.warning("traffic split set to %s by %s", state.traffic.shares, by_of(claims))
    return {"traffic": state.traffic.shares, "shared": saved}


@router.post("/models/rollback", response_model=RollbackOut, responses=errors(401, 403, 422))
async def rollback(claims: Admin, state: State, body: RollbackIn | None = None) -> Any:
    """Admin: send every user back to the champion at once, and record the request for the
    running workflow (which restores the aliases where they moved) and the audit trail."""
    previous = state.traffic.challenger_share
    if state.slots.challenger is not None:
        state.traffic.set(0.0)
    else:
        state.traffic.reset()
    reason = body.reason if body else "manual"
    who = by_of(claims)
    saved = state.traffic.save(0.0, who, reason)
    request = operator_request("rollback", who, reason)
    try:  # the traffic is back already: a control file that cannot be written must not undo that
        control = await asyncio.to_thread(state.control.update, lambda cur: {**cur, "request": request})
    except OSError as exc:
        log.error("rollback request not saved to %s: %s", state.control.path, exc)
        control, saved = state.control.state, False
    entry = await state.record("rollback", who, reason, {"challenger": previous, "request": request["id"]})
    log.warning("rolled back to the champion by %s: %s", who, reason)
    return {"traffic": state.traffic.shares, "reason": reason, "shared": saved, "control": control,
            "audit": entry}  # fmt: skip


@router.get(
    "/monitoring/window",
    responses={
        200: {"description": "the window (see recommndr.monitoring.window.Window)"},
        **errors(401, 403, 404, 422),
    },
)
async def monitoring_window(
    claims: Admin,
    state: State,
    variant: Literal["champion", "challenger"] = "champion",
    seconds: Annotated[float, Query(gt=0, le=MAX_WINDOW_S, description="how far back")] = MAX_WINDOW_S,
) -> Response:
    """Admin: what this API process served (``variant``'s lists) and received (every event) in
    the last ``seconds``, as uniform samples — what ``recommndr monitor drift --api`` checks. With
    several worker processes, the one that answers reports its own traffic: a random share of
    the whole, as a load balancer spreads requests."""
    model = state.slots.champion if variant == "champion" else state.slots.challenger
    if model is None:
        raise NotFoundError(f"no {variant} is loaded", code="no_model")

    def build() -> bytes:  # ~7 MB of JSON for a full window: off the event loop, with orjson
        window = combine(model.window.snapshot(seconds), state.event_window.snapshot(seconds), seconds)
        return orjson.dumps({"variant": variant, "model_version": model.version, "window": window.to_json()})

    return Response(await asyncio.to_thread(build), media_type="application/json")
