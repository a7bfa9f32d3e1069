"""What routes need, as ``Annotated`` dependencies: the process' serving state, the champion
(or a 503 saying why there is none), an admin's verified claims and the alert webhook's caller.
No route builds its own."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recommndr.serving import filters
from recommndr.serving.auth import check_admin, check_webhook, client_address
from recommndr.serving.model import Recommendation, ServingModel
from recommndr.serving.runtime import ServingState

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
K = Annotated[int, Query(ge=1, le=100, description="how many items (1-100)")]
UserId = Annotated[int, Path(ge=INT64_MIN, le=INT64_MAX, description="a shopper's id (int64)")]
ItemId = Annotated[int, Path(ge=INT64_MIN, le=INT64_MAX, description="a product's id (int64)")]
# the patterns are documented, not enforced by FastAPI: filters.parse_exclude refuses what they do
# not match with a 422 naming the value (FastAPI's message would quote the pattern instead)
ExcludeStates = Annotated[
    str,
    Query(
        max_length=filters.EXCLUDE_MAX_LENGTH,
        description="comma-separated, any of `purchased`, `carted`, `viewed` (at most "
        f"{filters.MAX_STATES}; repeats are fine): leave out the products the shopper already bought, "
        "carted or viewed (`viewed`: any product they interacted with, carted and bought ones too), as "
        "the model knows it from training and the online store since; an unknown value is a 422 naming it",
        json_schema_extra={"pattern": filters.EXCLUDE_PATTERN},
    ),
]
ExcludeItems = Annotated[
    str,
    Query(
        max_length=filters.EXCLUDE_ITEMS_MAX_LENGTH,
        description=f"comma-separated product ids not to offer (at most {filters.MAX_EXCLUDE_ITEMS}; "
        "each a decimal int64 without leading zeros; repeats and unknown products are fine)",
        json_schema_extra={"pattern": filters.EXCLUDE_ITEMS_PATTERN},
    ),
]

Explore = Annotated[
    float | None,
    Query(
        ge=0.0,
        le=0.5,
        description="share of the list (0-0.5) given to new products — no event before the model's "
        "cut-off, or launched in the last 30 days — that the shopper's taste scores best: every "
        "1/share-th place (0.1: the 10th, 20th, ...); default the API's RECOMMNDR_EXPLORE_SHARE",
    ),
]


async def _state(request: Request) -> ServingState:
    state: ServingState = request.app.state.recommndr
    return state


State = Annotated[ServingState, Depends(_state)]


async def _champion(state: State) -> ServingModel:
    return state.slots.serving()


Champion = Annotated[ServingModel, Depends(_champion)]


_BEARER = HTTPBearer(
    auto_error=False, description="an HS256 JWT (iss, aud, iat, exp) signed with the admin key"
)


async def _admin(
    request: Request,
    state: State,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> dict[str, Any]:
    """The admin's verified claims (the header is read by check_admin, after the IP check)."""
    s = state.settings
    peer = request.client.host if request.client else None
    return check_admin(
        request.headers.get("authorization"),
        # every X-Forwarded-For line, in order: a proxy may add its own line instead of appending
        client_address(
            peer, ",".join(request.headers.getlist("x-forwarded-for")), s.trusted_proxies, s.functions_host
        ),
        s.admin_jwt_secret,
        s.admin_jwt_issuer,
        s.admin_jwt_audience,
        s.admin_allowed_networks,
        s.admin_token_max_lifetime_s,
    )


Admin = Annotated[dict[str, Any], Depends(_admin)]

_WEBHOOK_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="AlertWebhookToken",
    description="the alert webhook's secret (RECOMMNDR_ALERT_WEBHOOK_TOKEN), as Alertmanager sends it "
    "(http_config.authorization.credentials_file)",
)


async def _alert_sender(
    request: Request,
    state: State,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(_WEBHOOK_BEARER)],
) -> None:
    check_webhook(request.headers.get("authorization"), state.settings.alert_webhook_token)


AlertSender = Depends(_alert_sender)


def json_response(body: dict[str, Any]) -> Response:
    """A JSON response without FastAPI's generic encoder (the hot paths build plain JSON types)."""
    return Response(orjson.dumps(body), media_type="application/json")


def items_json(recs: list[Recommendation]) -> list[dict[str, Any]]:
    return [{"item_id": r.item_id, "score": round(r.score, 6), "reason": r.reason} for r in recs]
