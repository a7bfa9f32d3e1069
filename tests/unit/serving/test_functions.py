"""The same API through the Azure Functions wrapper, in-process, with real ``func.HttpRequest``s
(the Functions host cannot run here)."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from pathlib import Path

import azure.functions as func
import jwt
import numpy as np
import pytest

from recommndr.config import get_settings

pytestmark = pytest.mark.unit
ADMIN_SECRET = "functions-admin-key-0123456789abcdef"


def _request(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> func.HttpRequest:
    return func.HttpRequest(
        method=method, url=url, headers={"content-type": "application/json", **(headers or {})}, body=body
    )


def _admin_token() -> str:
    now = int(time.time())
    claims = {"sub": "ops", "iss": "recommndr", "aud": "recommndr-admin", "iat": now, "exp": now + 300}
    return jwt.encode(claims, ADMIN_SECRET, algorithm="HS256")


def test_endpoints_through_asgi_function_app(
    artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOMMNDR_ARTIFACTS_DIR", str(artifacts))
    monkeypatch.setenv("RECOMMNDR_EVENT_LOG_DIR", str(tmp_path / "events"))
    monkeypatch.setenv("RECOMMNDR_ADMIN_JWT_SECRET", ADMIN_SECRET)
    monkeypatch.setenv("FUNCTIONS_WORKER_RUNTIME", "python")  # as the Functions host sets it
    get_settings.cache_clear()
    import function_app

    fa = importlib.reload(function_app).app

    token = _admin_token()
    from recommndr.loading import load_bundle

    b = load_bundle(artifacts)
    top = int(b.catalogue.item_ids[b.popularity.popular(1)[0][0]])  # the cold list's first product

    async def scenario() -> dict[str, func.HttpResponse]:
        await fa.middleware.notify_startup()
        base = "http://localhost"
        calls = {
            "ready": _request("GET", f"{base}/ready"),
            "recs": _request("GET", f"{base}/recommendations/5?k=3"),
            "cold": _request("GET", f"{base}/recommendations/123456789?k=2"),
            "filtered": _request("GET", f"{base}/recommendations/5?k=3&exclude=viewed,carted&exclude_items=0,1"),
            "cold_filtered": _request("GET", f"{base}/recommendations/123456789?k=2&exclude_items={top}"),
            "bad_exclude": _request("GET", f"{base}/recommendations/5?k=3&exclude=wishlist"),
            "similar": _request("GET", f"{base}/similar_items/10?k=4"),
            "bad_k": _request("GET", f"{base}/recommendations/5?k=0"),
            "missing": _request("GET", f"{base}/products/99999999"),
            "event": _request(
                "POST",
                f"{base}/events",
                json.dumps({"user_id": 5, "item_id": 3, "event_type": "view"}).encode(),
            ),
            "bad_event": _request("POST", f"{base}/events", b'{"user_id": 5}'),
            "metrics": _request("GET", f"{base}/metrics"),
            "health": _request("GET", f"{base}/health"),
            "fbt": _request("GET", f"{base}/frequently_bought_together/10?k=2"),
            "popular": _request("GET", f"{base}/popular?k=3"),
            "products": _request("GET", f"{base}/products?page_size=2&min_price=1"),
            "product": _request("GET", f"{base}/products/10"),
            "categories": _request("GET", f"{base}/categories"),
            "shoppers": _request("GET", f"{base}/shoppers?n=2"),
            "models": _request("GET", f"{base}/models"),
            "openapi": _request("GET", f"{base}/openapi.json"),
            "traffic": _request("POST", f"{base}/models/traffic", b'{"challenger": 0.1}'),
            "rollback": _request("POST", f"{base}/models/rollback", b"{}"),
            # the platform's front end appends the caller's address (with its port) to X-Forwarded-For
            "admin_ok": _request("POST", f"{base}/models/rollback", b'{"reason": "drill"}', {
                "authorization": f"Bearer {token}", "x-forwarded-for": "127.0.0.1:51234"}),
            "admin_traffic_ok": _request("POST", f"{base}/models/traffic", b'{"challenger": 0.0}', {
                "authorization": f"Bearer {token}", "x-forwarded-for": "203.0.113.9, 127.0.0.1:51234"}),
            "admin_foreign": _request("POST", f"{base}/models/rollback", b"{}", {
                "authorization": f"Bearer {token}", "x-forwarded-for": "127.0.0.1, 203.0.113.9:443"}),
            "admin_no_address": _request("POST", f"{base}/models/rollback", b"{}", {
                "authorization": f"Bearer {token}"}),
            "admin_no_token": _request("POST", f"{base}/models/rollback", b"{}", {
                "x-forwarded-for": "127.0.0.1:51234"}),
        }  # fmt: skip
        out = {name: await fa.middleware.handle_async(req, None) for name, req in calls.items()}
        await fa.middleware.notify_shutdown()
        return out

    r = asyncio.run(scenario())
    assert r["ready"].status_code == 200
    recs = json.loads(r["recs"].get_body())
    assert len(recs["items"]) == 3 and recs["variant"] == "champion"
    assert json.loads(r["cold"].get_body())["cold_start"] is True
    # the filters' query string reaches the app: viewed products of user 5 and the ids are left out
    u = int(b.user_index(np.array([5]))[0])
    viewed = set(b.catalogue.item_ids[b.features.user_items(u, viewed=True)].tolist())
    filtered = [i["item_id"] for i in json.loads(r["filtered"].get_body())["items"]]
    assert r["filtered"].status_code == 200 and len(filtered) == 3
    assert not (viewed | {0, 1}) & set(filtered) and viewed & {i["item_id"] for i in recs["items"]}
    cold = [i["item_id"] for i in json.loads(r["cold"].get_body())["items"]]
    cold_filtered = [i["item_id"] for i in json.loads(r["cold_filtered"].get_body())["items"]]
    assert (
        cold[0] == top
        and cold_filtered[0] == cold[1]
        and len(cold_filtered) == 2
        and top not in cold_filtered
    )
    assert r["bad_exclude"].status_code == 422
    assert "unknown value 'wishlist'" in json.loads(r["bad_exclude"].get_body())["error"]["message"]
    assert len(json.loads(r["similar"].get_body())["items"]) == 4
    assert (
        r["bad_k"].status_code == 422 and "query.k" in json.loads(r["bad_k"].get_body())["error"]["message"]
    )
    assert r["missing"].status_code == 404
    assert r["event"].status_code == 202
    assert list((tmp_path / "events").glob("events-*.jsonl"))
    assert r["bad_event"].status_code == 422
    assert b"recommndr_request_seconds" in r["metrics"].get_body()
    for name in (
        "health",
        "fbt",
        "popular",
        "products",
        "product",
        "categories",
        "shoppers",
        "models",
        "openapi",
    ):
        assert r[name].status_code == 200, (name, r[name].get_body())
    assert len(json.loads(r["popular"].get_body())["items"]) == 3
    assert len(json.loads(r["products"].get_body())["items"]) == 2
    assert json.loads(r["product"].get_body())["item_id"] == 10
    assert "/recommendations/{user_id}" in json.loads(r["openapi"].get_body())["paths"]

    def error(name: str) -> tuple[int, str]:
        return r[name].status_code, json.loads(r[name].get_body())["error"]["message"]

    assert error("traffic")[0] == 403 and error("rollback")[0] == 403  # no address, no token
    assert r["admin_ok"].status_code == 200, r["admin_ok"].get_body()
    assert json.loads(r["admin_ok"].get_body())["reason"] == "drill"
    assert r["admin_traffic_ok"].status_code == 200, r["admin_traffic_ok"].get_body()
    status, message = error("admin_foreign")
    assert status == 403 and "203.0.113.9 is not allowed" in message
    status, message = error("admin_no_address")
    assert status == 403 and "client address is unknown" in message
    assert error("admin_no_token") == (401, "a bearer token is required (Authorization: Bearer <JWT>)")
