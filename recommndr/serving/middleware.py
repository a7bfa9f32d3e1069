"""Latency and error metrics per route, as a plain ASGI middleware (Starlette's
``@app.middleware("http")`` wraps every request in extra tasks and streams; this does not)."""

from __future__ import annotations

import time
from typing import Any

from recommndr.serving.metrics import ApiMetrics
from recommndr.serving.traffic import CHAMPION


class ObserveMiddleware:
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
            elif status >= 400:
                self.metrics.client_errors.labels(endpoint, str(status)).inc()
