"""The API's request and response bodies (what ``/openapi.json`` documents)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrafficIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    challenger: float = Field(ge=0.0, le=1.0, description="share of users served by the challenger")


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
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
