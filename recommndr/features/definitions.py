"""Feast definitions of the online features (imports Feast: kept off the request path).

The streaming job pushes to ``user_realtime_push``; ``recommndr features push`` does the same from an
event log; the API reads the resulting records directly (``online.py``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Float64, Int64, String

from recommndr.features.schema import (
    ENTITY,
    FIELDS,
    JOIN_KEY,
    PRODUCT_ENTITY,
    PRODUCT_FIELDS,
    PRODUCT_JOIN_KEY,
    PRODUCT_TTL_DAYS,
    PRODUCT_VIEW,
    PUSH_SOURCE,
    SESSION_FIELDS,
    SESSION_TTL_DAYS,
    SESSION_VIEW,
    TTL_DAYS,
    VIEW,
)

DTYPES: dict[str, Any] = {
    "int64": Int64, "int64_list": Array(Int64), "double": Float64, "string_list": Array(String),
}  # fmt: skip


def definitions(offline_path: Path) -> list[Any]:
    """The entity, push source and feature view, with ``offline_path`` as the batch source."""
    user = Entity(name=ENTITY, join_keys=[JOIN_KEY], value_type=ValueType.INT64, description="a shopper")
    batch = FileSource(name=f"{VIEW}_batch", path=str(offline_path), timestamp_field="event_ts")
    push = PushSource(name=PUSH_SOURCE, batch_source=batch)
    view = FeatureView(
        name=VIEW,
        entities=[user],
        ttl=timedelta(days=TTL_DAYS),
        schema=[Field(name=n, dtype=DTYPES[k]) for n, k in FIELDS.items()],
        source=push,
        online=True,
        description="what a shopper did since the served model's cut-off (newest first)",
    )
    product = Entity(
        name=PRODUCT_ENTITY, join_keys=[PRODUCT_JOIN_KEY], value_type=ValueType.INT64, description="a product"
    )
    product_batch = FileSource(
        name=f"{PRODUCT_VIEW}_batch", path=str(offline_path.with_name(f"{PRODUCT_VIEW}.parquet")),
        timestamp_field="event_ts",
    )  # fmt: skip
    product_push = PushSource(name=f"{PRODUCT_VIEW}_push", batch_source=product_batch)
    product_view = FeatureView(
        name=PRODUCT_VIEW,
        entities=[product],
        ttl=timedelta(days=PRODUCT_TTL_DAYS),
        schema=[Field(name=n, dtype=DTYPES[k]) for n, k in PRODUCT_FIELDS.items()],
        source=product_push,
        online=True,
        description="a product's events over the last hour and day of event time (the streaming job)",
    )
    session_batch = FileSource(
        name=f"{SESSION_VIEW}_batch", path=str(offline_path.with_name(f"{SESSION_VIEW}.parquet")),
        timestamp_field="event_ts",
    )  # fmt: skip
    session_push = PushSource(name=f"{SESSION_VIEW}_push", batch_source=session_batch)
    session_view = FeatureView(
        name=SESSION_VIEW,
        entities=[user],
        ttl=timedelta(days=SESSION_TTL_DAYS),
        schema=[Field(name=n, dtype=DTYPES[k]) for n, k in SESSION_FIELDS.items()],
        source=session_push,
        online=True,
        description="a shopper's latest session: products and categories newest first (the streaming job)",
    )
    return [
        user, batch, push, view, product, product_batch, product_push, product_view,
        session_batch, session_push, session_view,
    ]  # fmt: skip
