"""Plain ASGI middleware (Starlette's ``@app.middleware("http")`` wraps every request in extra
tasks and streams; these do not): latency and error metrics per route, and the body limit."""

from __future__ import annotations

import time
from typing import Any

from recommndr.errors import PayloadTooLargeError
from recommndr.serving.handlers import error_response
from recommndr.serving.metrics import RECOMMEND_ENDPOINT, ApiMetrics
from recommndr.serving.traffic import CHAMPION


class ObserveMiddleware:
    """Latency and error metrics per route; for ``/recommendations`` also per variant (the route
    puts the variant in ``scope["state"]``)."""

    def __init__(self, app: Any, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            variant = scope.get("state", {}).get("variant", CHAMPION)
            self.metrics.latency.labels(endpoint, variant).observe(time.perf_counter() - t0)
            if status >= 500:
                self.metrics.errors.labels(endpoint).inc()
                if endpoint == RECOMMEND_ENDPOINT:  # the variant that failed the shopper
                    self.metrics.variant_errors.labels(variant).inc()
            elif status >= 400:
                self.metrics.client_errors.labels(endpoint, str(status)).inc()


class BodyLimitMiddleware:
    """Every request body capped at ``limit`` bytes, on every route (the admin ones included,
    whose bodies FastAPI reads before the caller is checked): over the declared Content-Length a
    413 before anything is read; a streamed body stops with a 413 as soon as its count passes."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name != b"content-length":
                continue
            if not value.isdigit():  # servers refuse these first; never trust it either way
                response = error_response(422, "invalid_request", "Content-Length: not a number of bytes")
            elif int(value) > self.limit:
                response = error_response(
                    413, "payload_too_large", f"body: at most {self.limit} bytes are accepted"
                )
            else:
                continue
            await response(scope, receive, send)
            return
        received = 0

        async def capped() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise PayloadTooLargeError(
                        f"body: over {self.limit} bytes; at most {self.limit} are accepted"
                    )
            return message

        await self.app(scope, capped, send)
