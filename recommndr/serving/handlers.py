"""Errors to JSON, once: ``{"error": {"code", "message"}}`` with the error's own status. Routes
raise (an error of ``recommndr.errors``); none builds an error response itself."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

from recommndr.errors import RecommndrError

log = logging.getLogger(__name__)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def validation_message(errors: list[dict[str, object]], prefix: str = "") -> str:
    """``field.path: what is wrong`` for each pydantic error, joined."""
    parts = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body",))  # type: ignore[attr-defined]
        where = f"{prefix}{'.' if prefix and loc else ''}{loc}" or "body"
        parts.append(f"{where}: {e.get('msg')}")
    return "; ".join(parts)


def route_methods(routes: Iterable[BaseRoute]) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """Each route's path pattern and methods, for :func:`allowed_methods`."""
    return [(r.path_regex, frozenset(r.methods)) for r in routes
            if isinstance(r, Route) and r.methods]  # fmt: skip


def allowed_methods(request: Request) -> str | None:
    """Every method the request's path answers, for a 405's ``Allow`` (None without the app's
    table, ``app.state.route_methods``). Starlette's own ``Allow`` lists the methods of the
    first route whose path matched, which is wrong for a path that two routes serve (``GET``
    and ``PUT /models/canary``)."""
    table = getattr(request.app.state, "route_methods", None)
    if not table:
        return None
    path = request.scope["path"]
    methods = {m for pattern, ms in table if pattern.match(path) for m in ms}
    return ", ".join(sorted(methods)) if methods else None


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):  # FastAPI's own wording
            if isinstance(exc.__cause__, RecommndrError):  # the body limit, hit while FastAPI read it
                return error_response(exc.__cause__.http_status, exc.__cause__.code, str(exc.__cause__))
            return error_response(422, "invalid_request", "body: not valid JSON")
        code = {404: "not_found", 405: "method_not_allowed", 503: "not_ready"}.get(exc.status_code, "error")
        headers = exc.headers
        allow = allowed_methods(request) if exc.status_code == 405 else None
        if allow is not None:
            headers = {**(headers or {}), "Allow": allow}
        return error_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(RecommndrError)
    async def _ours(request: Request, exc: RecommndrError) -> JSONResponse:
        return error_response(exc.http_status, exc.code, str(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(500, "internal_error", "internal error; it has been logged")
