"""Servers for the simulator's tests: the real API, or a stand-in that speaks its contract and
misbehaves on purpose, each under uvicorn in a thread on a free loopback port."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.ports import free_port


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1 (its lifespan run), its base URL while the block runs."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"the server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@dataclass
class StubApi:
    """The API's contract as the simulator uses it (``/ready``, ``/popular``,
    ``/recommendations/{user_id}``, ``POST /events``), with random lists from ``item_ids`` and
    faults on purpose: every ``fail_every``-th list a 500, every ``slow_every``-th ``slow_s``
    late, every ``bad_every``-th a 200 that is no list, every ``events_fail_every``-th event post
    a 503; ``delay_s`` on every list. It records what arrived and when."""

    item_ids: list[int]
    fail_every: int = 0
    slow_every: int = 0
    slow_s: float = 0.0
    bad_every: int = 0
    events_fail_every: int = 0
    delay_s: float = 0.0
    variant: str = "champion"
    seed: int = 0
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each list request
    users: list[int] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    events: list[dict[str, Any]] = field(default_factory=list)  # accepted
    event_posts: Counter[int] = field(default_factory=Counter)  # status -> posts
    refused_events: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    async def _ready(self, request: Request) -> Response:
        return JSONResponse({"status": "ready", "model_version": "stub"})

    async def _popular(self, request: Request) -> Response:
        k = int(request.query_params.get("k", "10"))
        return JSONResponse({"items": [{"item_id": i, "score": 1.0} for i in self.item_ids[:k]]})

    async def _recommendations(self, request: Request) -> Response:
        n = len(self.arrivals) + 1
        self.arrivals.append(time.monotonic())
        self.users.append(int(request.path_params["user_id"]))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.fail_every and n % self.fail_every == 0:
                self.answers["500"] += 1
                return JSONResponse({"error": {"code": "injected", "message": "boom"}}, status_code=500)
            slow = bool(self.slow_every and n % self.slow_every == 0)
            if slow:  # answered after the client's timeout: counted as slow, not as a list
                self.answers["slow"] += 1
                await asyncio.sleep(self.slow_s)
            elif self.bad_every and n % self.bad_every == 0:
                self.answers["bad"] += 1
                return JSONResponse({"not": "a list"})
            else:
                self.answers["200"] += 1
            k = int(request.query_params.get("k", "10"))
            items = self.rng.choice(self.item_ids, size=k, replace=False)
            return JSONResponse({"user_id": self.users[-1], "model_version": "stub", "variant": self.variant,
                                 "items": [{"item_id": int(i), "score": 0.0} for i in items]})  # fmt: skip
        finally:
            self.in_flight -= 1

    async def _events(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        m = sum(self.event_posts.values()) + 1
        if self.events_fail_every and m % self.events_fail_every == 0:
            self.event_posts[503] += 1
            self.refused_events += len(body)
            return JSONResponse(
                {"error": {"code": "events_unavailable", "message": "retry"}}, status_code=503
            )
        self.event_posts[202] += 1
        self.events.extend(body)
        return JSONResponse({"accepted": len(body)}, status_code=202)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/ready", self._ready),
            Route("/popular", self._popular),
            Route("/recommendations/{user_id:int}", self._recommendations),
            Route("/events", self._events, methods=["POST"]),
        ])  # fmt: skip
