"""What routes need, as ``Annotated`` dependencies: the process' serving state, the champion
(or a 503 saying why there is none) and an admin's verified claims. No route builds its own."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Query, Request, Response

from recommndr.serving.auth import check_admin
from recommndr.serving.model import Recommendation, ServingModel
from recommndr.serving.runtime import ServingState

K = Annotated[int, Query(ge=1, le=100, description="how many items (1-100)")]


async def _state(request: Request) -> ServingState:
    state: ServingState = request.app.state.recommndr
    return state


State = Annotated[ServingState, Depends(_state)]


async def _champion(state: State) -> ServingModel:
    return state.slots.serving()


Champion = Annotated[ServingModel, Depends(_champion)]


async def _admin(request: Request, state: State) -> dict[str, Any]:
    s = state.settings
    return check_admin(
        request.headers.get("authorization"),
        request.client.host if request.client else None,
        s.admin_jwt_secret,
        s.admin_jwt_issuer,
        s.admin_jwt_audience,
        s.admin_allowed_networks,
    )


Admin = Annotated[dict[str, Any], Depends(_admin)]


def json_response(body: dict[str, Any]) -> Response:
    """A JSON response without FastAPI's generic encoder (the hot paths build plain JSON types)."""
    return Response(orjson.dumps(body), media_type="application/json")


def items_json(recs: list[Recommendation]) -> list[dict[str, Any]]:
    return [{"item_id": r.item_id, "score": round(r.score, 6), "reason": r.reason} for r in recs]
