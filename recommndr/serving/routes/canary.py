"""The canary's operator side (admin: JWT bearer and IP allowlist): pause and resume, a manual
promote (carried out by the running workflow), injected faults (fault injection on only), the
workflow's progress document, the live per-variant figures with the mSPRT's confidence sequence
of their difference, and the audit trail.

The API holds no workflow: a promote is *recorded* in the shared control state (``control.py``)
with an id, and the workflow, which reads ``GET /models/control`` at every step, carries it out
once. What the API does at once it does itself: the rollback (``admin.py``) sends every user to
the champion before the workflow hears of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from recommndr.errors import (
    ArtifactError,
    ConflictError,
    InvalidRequestError,
    PayloadTooLargeError,
    RecommndrError,
    ServiceUnavailableError,
)
from recommndr.lifecycle.audit import MAX_READ
from recommndr.monitoring.sequential import msprt
from recommndr.serving.auth import ForbiddenError
from recommndr.serving.deps import INT64_MAX, Admin, State
from recommndr.serving.metrics import variant_counts
from recommndr.serving.runtime import ServingState
from recommndr.serving.schemas import (
    AuditEntry,
    AuditOut,
    CanaryOut,
    CanaryStored,
    ControlAnswer,
    ControlOut,
    FaultAnswer,
    FaultIn,
    PauseIn,
    PromoteIn,
    errors,
)
from recommndr.serving.traffic import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)
router = APIRouter(tags=["canary"])

MAX_CANARY_BYTES = 64 * 1024
MAX_ID = 256  # characters of the progress document's instance_id and status
# the mSPRT's defaults: tau near the smallest CTR difference that matters (bench_canary.py)
TAU, ALPHA = 0.0075, 0.05


def by_of(claims: dict[str, Any]) -> str:
    """Who acts: the admin token's subject."""
    return str(claims.get("sub", "?"))[:256]


async def update_control(state: ServingState, change: dict[str, Any]) -> dict[str, Any]:
    """Merge ``change`` into the shared control state (503 when it cannot be saved) and apply it
    to this worker."""
    try:
        new = await asyncio.to_thread(state.control.update, lambda cur: {**cur, **change})
    except OSError as exc:
        log.error("control state not saved to %s: %s", state.control.path, exc)
        raise ServiceUnavailableError(
            f"the operator's state was not saved ({exc.strerror}); retry", code="control_unavailable"
        ) from exc
    state.apply_fault()
    return new


def operator_request(action: str, by: str, reason: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "action": action, "by": by, "reason": reason, "at": time.time()}


@router.get("/models/control", response_model=ControlOut, responses=errors(401, 403, 422))
async def control(claims: Admin, state: State) -> Any:
    """Admin: the operator's state — paused, the last promote or rollback request, the fault."""
    state.sync_control()  # what another worker changed a moment ago, too
    return state.control.state


@router.post("/models/pause", response_model=ControlAnswer, responses=errors(401, 403, 422, 503))
async def pause(claims: Admin, state: State, body: PauseIn) -> Any:
    """Admin: hold the running canary at its step (``paused: true``) or let it go on; the
    workflow reads it before each step. Audited as ``pause`` or ``resume``."""
    new = await update_control(state, {"paused": body.paused})
    action = "pause" if body.paused else "resume"
    entry = await state.record(action, by_of(claims), body.reason)
    log.warning("canary %s by %s: %s", action, by_of(claims), body.reason)
    return {"control": new, "audit": entry}


@router.post("/models/promote", response_model=ControlAnswer, responses=errors(401, 403, 409, 422, 503))
async def promote(claims: Admin, state: State, body: PromoteIn | None = None) -> Any:
    """Admin: ask the running workflow to promote the challenger now (it moves the aliases and
    the traffic); recorded with an id in the control state and audited."""
    challenger = state.slots.challenger
    if challenger is None:
        raise ConflictError("no challenger is loaded: nothing to promote", code="no_challenger")
    reason = body.reason if body else "manual"
    new = await update_control(state, {"request": operator_request("promote", by_of(claims), reason)})
    entry = await state.record("promote", by_of(claims), reason,
                               {"challenger": challenger.version, "request": new["request"]["id"]})  # fmt: skip
    log.warning("promotion of %s requested by %s: %s", challenger.version, by_of(claims), reason)
    return {"control": new, "audit": entry}


@router.post("/models/fault", response_model=FaultAnswer, responses=errors(401, 403, 409, 422, 503))
async def fault(claims: Admin, state: State, body: FaultIn) -> Any:
    """Admin, with ``RECOMMNDR_FAULT_INJECTION`` on (tests, demos, benchmarks): make the loaded
    challenger fail (``errors``), slow down (``slow``), rank at random (``random``) or rank with
    drifted features (``drift``); ``none`` turns it off. Every worker applies it within a second;
    it acts on this challenger version only."""
    if not state.settings.fault_injection:
        raise ForbiddenError(
            "fault injection is disabled (RECOMMNDR_FAULT_INJECTION)", code="fault_injection_disabled"
        )
    challenger = state.slots.challenger
    if challenger is None and body.kind != "none":
        raise ConflictError("no challenger is loaded: no model to inject a fault into", code="no_challenger")
    version = challenger.version if challenger is not None else None
    new = await update_control(
        state, {"fault": {"kind": body.kind, "since": time.time(), "version": version}}
    )
    entry = await state.record("fault", by_of(claims), f"injected fault {body.kind}",
                               {"kind": body.kind, "version": version})  # fmt: skip
    log.warning("fault %s injected into the challenger %s by %s", body.kind, version, by_of(claims))
    return {"fault": new["fault"], "audit": entry}


def document_body(openapi: dict[str, Any]) -> None:
    """``PUT /models/canary``'s body in the OpenAPI document (the route reads it itself, after
    the caller is checked and with its own size bound)."""
    text = {"type": "string", "minLength": 1, "maxLength": MAX_ID}
    body = openapi["paths"]["/models/canary"]["put"]["requestBody"]
    body["content"] = {"application/json": {"schema": {
        "type": "object", "required": ["instance_id", "status"], "additionalProperties": True,
        "properties": {"instance_id": text, "status": text},
        "description": f"the workflow's progress document (at most {MAX_CANARY_BYTES} bytes): instance_id, "
        "status (validating, training, gating, canary, promoting, rolling_back, promoted, rolled_back, "
        "rejected, failed), started_at, updated_at, challenger_version, champion_version, step, steps, "
        "share, looks (the last 50), decision",
    }}}  # fmt: skip


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text}: not a finite number")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_progress(raw: bytes) -> dict[str, Any]:
    """The progress document of a body: a JSON object with ``instance_id`` and ``status``
    strings, every number finite and every string encodable (what is stored is served back)."""
    try:
        doc = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
        json.dumps(doc, ensure_ascii=False).encode()  # a lone surrogate could not be answered
    except RecursionError as exc:
        raise InvalidRequestError("body: nested too deeply") from exc
    except ValueError as exc:  # JSON, UTF-8 and the checks above
        raise InvalidRequestError(f"body: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InvalidRequestError("body: a JSON object (the progress document) is required")
    for key in ("instance_id", "status"):
        v = doc.get(key)
        if not isinstance(v, str) or not 1 <= len(v) <= MAX_ID:
            raise InvalidRequestError(f"{key}: a string of 1 to {MAX_ID} characters is required")
    return doc


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def read_progress(path: Path) -> dict[str, Any] | None:
    """The stored progress document; None when there is none or it is not usable (logged)."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CANARY_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("the canary file %s cannot be read: %s", path, exc)
        return None
    try:
        if len(raw) > MAX_CANARY_BYTES:
            raise InvalidRequestError(f"over {MAX_CANARY_BYTES} bytes")
        return parse_progress(raw)
    except RecommndrError as exc:
        log.error("ignoring the canary file %s: %s", path, exc)
        return None


@router.put(
    "/models/canary",
    response_model=CanaryStored,
    responses=errors(401, 403, 413, 422, 503),
    openapi_extra={"requestBody": {"required": True}},  # its schema: document_body()
)
async def put_canary(claims: Admin, state: State, request: Request) -> Any:
    """Admin (the workflow): the running canary's progress document, stored as sent (at most
    64 KiB) for ``GET /models/canary`` and the ops page."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_CANARY_BYTES:
        raise PayloadTooLargeError(f"body: at most {MAX_CANARY_BYTES} bytes are accepted")
    raw = await request.body()  # also capped by BodyLimitMiddleware
    if len(raw) > MAX_CANARY_BYTES:
        raise PayloadTooLargeError(f"body: at most {MAX_CANARY_BYTES} bytes are accepted")
    doc = parse_progress(raw)
    try:
        await asyncio.to_thread(_write, state.settings.canary_file, doc)
    except OSError as exc:
        log.error("canary progress not saved to %s: %s", state.settings.canary_file, exc)
        raise ServiceUnavailableError(
            f"the progress was not stored ({exc.strerror}); retry", code="canary_unavailable"
        ) from exc
    return {"stored": True}


def _rates(c: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {k: round(v) for k, v in c.items()}
    out["ctr"] = c["views"] / c["lists"] if c["lists"] else 0.0
    out["atc"] = c["carts"] / c["views"] if c["views"] else 0.0
    out["cvr"] = c["purchases"] / c["views"] if c["views"] else 0.0
    return out


def difference(s0: int, n0: int, s1: int, n1: int, tau: float, alpha: float) -> dict[str, float] | None:
    """The mSPRT at this look of challenger - champion (``sequential.msprt``): None until both
    arms have trials, or when successes exceed trials (views counted past the lists served)."""
    if min(n0, n1) <= 0 or s0 > n0 or s1 > n1:
        return None
    theta, lr, lo, hi = msprt(s0, n0, s1, n1, tau, alpha)
    return {"estimate": theta, "ci_low": lo, "ci_high": hi, "p_value": min(1.0, 1.0 / lr)}


@router.get("/models/canary", response_model=CanaryOut, responses=errors(401, 403, 422))
async def canary(
    claims: Admin,
    state: State,
    tau: Annotated[float, Query(ge=1e-4, le=1.0, description="the mSPRT's mixing scale")] = TAU,
    alpha: Annotated[float, Query(ge=1e-6, le=0.5, description="its level")] = ALPHA,
) -> Any:
    """Admin: the canary at a glance — the workflow's progress, the operator's state, the
    split, per variant the live counters of this API (summed over its workers, since it
    started) and the mSPRT of challenger - champion on CTR and conversion at this look (its
    confidence sequence at this look alone: the workflow, which keeps every look, reports the
    running intersection in the progress document)."""
    state.sync_control()
    counts = variant_counts(state.metrics.families(), (CHAMPION, CHALLENGER))
    c0, c1 = counts[CHAMPION], counts[CHALLENGER]

    def diff(s: str, n: str) -> dict[str, float] | None:
        return difference(round(c0[s]), round(c0[n]), round(c1[s]), round(c1[n]), tau, alpha)

    return {
        "canary": await asyncio.to_thread(read_progress, state.settings.canary_file),
        "control": state.control.state,
        "traffic": state.traffic.shares,
        "variants": {v: _rates(c) for v, c in counts.items()},
        "difference": {
            "ctr": diff("views", "lists"),
            "cvr": diff("purchases", "views"),
            "tau": tau,
            "alpha": alpha,
        },
    }


@router.get("/models/audit", response_model=AuditOut, responses=errors(401, 403, 422, 503))
async def audit(
    claims: Admin,
    state: State,
    after: Annotated[int, Query(ge=0, le=INT64_MAX, description="only entries with a larger seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_READ, description=f"at most this many (1-{MAX_READ})")] = 100,
) -> Any:
    """Admin: the audit trail from ``after`` on, oldest first, and whether its whole hash chain
    verifies (an edited, removed or reordered entry makes it false)."""

    def read() -> tuple[list[dict[str, Any]], bool]:
        try:  # a line edited into something that is not an entry cannot be answered as one
            entries = [AuditEntry.model_validate(e).model_dump() for e in state.audit.read(after, limit)]
        except ValidationError as exc:
            raise ArtifactError(
                f"{state.audit.path}: an entry is malformed: {exc.errors()[0]['msg']}"
            ) from exc
        try:
            state.audit.verify()
        except RecommndrError as exc:
            log.error("the audit trail does not verify: %s", exc)
            return entries, False
        return entries, True

    try:
        entries, verified = await asyncio.to_thread(read)
    except (OSError, RecommndrError) as exc:
        log.error("the audit trail cannot be read: %s", exc)
        raise ServiceUnavailableError(
            f"the audit trail cannot be read: {exc}", code="audit_unavailable"
        ) from exc
    return {"entries": entries, "verified": verified}
