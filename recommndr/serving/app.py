"""The FastAPI app, assembled from rooms: the serving state (``runtime``: model slots and hot swap,
the traffic split, the event log, online features), dependencies (``deps``), one router per group
of routes (``routes/``), the error handlers (``handlers``) and the metrics middleware.

Models load once at start-up (hash-checked, warmed) before ``/ready`` turns 200; requests touch
only memory, except ``POST /events``, which waits for its group-committed fsync. Errors are JSON
``{"error": {"code", "message"}}``: 4xx for the caller's mistakes, naming the field.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from recommndr import __version__
from recommndr.config import get_settings
from recommndr.serving import handlers
from recommndr.serving.middleware import BodyLimitMiddleware, ObserveMiddleware
from recommndr.serving.routes import admin, alerts, canary, catalogue, events, ops, recommend, retrain
from recommndr.serving.runtime import ServingState


def create_app(artifacts: Path | None = None, event_log_dir: Path | None = None) -> FastAPI:
    """The API; ``artifacts`` (a folder) overrides the configured model source."""
    state = ServingState(get_settings(), artifacts, event_log_dir)
    if state.settings.applicationinsights_connection_string:  # before FastAPI(): it instruments the class
        from recommndr.serving.telemetry import enable_azure_monitor

        enable_azure_monitor(state.metrics, state.settings.applicationinsights_connection_string)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        yield
        await state.stop()

    app = FastAPI(
        title="Recommndr API",
        version=__version__,
        description="Two-stage e-commerce recommendations (ALS retrieval -> LightGBM ranking in ONNX Runtime).",
        lifespan=lifespan,
    )
    app.state.recommndr = state
    handlers.install(app)
    app.add_middleware(BodyLimitMiddleware, limit=state.settings.max_event_body_bytes)
    app.add_middleware(ObserveMiddleware, metrics=state.metrics)  # outermost: it sees every answer
    rooms = (ops, recommend, catalogue, events, admin, canary, retrain, alerts)
    for room in rooms:
        app.include_router(room.router)
    # a 405 names every method of its path (handlers.allowed_methods)
    app.state.route_methods = handlers.route_methods(
        [*app.router.routes, *(route for room in rooms for route in room.router.routes)]
    )
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = generate()  # cached by FastAPI in app.openapi_schema
            events.document_body(doc)
            alerts.document_body(doc)
            canary.document_body(doc)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]
    return app
