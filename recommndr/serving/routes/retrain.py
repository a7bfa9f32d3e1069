"""Admin: start one local retrain → canary → promote or roll back against this API, and follow it
(``recommndr.serving.retrain``): what the ops page's Retrain panel calls in ``make demo``. Off
unless the API is given a dataset (``RECOMMNDR_LOOP_RETRAIN_DATA``) and its own URL
(``RECOMMNDR_LOOP_API_URL``): then ``POST`` answers 409 ``retrain_off`` and ``GET`` state ``off``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter

from recommndr.serving.auth import ForbiddenError
from recommndr.serving.deps import Admin, State
from recommndr.serving.routes.canary import by_of
from recommndr.serving.schemas import RetrainIn, RetrainOut, errors

log = logging.getLogger(__name__)
router = APIRouter(tags=["canary"])


@router.get("/models/retrain", response_model=RetrainOut, responses=errors(401, 403, 422))
async def retrain_status(claims: Admin, state: State) -> Any:
    """Admin: the last retrain started here — its state, times, fault, outcome and log's tail."""
    return await asyncio.to_thread(state.retrain.status)


@router.post("/models/retrain", response_model=RetrainOut, responses=errors(401, 403, 409, 422, 503))
async def retrain_start(claims: Admin, state: State, body: RetrainIn | None = None) -> Any:
    """Admin: start `recommndr retrain --local --api <this API> --data <the dataset> --json`
    (optionally with a canary fault: fault injection on only); 409 while one runs. Audited."""
    fault = body.canary_fault if body else "none"
    if fault != "none" and not state.settings.fault_injection:
        raise ForbiddenError(
            "fault injection is disabled (RECOMMNDR_FAULT_INJECTION)", code="fault_injection_disabled"
        )
    started = await asyncio.to_thread(state.retrain.start, fault)
    await state.record("retrain", by_of(claims), f"retrain started (canary fault {fault})", {"fault": fault})
    return started
