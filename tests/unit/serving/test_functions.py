"""The same API through the Azure Functions wrapper, in-process, with real ``func.HttpRequest``s
(the Functions host cannot run here)."""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path

import azure.functions as func
import pytest

from recommndr.config import get_settings

pytestmark = pytest.mark.unit


def _request(method: str, url: str, body: bytes = b"") -> func.HttpRequest:
    return func.HttpRequest(method=method, url=url, headers={"content-type": "application/json"}, body=body)


def test_endpoints_through_asgi_function_app(
    artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOMMNDR_ARTIFACTS_DIR", str(artifacts))
    monkeypatch.setenv("RECOMMNDR_EVENT_LOG_DIR", str(tmp_path / "events"))
    get_settings.cache_clear()
    import function_app

    fa = importlib.reload(function_app).app

    async def scenario() -> dict[str, func.HttpResponse]:
        await fa.middleware.notify_startup()
        base = "http://localhost"
        calls = {
            "ready": _request("GET", f"{base}/ready"),
            "recs": _request("GET", f"{base}/recommendations/5?k=3"),
            "cold": _request("GET", f"{base}/recommendations/123456789?k=2"),
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
        }
        out = {name: await fa.middleware.handle_async(req, None) for name, req in calls.items()}
        await fa.middleware.notify_shutdown()
        return out

    r = asyncio.run(scenario())
    assert r["ready"].status_code == 200
    recs = json.loads(r["recs"].get_body())
    assert len(recs["items"]) == 3 and recs["variant"] == "champion"
    assert json.loads(r["cold"].get_body())["cold_start"] is True
    assert len(json.loads(r["similar"].get_body())["items"]) == 4
    assert (
        r["bad_k"].status_code == 422 and "query.k" in json.loads(r["bad_k"].get_body())["error"]["message"]
    )
    assert r["missing"].status_code == 404
    assert r["event"].status_code == 202
    assert list((tmp_path / "events").glob("events-*.jsonl"))
    assert r["bad_event"].status_code == 422
    assert b"recommndr_request_seconds" in r["metrics"].get_body()
