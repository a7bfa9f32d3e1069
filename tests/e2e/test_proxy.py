"""The storefront's ``/api`` proxy (frontend/app/api/[...path]/route.ts) by raw HTTP, in front of the
real API: a write must come from the shop's own pages (an Origin header naming this host), be JSON
and fit in 1 MiB; anything else is refused before the API sees it, in the API's error shape. The
body cap holds by Content-Length and while reading: a body is never waited for, nor read, past it."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

pytestmark = [pytest.mark.e2e]

CAP = 1_048_576  # bytes: the most a POST body may hold (the API's own limit)
STALL_S = 20.0  # how long a test waits for an answer to a body that is never finished
# a user outside the tiny shop, so these events change no list the browser tests check
EVENT = {"user_id": 987_654_321, "item_id": 1, "event_type": "view"}
BODY = json.dumps(EVENT).encode()


def post(
    url: str,
    body: bytes,
    *,
    origin: str | None,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` to the proxy's /api/events (with a Content-Length); the status and JSON answer."""
    parts = urlsplit(url)
    head = dict(headers or {})
    if origin is not None:
        head["Origin"] = origin
    if content_type is not None:
        head["Content-Type"] = content_type
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        conn.request("POST", "/api/events", body=body, headers=head)
        res = conn.getresponse()
        return res.status, json.loads(res.read())
    finally:
        conn.close()


def stalled(url: str, headers: dict[str, str], sent: bytes) -> tuple[int, dict[str, Any]]:
    """Send a POST's head and ``sent`` of its body, never the rest; the answer, or a failure if the
    proxy waits for the rest of the body instead of answering."""
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}"
    lines = ["POST /api/events HTTP/1.1", f"Host: {host}", f"Origin: {url}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=STALL_S) as sock:
        sock.sendall(head + sent)
        res = http.client.HTTPResponse(sock)
        try:
            res.begin()
            return res.status, json.loads(res.read())
        except TimeoutError:
            pytest.fail(f"no answer in {STALL_S:.0f} s: the proxy waits for a body past the {CAP}-byte cap")


def assert_error(answer: tuple[int, dict[str, Any]], status: int, code: str) -> None:
    got, body = answer
    assert (got, body.get("error", {}).get("code")) == (status, code), body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


def test_a_same_origin_json_event_is_forwarded(storefront_url: str) -> None:
    status, body = post(storefront_url, BODY, origin=storefront_url)
    assert status == 202, body
    assert body["accepted"] == 1


def test_a_json_content_type_with_parameters_is_forwarded(storefront_url: str) -> None:
    status, body = post(
        storefront_url, BODY, origin=storefront_url, content_type="Application/JSON; charset=UTF-8"
    )
    assert status == 202, body


def test_a_body_of_exactly_the_cap_is_forwarded(storefront_url: str) -> None:
    body = BODY + b" " * (CAP - len(BODY))  # valid JSON, padded with white space to the cap
    assert len(body) == CAP
    status, answer = post(storefront_url, body, origin=storefront_url)
    assert status == 202, answer


def test_the_origin_of_a_forwarding_proxy_is_the_forwarded_host(storefront_url: str) -> None:
    # behind a reverse proxy (Azure Static Web Apps), the browser's Origin names the public host
    status, body = post(
        storefront_url, BODY, origin="https://shop.example", headers={"X-Forwarded-Host": "shop.example"}
    )
    assert status == 202, body


@pytest.mark.parametrize(
    "origin",
    [
        None,  # no Origin header: not a request of the shop's pages
        "http://evil.example",
        "null",  # an opaque origin (sandboxed frame, file:)
        "http://127.0.0.1:1",  # this host on another port is another origin
        "not a url",
    ],
)
def test_a_write_from_another_or_no_origin_is_refused(storefront_url: str, origin: str | None) -> None:
    assert_error(post(storefront_url, BODY, origin=origin), 403, "forbidden_origin")


def test_a_forwarded_host_does_not_admit_another_origin(storefront_url: str) -> None:
    answer = post(
        storefront_url, BODY, origin="https://evil.example", headers={"X-Forwarded-Host": "shop.example"}
    )
    assert_error(answer, 403, "forbidden_origin")


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",  # what a cross-site form or a no-cors fetch may send without a preflight
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
    ],
)
def test_a_write_that_is_not_json_is_refused(storefront_url: str, content_type: str | None) -> None:
    answer = post(storefront_url, BODY, origin=storefront_url, content_type=content_type)
    assert_error(answer, 415, "unsupported_media_type")


def test_a_body_one_byte_over_the_cap_is_refused(storefront_url: str) -> None:
    body = BODY + b" " * (CAP + 1 - len(BODY))
    assert_error(post(storefront_url, body, origin=storefront_url), 413, "payload_too_large")


def test_an_oversized_content_length_is_refused_before_the_body_arrives(storefront_url: str) -> None:
    # the head declares 64 MiB; only 1 KiB follows: the answer must not wait for the rest
    answer = stalled(storefront_url, {"Content-Length": str(64 * CAP)}, b"[" + b" " * 1023)
    assert_error(answer, 413, "payload_too_large")


def test_a_chunked_body_is_refused_once_it_passes_the_cap(storefront_url: str) -> None:
    # no Content-Length: chunks past the cap, and the body never ends (no last chunk)
    chunk = b" " * 65_536
    count = CAP // len(chunk) + 2
    sent = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(count))
    answer = stalled(storefront_url, {"Transfer-Encoding": "chunked"}, b"1\r\n[\r\n" + sent)
    assert_error(answer, 413, "payload_too_large")
