"""The FastAPI app: every endpoint of CONTRACT.md that the serving issue has built so far.

Models load once at start-up (hash-checked, warmed) before ``/ready`` turns 200; requests touch
only memory, except ``POST /events``, which waits for its group-committed fsync. Errors are JSON
``{"error": {"code", "message"}}``: 4xx for the caller's mistakes, naming the field.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from recommndr import __version__
from recommndr.config import get_settings
from recommndr.errors import RecommndrError
from recommndr.features.online import OnlineFeatures, open_online_store
from recommndr.registry.artifacts import no_model_error
from recommndr.serving.auth import check_admin
from recommndr.serving.events import EventIn, EventLog
from recommndr.serving.metrics import ApiMetrics
from recommndr.serving.model import Recommendation, ServingModel
from recommndr.serving.sources import FolderSource, ModelSource, RegistrySource, StoreSource

log = logging.getLogger(__name__)


class TrafficIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    challenger: float = Field(ge=0.0, le=1.0, description="share of users served by the challenger")


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("manual", max_length=500)


VARIANT = "champion"
CHALLENGER = "challenger"
MAX_EVENTS_PER_REQUEST = 1000
K = Annotated[int, Query(ge=1, le=100, description="how many items (1-100)")]


class State:
    def __init__(self, artifacts: Path, event_dir: Path, flush_ms: float) -> None:
        self.artifacts = artifacts
        self.model: ServingModel | None = None  # the champion
        self.challenger: ServingModel | None = None
        self.traffic: dict[str, float] = {VARIANT: 1.0}  # replaced whole, never mutated
        self.digest: str | None = None  # of the champion's manifest
        self.challenger_digest: str | None = None
        self.traffic_mtime = 0  # of the shared traffic file last applied
        self.source: ModelSource | None = None
        self.not_ready = "models are loading"
        self.events = EventLog(event_dir, flush_ms)
        self.metrics = ApiMetrics()
        self.online: OnlineFeatures | None = None
        self.pool: ThreadPoolExecutor | None = None


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class ItemOut(BaseModel):
    item_id: int
    score: float
    reason: str = Field(
        description='why it is shown ("bought together with ...", "popular in ...", "trending")'
    )


class RecommendationsOut(BaseModel):
    user_id: int
    model_version: str
    variant: str = Field(description="the A/B variant that served the list (send it back with events)")
    cold_start: bool
    degraded: list[str] = Field(description="fallbacks used: ranker_unavailable, model_unavailable, ...")
    items: list[ItemOut]


class ItemListOut(BaseModel):
    item_id: int
    model_version: str
    items: list[ItemOut]


class CategoryListOut(BaseModel):
    category: str | None
    model_version: str
    items: list[ItemOut]


def _json(body: dict[str, Any]) -> Response:
    """A JSON response without FastAPI's generic encoder (the hot paths build plain JSON types)."""
    return Response(orjson.dumps(body), media_type="application/json")


def _items(recs: list[Recommendation]) -> list[dict[str, Any]]:
    return [{"item_id": r.item_id, "score": round(r.score, 6), "reason": r.reason} for r in recs]


class ObserveMiddleware:
    """Latency and error metrics per route, as a plain ASGI middleware (Starlette's
    ``@app.middleware("http")`` wraps every request in extra tasks and streams; this does not)."""

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
            variant = scope.get("state", {}).get("variant", VARIANT)
            self.metrics.latency.labels(endpoint, variant).observe(time.perf_counter() - t0)
            if status >= 500:
                self.metrics.errors.labels(endpoint).inc()
            elif status >= 400:
                self.metrics.client_errors.labels(endpoint, str(status)).inc()


def create_app(artifacts: Path | None = None, event_log_dir: Path | None = None) -> FastAPI:
    settings = get_settings()
    state = State(
        artifacts or settings.artifacts_dir, event_log_dir or settings.event_log_dir, settings.event_flush_ms
    )

    def make_source() -> ModelSource:
        if artifacts is not None:
            return FolderSource(artifacts, settings.challenger_artifacts_dir)
        if settings.registry_uri:
            return RegistrySource(settings.registry_uri, settings.registry_model, settings.artifact_cache_dir)
        if settings.blob_connection_string and settings.artifact_name:
            from recommndr.registry.store import BlobStore

            store = BlobStore(settings.blob_connection_string, settings.blob_container)
            return StoreSource(store, settings.artifact_name, settings.challenger_artifact_name,
                               settings.artifact_cache_dir)  # fmt: skip
        return FolderSource(settings.artifacts_dir, settings.challenger_artifacts_dir)

    def source() -> ModelSource:
        if state.source is None:
            state.source = make_source()
        return state.source

    def manifest_digest(path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
        except OSError:
            return None

    def refresh_champion(first: bool = False) -> bool:
        """Hot swap: load a changed champion beside the serving one, then replace it with one
        assignment; requests in flight finish on the model they started with. At start-up a
        bundle whose models fail to load may still serve popularity (``/ready`` says why)."""
        path = source().champion()
        digest = manifest_digest(path)
        if digest is None and first:
            raise no_model_error(path)
        if digest is None or digest == state.digest:
            return False
        new = ServingModel.load(path, allow_fallback=first)  # hash-checked and warmed first
        old, state.model, state.artifacts, state.digest = state.model, new, path, digest
        if old is not None:
            state.metrics.model_info.labels(VARIANT, old.version).set(0)
        state.metrics.model_info.labels(VARIANT, new.version).set(1)
        if new.fallback is None:
            state.metrics.ready.set(1)
        else:
            state.not_ready = f"serving popularity only: {new.fallback}"
        if old is not None:
            log.warning("hot-swapped the champion: %s -> %s", old.version, new.version)
        return True

    def refresh_challenger() -> bool:
        """Load, replace or drop the challenger when its bundle changes (the same bundle as the
        champion's is no challenger); a new challenger keeps the current share of traffic."""
        path = source().challenger()
        digest = manifest_digest(path)
        if digest == state.digest:
            digest = None
        if digest == state.challenger_digest:
            return False
        old = state.challenger
        if digest is None or path is None:
            state.challenger, state.challenger_digest = None, None
            state.traffic = {VARIANT: 1.0}
        else:
            new = ServingModel.load(path)
            share = state.traffic.get(CHALLENGER, 0.0) if old is not None else settings.challenger_traffic
            state.challenger, state.challenger_digest = new, digest
            state.traffic = {VARIANT: 1.0 - share, CHALLENGER: share}
            state.metrics.model_info.labels(CHALLENGER, new.version).set(1)
        if old is not None:
            state.metrics.model_info.labels(CHALLENGER, old.version).set(0)
        log.warning("challenger: %s -> %s", old.version if old else None,
                    state.challenger.version if state.challenger else None)  # fmt: skip
        return True

    def save_split(share: float, by: str, reason: str) -> None:
        """The admin's split, shared by every worker process and kept across restarts (atomic)."""
        path = settings.traffic_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"challenger": share, "by": by, "reason": reason, "at": time.time()}))
        tmp.replace(path)
        state.traffic_mtime = path.stat().st_mtime_ns

    def share_split(share: float, by: str, reason: str) -> bool:
        """Save the split for the other workers; this worker has applied it already either way."""
        try:
            save_split(share, by, reason)
            return True
        except OSError as exc:
            log.error("traffic split applied here but not saved to %s: %s", settings.traffic_file, exc)
            return False

    def load_split() -> None:
        """Apply the shared split file if it changed (other workers' admin calls, a restart)."""
        try:
            mtime = settings.traffic_file.stat().st_mtime_ns
        except OSError:
            return
        if mtime == state.traffic_mtime:
            return
        state.traffic_mtime = mtime
        try:
            share = float(json.loads(settings.traffic_file.read_text())["challenger"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("ignoring the traffic file %s: %s", settings.traffic_file, exc)
            return
        if state.challenger is not None and 0.0 <= share <= 1.0:
            state.traffic = {VARIANT: 1.0 - share, CHALLENGER: share}

    async def sync_split() -> None:
        while True:
            await asyncio.sleep(1.0)
            load_split()

    async def watch() -> None:
        while True:
            await asyncio.sleep(settings.reload_interval_s)
            for refresh in (refresh_champion, refresh_challenger):
                try:
                    await asyncio.to_thread(refresh)
                except Exception:  # a half-written or bad bundle: keep serving the current one
                    log.exception("new %s not loaded; the current one keeps serving", refresh.__name__[8:])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await asyncio.to_thread(refresh_champion, True)
        except RecommndrError as exc:
            state.not_ready = str(exc)
            log.error("no model loaded: %s", exc)
        except Exception as exc:  # the store unreachable, say: not ready, and why
            state.not_ready = f"{type(exc).__name__}: {exc}"
            log.exception("no model loaded")
        if state.model is not None:
            try:
                await asyncio.to_thread(refresh_challenger)
            except Exception as exc:
                log.error("challenger not loaded (the champion serves everyone): %s", exc)
        if settings.online_store != "off":
            try:
                store = open_online_store(
                    settings.online_store,
                    settings.online_store_path,
                    settings.redis_url,
                    settings.online_timeout_ms / 1000,
                )
                state.online = OnlineFeatures(store) if store is not None else None
            except Exception as exc:  # e.g. an unwritable path: serve batch features only
                log.error("online store %s not opened: %s", settings.online_store, exc)
        load_split()
        if settings.recommend_threads > 0:
            state.pool = ThreadPoolExecutor(settings.recommend_threads, thread_name_prefix="recommend")
        await state.events.start()
        watcher = asyncio.create_task(watch()) if settings.reload_interval_s > 0 else None
        splitter = asyncio.create_task(sync_split())
        yield
        splitter.cancel()
        if watcher is not None:
            watcher.cancel()
        await state.events.stop()
        if state.pool is not None:
            state.pool.shutdown(wait=True)
        if state.online is not None:
            state.online.close()
        state.metrics.close()

    app = FastAPI(
        title="Recommndr API",
        version=__version__,
        description="Two-stage e-commerce recommendations (ALS retrieval -> LightGBM ranking in ONNX Runtime).",
        lifespan=lifespan,
    )
    app.state.recommndr = state

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body",)) or "body"
            parts.append(f"{loc}: {e.get('msg')}")
        return _error(422, "invalid_request", "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 503: "not_ready"}.get(exc.status_code, "error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RecommndrError)
    async def _ours(request: Request, exc: RecommndrError) -> JSONResponse:
        return _error(exc.http_status, exc.code, str(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal_error", "internal error; it has been logged")

    app.add_middleware(ObserveMiddleware, metrics=state.metrics)

    def model() -> ServingModel:
        if state.model is None:
            raise StarletteHTTPException(503, f"no model is loaded: {state.not_ready}")
        return state.model

    def item_index(m: ServingModel, item_id: int) -> int:
        idx = m.catalog.index_of(item_id)
        if idx < 0:
            raise StarletteHTTPException(404, f"unknown item_id {item_id}")
        return idx

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], responses={503: {"description": "models not loaded"}})
    async def ready() -> Any:
        if state.model is None or state.model.fallback is not None:
            return _error(503, "not_ready", state.not_ready)
        online = "off" if state.online is None else state.online.store.name
        if state.online is not None and not state.online.available:
            online = f"unavailable ({state.online.last_error}); serving batch features"
        return {"status": "ready", "model_version": state.model.version, "online_store": online}

    def assign(user_id: int) -> tuple[str, ServingModel]:
        """Champion or challenger by a stable hash of the user id and the current split."""
        champion = model()
        share = state.traffic.get(CHALLENGER, 0.0)
        if state.challenger is None or share <= 0.0:
            return VARIANT, champion
        h = int.from_bytes(hashlib.blake2b(str(user_id).encode(), digest_size=8).digest(), "big") / 2**64
        return (CHALLENGER, state.challenger) if h < share else (VARIANT, champion)

    @app.get("/recommendations/{user_id}", tags=["recommendations"], response_model=RecommendationsOut)
    async def recommendations(request: Request, user_id: int, k: K = 10, category: str | None = None) -> Any:
        variant, m = assign(user_id)
        request.state.variant = variant

        def work() -> tuple[list[Recommendation], bool, str | None, bool]:
            online, answered = state.online.get(user_id) if state.online is not None else (None, True)
            return (*m.recommend(user_id, k, category, online), answered)

        if state.pool is None:
            recs, cold, fallback, answered = work()
        else:  # off the event loop: it keeps parsing requests, and slow ones wait their turn fairly
            recs, cold, fallback, answered = await asyncio.get_running_loop().run_in_executor(
                state.pool, work
            )
        degraded = [fallback] if fallback else []
        if not answered:
            degraded.append("online_features_unavailable")
        state.metrics.served.labels(variant, "cold_start" if cold else "two_stage").inc()
        for reason in degraded:
            state.metrics.degraded.labels(reason).inc()
        return _json({"user_id": user_id, "model_version": m.version, "variant": variant, "cold_start": cold,
                      "degraded": degraded, "items": _items(recs)})  # fmt: skip

    @app.get("/similar_items/{item_id}", tags=["recommendations"], response_model=ItemListOut)
    async def similar_items(item_id: int, k: K = 10) -> Any:
        m = model()
        recs = m.similar(item_index(m, item_id), k)
        return _json({"item_id": item_id, "model_version": m.version, "items": _items(recs)})

    @app.get("/frequently_bought_together/{item_id}", tags=["recommendations"], response_model=ItemListOut)
    async def frequently_bought_together(item_id: int, k: K = 5) -> Any:
        m = model()
        recs = m.frequently_bought_together(item_index(m, item_id), k)
        return _json({"item_id": item_id, "model_version": m.version, "items": _items(recs)})

    @app.get("/popular", tags=["recommendations"], response_model=CategoryListOut)
    async def popular(k: K = 10, category: str | None = None) -> Any:
        m = model()
        recs = m.popular_recs(k, m.catalog.category_mask(category) if category else None)
        return _json({"category": category, "model_version": m.version, "items": _items(recs)})

    @app.get("/trending", tags=["recommendations"], response_model=CategoryListOut)
    async def trending(k: K = 10, category: str | None = None) -> Any:
        """Products rising fastest: last week's daily events against the month's (at least 3 last week)."""
        m = model()
        mask = m.catalog.category_mask(category) if category else None
        items, scores = m.trending(k, mask)
        return _json({"category": category, "model_version": m.version, "items": [
            {"item_id": int(m.catalog.item_ids[i]), "score": round(float(s), 6), "reason": "trending"}
            for i, s in zip(items, scores, strict=True)
        ]})  # fmt: skip

    @app.get("/products", tags=["catalogue"])
    async def products(
        ids: Annotated[
            str | None,
            Query(
                max_length=2000,
                description="comma-separated item ids (at most 100): these products, in order",
            ),
        ] = None,
        category: str | None = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=100)] = 24,
        min_price: Annotated[float | None, Query(ge=0)] = None,
        max_price: Annotated[float | None, Query(ge=0)] = None,
    ) -> Any:
        if ids is not None:
            try:
                wanted = [int(x) for x in ids.split(",") if x.strip()]
            except ValueError:
                return _error(422, "invalid_request", "query.ids: comma-separated integers expected")
            if not 1 <= len(wanted) <= 100:
                return _error(422, "invalid_request", "query.ids: between 1 and 100 ids")
            m = model()
            found = [(i, m.catalog.index_of(i)) for i in wanted]
            rows = [m.catalog.product(j) for _, j in found if j >= 0]
            missing = [i for i, j in found if j < 0]
            return {"total": len(rows), "page": 1, "page_size": len(rows), "items": rows, "missing": missing}
        if min_price is not None and max_price is not None and min_price > max_price:
            return _error(422, "invalid_request", "min_price: must not exceed max_price")
        total, rows = model().catalog.query(category, q, page, page_size, min_price, max_price)
        return {"total": total, "page": page, "page_size": page_size, "items": rows}

    @app.get("/categories", tags=["catalogue"])
    async def categories() -> dict[str, Any]:
        """The category tree (levels 1 and 2) with product counts."""
        return {"categories": model().catalog.categories()}

    @app.get("/shoppers", tags=["catalogue"])
    async def shoppers(n: Annotated[int, Query(ge=1, le=20)] = 6) -> dict[str, Any]:
        """Real shoppers with history, one per favourite category, for the storefront's demo switcher."""
        return {"shoppers": model().shoppers(n)}

    @app.get("/products/{item_id}", tags=["catalogue"])
    async def product(item_id: int) -> dict[str, Any]:
        m = model()
        return m.catalog.product(item_index(m, item_id))

    event_schema = EventIn.model_json_schema()

    @app.post(
        "/events",
        status_code=202,
        tags=["events"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"oneOf": [
                    event_schema, {"type": "array", "items": event_schema, "maxItems": MAX_EVENTS_PER_REQUEST}
                ]}}},
            }
        },
    )  # fmt: skip
    async def events(request: Request) -> Any:
        """One event or a list of at most 1000; 202 once they are durably stored."""
        try:
            body = await request.json()
        except ValueError:
            return _error(422, "invalid_request", "body: not valid JSON")
        batch = body if isinstance(body, list) else [body]
        if not batch:
            return _error(422, "invalid_request", "body: the list of events is empty")
        if len(batch) > MAX_EVENTS_PER_REQUEST:
            return _error(
                413, "too_many_events", f"body: at most {MAX_EVENTS_PER_REQUEST} events per request"
            )
        parsed: list[EventIn] = []
        problems: list[str] = []
        for i, raw in enumerate(batch):
            where = f"events[{i}]" if isinstance(body, list) else "event"
            try:
                parsed.append(EventIn.model_validate(raw))
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(p) for p in err["loc"])
                    problems.append(f"{where}{'.' + loc if loc else ''}: {err['msg']}")
        if problems:
            return _error(422, "invalid_event", "; ".join(problems[:20]))
        try:
            ids = await state.events.append(parsed)
        except OSError as exc:  # nothing was acknowledged: tell the caller to retry
            log.error("event log write failed: %s", exc)
            return _error(503, "events_unavailable", f"the events were not stored ({exc.strerror}); retry")
        if state.online is not None:  # the events are durable already; a store error only degrades
            now_us = time.time_ns() // 1000
            await asyncio.to_thread(
                state.online.record,
                [(e.user_id, e.item_id, e.event_type,
                  int(e.ts.timestamp() * 1e6) if e.ts is not None else now_us) for e in parsed],
            )  # fmt: skip
        for e in parsed:
            state.metrics.events.labels(e.event_type, e.variant or "none").inc()
        return JSONResponse({"accepted": len(ids), "event_ids": ids}, status_code=202)

    @app.get("/models", tags=["ops"])
    async def models() -> dict[str, Any]:
        loaded = [{"variant": VARIANT, **state.model.info()}] if state.model else []
        if state.challenger is not None:
            loaded.append({"variant": CHALLENGER, **state.challenger.info()})
        return {"models": loaded, "traffic": state.traffic if loaded else {}}

    def admin(request: Request) -> dict[str, Any]:
        return check_admin(
            request.headers.get("authorization"),
            request.client.host if request.client else None,
            settings.admin_jwt_secret,
            settings.admin_jwt_issuer,
            settings.admin_jwt_audience,
            settings.admin_allowed_networks,
        )

    @app.post("/models/traffic", tags=["admin"])
    async def set_traffic(request: Request, body: TrafficIn) -> dict[str, Any]:
        """Admin: the challenger's share of users (the champion serves the rest)."""
        claims = admin(request)
        if state.challenger is None and body.challenger > 0:
            return _error(409, "no_challenger", "no challenger is loaded: cannot send it traffic")  # type: ignore[return-value]
        state.traffic = {VARIANT: 1.0 - body.challenger, CHALLENGER: body.challenger}
        saved = share_split(body.challenger, str(claims.get("sub", "?")), "set")
        log.warning("traffic split set to %s by %s", state.traffic, claims.get("sub", "?"))
        return {"traffic": state.traffic, "shared": saved}

    @app.post("/models/rollback", tags=["admin"])
    async def rollback(request: Request, body: RollbackIn | None = None) -> dict[str, Any]:
        """Admin: send every user back to the champion."""
        claims = admin(request)
        state.traffic = {VARIANT: 1.0, CHALLENGER: 0.0} if state.challenger is not None else {VARIANT: 1.0}
        reason = body.reason if body else "manual"
        saved = share_split(0.0, str(claims.get("sub", "?")), reason)
        log.warning("rolled back to the champion by %s: %s", claims.get("sub", "?"), reason)
        return {"traffic": state.traffic, "reason": reason, "shared": saved}

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
