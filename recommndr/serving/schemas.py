"""The API's request and response bodies (what ``/openapi.json`` documents)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


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
    "(no token configured)",
    404: "unknown item",
    409: "the request conflicts with what is loaded (no challenger to send traffic to)",
    413: "the body is over the limit",
    422: "invalid input: the message names the field",
    503: "not ready (no model loaded) or, for events and alerts, not stored: retry",
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
