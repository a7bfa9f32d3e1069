"""The API's request and response bodies (what ``/openapi.json`` documents)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code (invalid_request, not_found, ...)")
    message: str = Field(description="what is wrong, naming the field")


class ErrorOut(BaseModel):
    """Every error the API answers: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


_WHY = {
    401: "no valid admin token (missing, expired, wrong signature, issuer, audience or lifetime)",
    403: "admin endpoints disabled, or the client address is not allowed",
    404: "unknown item",
    409: "the request conflicts with what is loaded (no challenger to send traffic to)",
    413: "the body is over the limit",
    422: "invalid input: the message names the field",
    503: "not ready (no model loaded) or, for events, not stored: retry",
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
