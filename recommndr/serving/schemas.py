"""The API's request and response bodies (what ``/openapi.json`` documents)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from recommndr.serving.faults import FaultKind


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code (invalid_request, not_found, ...)")
    message: str = Field(description="what is wrong, naming the field")


class ErrorOut(BaseModel):
    """Every error the API answers: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


_WHY = {
    401: "no valid admin token (missing, expired, wrong signature, issuer, audience or lifetime); "
    "on the alert webhook, no bearer token or a wrong one",
    403: "admin endpoints disabled, or the client address is not allowed; the alert webhook disabled "
    "(no token configured); fault injection disabled (RECOMMNDR_FAULT_INJECTION off)",
    404: "unknown item",
    409: "the request conflicts with what is loaded (no challenger to send traffic to, to promote or "
    "to inject a fault into), or a retrain is off (retrain_off) or already running (retrain_running)",
    413: "the body is over the limit",
    500: "injected_fault: a fault injected into the challenger on purpose (RECOMMNDR_FAULT_INJECTION "
    "on: tests, demos and benchmarks only); any other 5xx is a bug",
    422: "invalid input: the message names the field",
    503: "not ready (no model loaded) or, for events, alerts and the operator's state, not stored or "
    "not readable: retry; a retrain that could not be started",
}


def errors(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` declaring these error statuses with the error body."""
    return {s: {"model": ErrorOut, "description": _WHY[s]} for s in statuses}


class EventsAccepted(BaseModel):
    accepted: int = Field(description="how many events were stored")
    event_ids: list[str] = Field(description="their ids (generated where the event had none)")


class TrafficIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # a share is a number, not "0.5" or true
    challenger: float = Field(ge=0.0, le=1.0, description="share of users served by the challenger")


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field("manual", max_length=500)


_Reason = Annotated[str, StringConstraints(max_length=500)]


class FaultIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    kind: FaultKind = Field(description="none (off), errors, slow, random (a random ranker) or drift")


class FaultOut(BaseModel):
    kind: FaultKind
    since: float = Field(description="when it was set (Unix seconds)")
    version: str | None = Field(description="the challenger version it acts on (no other model gets it)")


class OperatorRequest(BaseModel):
    id: str = Field(description="uuid4 hex: the workflow carries out each request once")
    action: Literal["promote", "rollback"]
    by: str = Field(description="the admin token's subject")
    reason: str
    at: float = Field(description="when it was made (Unix seconds)")


class ControlOut(BaseModel):
    """The operator's state, shared by the API's workers and read by the running workflow."""

    paused: bool = Field(description="the canary holds its current step while true")
    request: OperatorRequest | None = Field(description="the last promote or rollback request")
    fault: FaultOut | None = Field(description="the last fault set (kind none: off); null: never set")


class AuditEntry(BaseModel):
    seq: int = Field(description="1, 2, ... in the order appended")
    at: str = Field(description="ISO 8601, UTC")
    action: str = Field(
        description="alias, traffic, promote, rollback, pause, resume, canary_step, fault, ..."
    )
    by: str
    reason: str
    details: dict[str, Any]
    prev: str = Field(description="SHA-256 of the previous entry's line (empty for the first)")
    hash: str = Field(description="SHA-256 of this entry without its hash")


class FaultAnswer(BaseModel):
    fault: FaultOut
    audit: AuditEntry | None = Field(description="the audit entry (null: it could not be written; logged)")


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    paused: bool = Field(description="true: hold the canary at its step; false: resume")
    reason: _Reason = "manual"


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: _Reason = "manual"


class ControlAnswer(BaseModel):
    control: ControlOut
    audit: AuditEntry | None = Field(description="the audit entry (null: it could not be written; logged)")


class RollbackOut(BaseModel):
    traffic: dict[str, float] = Field(description="the split now: the challenger's share is 0")
    reason: str
    shared: bool = Field(description="saved for the other workers and the running workflow")
    control: ControlOut
    audit: AuditEntry | None = Field(description="the audit entry (null: it could not be written; logged)")


class AuditOut(BaseModel):
    entries: list[AuditEntry] = Field(description="seq > after, oldest first")
    verified: bool = Field(
        description="the whole hash chain checks out (the API's log names the first broken line)"
    )


class VariantCounts(BaseModel):
    lists: int = Field(description="lists served")
    views: int = Field(description="views attributed to the variant")
    carts: int
    purchases: int
    requests: int = Field(description="/recommendations requests answered")
    errors: int = Field(description="their 5xx answers")
    ctr: float = Field(description="views / lists")
    atc: float = Field(description="carts / views")
    cvr: float = Field(description="purchases / views")


class RateDifference(BaseModel):
    estimate: float = Field(description="challenger - champion")
    ci_low: float
    ci_high: float
    p_value: float = Field(description="the mSPRT's always-valid p-value at this look")


class DifferenceOut(BaseModel):
    ctr: RateDifference | None = Field(description="null until both arms have lists (or views > lists)")
    cvr: RateDifference | None = Field(description="null until both arms have views")
    tau: float
    alpha: float


class CanaryOut(BaseModel):
    canary: dict[str, Any] | None = Field(description="the workflow's progress document (PUT /models/canary)")
    control: ControlOut
    traffic: dict[str, float]
    variants: dict[str, VariantCounts] = Field(description="champion and challenger, since the API started")
    difference: DifferenceOut


class CanaryStored(BaseModel):
    stored: bool


class ItemOut(BaseModel):
    item_id: int
    score: float
    reason: str = Field(
        description='why it is shown ("bought together with ...", "popular in ...", "trending")'
    )


class RecommendationsOut(BaseModel):
    user_id: int
    model_version: str
    variant: str = Field(description="the A/B variant that served the list (send it back with events)")
    cold_start: bool
    degraded: list[str] = Field(description="fallbacks used: ranker_unavailable, model_unavailable, ...")
    items: list[ItemOut]


class ItemListOut(BaseModel):
    item_id: int
    model_version: str
    items: list[ItemOut]


class CategoryListOut(BaseModel):
    category: str | None
    model_version: str
    source: Literal["live", "batch"] = Field(
        "batch",
        description="live: from the streaming job's product windows (the last hour's events); batch: "
        "from the model's tables, the fallback while the stream is down or not running",
    )
    as_of: str | None = Field(
        None, description="the live windows' clock (event time, ISO 8601 UTC) when source is live, else null"
    )
    items: list[ItemOut]


# Alertmanager's webhook body (version 4), bounded: at most MAX_ALERTS alerts, each label set at
# most MAX_LABELS pairs of bounded strings (Alertmanager's webhook max_alerts is set to MAX_ALERTS,
# so it never sends more; infra/monitoring/alertmanager.yml)
MAX_ALERTS = 100
MAX_LABELS = 64
_Name = Annotated[str, StringConstraints(max_length=256)]
_Text = Annotated[str, StringConstraints(max_length=4096)]
_Labels = Annotated[dict[_Name, _Text], Field(max_length=MAX_LABELS)]
_Url = Annotated[str, StringConstraints(max_length=2048)]


class AlertIn(BaseModel):
    """One alert of the webhook body (unknown fields are ignored: later Alertmanagers add some)."""

    model_config = ConfigDict(strict=True)
    status: Literal["firing", "resolved"]
    labels: _Labels = Field(description="alertname, severity, variant (where it applies), ...")
    annotations: _Labels = {}
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime = Field(alias="endsAt", description="0001-01-01T00:00:00Z while firing")
    generator_url: _Url = Field("", alias="generatorURL")
    fingerprint: Annotated[str, StringConstraints(max_length=64)] = ""


class AlertWebhookIn(BaseModel):
    """Alertmanager's webhook payload, version 4."""

    model_config = ConfigDict(strict=True)
    version: Literal["4"]
    group_key: _Text = Field(alias="groupKey")
    truncated_alerts: int = Field(0, ge=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: _Name
    group_labels: _Labels = Field({}, alias="groupLabels")
    common_labels: _Labels = Field({}, alias="commonLabels")
    common_annotations: _Labels = Field({}, alias="commonAnnotations")
    external_url: _Url = Field("", alias="externalURL")
    alerts: list[AlertIn] = Field(min_length=1, max_length=MAX_ALERTS)


class AlertsReceived(BaseModel):
    received: int = Field(description="how many alerts of the body were stored")
    ids: list[int] = Field(description="their ids in the inbox (GET /alerts?after=...)")


class StoredAlert(BaseModel):
    id: int = Field(description="increasing with each alert received")
    received_at: float = Field(description="when the API received it (Unix seconds)")
    receiver: str
    status: Literal["firing", "resolved"]
    alertname: str
    severity: str
    variant: str | None = Field(description="the variant the alert is about, if any")
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    fingerprint: str
    generator_url: str


class AlertsOut(BaseModel):
    alerts: list[StoredAlert] = Field(description="in the order received (ascending id)")
    capacity: int = Field(description="how many alerts the inbox keeps")


class RetrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    canary_fault: FaultKind = Field(
        "none", description="a fault injected into the challenger for its canary (demos): none, random, "
        "errors, slow or drift; needs RECOMMNDR_FAULT_INJECTION on the API for any but none",
    )  # fmt: skip


class RetrainOut(BaseModel):
    """The retrain started from the API (the last one; one at a time)."""

    state: Literal["off", "idle", "running", "finished", "failed"] = Field(
        description="off: not enabled (RECOMMNDR_LOOP_RETRAIN_DATA, RECOMMNDR_LOOP_API_URL); idle: none "
        "started yet; finished: it printed its outcome; failed: it exited otherwise, or its API stopped"
    )
    started_at: float | None = Field(description="Unix seconds")
    finished_at: float | None = Field(description="Unix seconds")
    canary_fault: FaultKind | None
    outcome: dict[str, Any] | None = Field(
        description="`recommndr retrain --json`'s result when finished: outcome (promoted, rolled_back, "
        "rejected), reason, steps, seconds"
    )
    returncode: int | None = Field(description="its exit status once it ended")
    detail: str | None = Field(description="why it is off, or why it failed")
    log_tail: str = Field(description="the last lines of its output (at most 4 KiB)")
