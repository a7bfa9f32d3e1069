"""Admin: the traffic split and a rollback to the champion (JWT bearer and IP allowlist)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter

from recommndr.errors import ConflictError
from recommndr.serving.deps import Admin, State
from recommndr.serving.schemas import RollbackIn, TrafficIn, errors

log = logging.getLogger(__name__)
router = APIRouter(tags=["admin"])


@router.post("/models/traffic", responses=errors(401, 403, 409, 422))
async def set_traffic(claims: Admin, state: State, body: TrafficIn) -> dict[str, Any]:
    """Admin: the challenger's share of users (the champion serves the rest)."""
    if state.slots.challenger is None and body.challenger > 0:
        raise ConflictError("no challenger is loaded: cannot send it traffic", code="no_challenger")
    state.traffic.set(body.challenger)
    saved = state.traffic.save(body.challenger, str(claims.get("sub", "?")), "set")
    log.warning("traffic split set to %s by %s", state.traffic.shares, claims.get("sub", "?"))
    return {"traffic": state.traffic.shares, "shared": saved}


@router.post("/models/rollback", responses=errors(401, 403, 422))
async def rollback(claims: Admin, state: State, body: RollbackIn | None = None) -> dict[str, Any]:
    """Admin: send every user back to the champion."""
    if state.slots.challenger is not None:
        state.traffic.set(0.0)
    else:
        state.traffic.reset()
    reason = body.reason if body else "manual"
    saved = state.traffic.save(0.0, str(claims.get("sub", "?")), reason)
    log.warning("rolled back to the champion by %s: %s", claims.get("sub", "?"), reason)
    return {"traffic": state.traffic.shares, "reason": reason, "shared": saved}
