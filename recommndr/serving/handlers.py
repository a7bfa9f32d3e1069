"""Errors to JSON, once: ``{"error": {"code", "message"}}`` with the error's own status. Routes
raise (an error of ``recommndr.errors``); none builds an error response itself."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)  # 405 keeps Allow

    @app.exception_handler(RecommndrError)
    async def _ours(request: Request, exc: RecommndrError) -> JSONResponse:
        return error_response(exc.http_status, exc.code, str(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(500, "internal_error", "internal error; it has been logged")
