"""The storefront's admin route (frontend/app/api/admin/[...path]/route.ts) by raw HTTP, in front of
the real API configured to trust it as a proxy: it passes only the ops page's admin endpoints, only
with a bearer token, says who the caller really is (so the API's IP allow-list still applies to a
caller the storefront relays, whatever X-Forwarded-For the caller sends), and puts writes under the
shop's Origin / JSON / size checks. Off unless RECOMMNDR_ADMIN_PROXY is set."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.servers import admin_token

pytestmark = [pytest.mark.e2e]

ADMIN_BODY_CAP = 16_384  # bytes: the admin route's cap on a body (the route's MAX_BODY)
OUTSIDE = "127.0.0.3"  # a loopback address outside the API's admin allow-list (127.0.0.1/32, ::1)


def call(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    headers: dict[str, str] | None = None,
    source: str | None = None,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One request to the storefront from ``source`` (a local address; default: the system's pick):
    the status, the headers and the JSON answer ({} for none)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "", parts.port, timeout=60, source_address=(source, 0) if source else None
    )
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        raw = res.read()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, json.loads(raw) if raw else {}
    finally:
        conn.close()


def bearer(token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or admin_token()}"}


def write_headers(url: str, token: str | None = None) -> dict[str, str]:
    return {**bearer(token), "Origin": url, "Content-Type": "application/json"}


def assert_error(answer: tuple[int, dict[str, str], dict[str, Any]], status: int, code: str) -> str:
    got, _, body = answer
    assert (got, body.get("error", {}).get("code")) == (status, code), body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


def test_the_admin_route_is_off_unless_configured(storefront_url: str) -> None:
    answer = call(
        storefront_url, "POST", "/api/admin/models/rollback", b"{}", headers=write_headers(storefront_url)
    )
    assert "RECOMMNDR_ADMIN_PROXY" in assert_error(answer, 403, "admin_proxy_disabled")
    # and the shop's own proxy passes no admin endpoint either
    answer = call(
        storefront_url, "POST", "/api/models/rollback", b"{}", headers=write_headers(storefront_url)
    )
    assert_error(answer, 404, "not_found")


def test_a_rollback_with_a_token_from_inside_the_allow_list_is_forwarded(ops_storefront_url: str) -> None:
    body = json.dumps({"reason": "admin route test"}).encode()
    status, headers, answer = call(
        ops_storefront_url,
        "POST",
        "/api/admin/models/rollback",
        body,
        headers=write_headers(ops_storefront_url),
    )
    assert status == 200, answer
    assert answer["traffic"]["challenger"] == 0.0 and answer["reason"] == "admin route test"
    assert headers["cache-control"] == "no-store"


def test_without_a_bearer_token_the_api_is_not_called(ops_storefront_url: str) -> None:
    for headers in ({}, {"Authorization": "Basic b3BzOm9wcw=="}, {"Authorization": "Bearer not-a-jwt"},
                    {"Authorization": "Bearer " + "a" * 5000 + "." + "b" * 5000 + ".c"}):  # fmt: skip
        answer = call(ops_storefront_url, "GET", "/api/admin/models/control", headers=headers)
        # the route's own words: the API's would say "a bearer token is required"
        assert "an admin token is required" in assert_error(answer, 401, "unauthorized")


def test_a_token_signed_with_another_key_is_refused_by_the_api(ops_storefront_url: str) -> None:
    wrong = admin_token(secret="another-key-0123456789abcdef0123456789")
    answer = call(ops_storefront_url, "GET", "/api/admin/models/control", headers=bearer(wrong))
    assert "Signature verification failed" in assert_error(answer, 401, "unauthorized")


def test_a_caller_outside_the_allow_list_is_refused_whatever_it_claims(ops_storefront_url: str) -> None:
    """The API sees the relayed caller's real address: neither a forged X-Forwarded-For nor a forged
    peer stamp (lib/peer.ts) makes a caller from 127.0.0.3 look like 127.0.0.1."""
    forged = {"X-Forwarded-For": "127.0.0.1", "X-Recommndr-Peer": "127.0.0.1", "X-Real-IP": "127.0.0.1"}
    for method, path, body, head in (
        ("GET", "/api/admin/models/control", None, bearer()),
        (
            "POST",
            "/api/admin/models/rollback",
            b'{"reason": "from outside"}',
            write_headers(ops_storefront_url),
        ),
    ):
        answer = call(ops_storefront_url, method, path, body, headers={**head, **forged}, source=OUTSIDE)
        assert f"client {OUTSIDE} is not allowed" in assert_error(answer, 403, "forbidden"), path
    # the same caller without the forgeries: the same answer
    answer = call(ops_storefront_url, "GET", "/api/admin/models/control", headers=bearer(), source=OUTSIDE)
    assert f"client {OUTSIDE} is not allowed" in assert_error(answer, 403, "forbidden")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/admin/models/traffic"),
        ("POST", "/api/admin/models/fault"),
        ("PUT", "/api/admin/models/canary"),
        ("GET", "/api/admin/monitoring/window"),
        ("GET", "/api/admin/metrics"),
        ("GET", "/api/admin/models/canary/../../metrics"),
        ("POST", "/api/admin/models/control"),
        ("GET", "/api/admin/models/rollback"),
    ],
)
def test_only_the_ops_pages_endpoints_pass(ops_storefront_url: str, method: str, path: str) -> None:
    status, _, body = call(ops_storefront_url, method, path, b"{}", headers=write_headers(ops_storefront_url))
    # 404 from the route, or 405 for a method the route does not export (PUT): never the API's answer
    assert status in (404, 405), (status, body)
    if status == 404:
        assert body["error"]["code"] == "not_found", body


def test_writes_pass_the_shops_checks(ops_storefront_url: str) -> None:
    url = ops_storefront_url
    path = "/api/admin/models/rollback"
    no_origin = {**bearer(), "Content-Type": "application/json"}
    assert_error(call(url, "POST", path, b"{}", headers=no_origin), 403, "forbidden_origin")
    other_site = {**write_headers(url), "Origin": "http://evil.example"}
    assert_error(call(url, "POST", path, b"{}", headers=other_site), 403, "forbidden_origin")
    form = {**write_headers(url), "Content-Type": "text/plain"}
    assert_error(call(url, "POST", path, b"{}", headers=form), 415, "unsupported_media_type")
    big = json.dumps({"reason": "x" * ADMIN_BODY_CAP}).encode()
    assert_error(call(url, "POST", path, big, headers=write_headers(url)), 413, "payload_too_large")


def test_a_cross_site_preflight_is_not_granted(ops_storefront_url: str) -> None:
    status, headers, _ = call(
        ops_storefront_url,
        "OPTIONS",
        "/api/admin/models/rollback",
        headers={
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert status < 500
    assert not [h for h in headers if h.startswith("access-control-allow-")], headers
