"""The loop's Functions in ``function_app.py``: registered with the triggers and bindings the host
reads, loadable by the Python worker's rules, started through the real durable client against a
stand-in for the host's HTTP API — and every path still reaches the FastAPI app."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import threading
import types
import typing
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest
from azure.durable_functions.models.utils import http_utils
from azure.functions.timer import TimerRequest

from recommndr.config import get_settings
from recommndr.lifecycle.activities import ACTIVITIES
from recommndr.lifecycle.workflow import ORCHESTRATORS

pytestmark = pytest.mark.unit
SECRET = "s" * 40
RPC = "/runtime/webhooks/durabletask/"


@pytest.fixture
def function_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, dict[str, Any]]]:
    """function_app.py imported afresh, and its Functions by name (get_functions: once per app)."""
    monkeypatch.setenv("RECOMMNDR_ARTIFACTS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("RECOMMNDR_EVENT_LOG_DIR", str(tmp_path / "events"))
    monkeypatch.setenv("FUNCTIONS_WORKER_RUNTIME", "python")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    import function_app

    module = importlib.reload(function_app)
    yield module, {f.get_function_name(): f for f in module.app.get_functions()}
    get_settings.cache_clear()


def test_every_orchestrator_activity_and_starter_is_registered(function_app) -> None:  # type: ignore[no-untyped-def]
    _module, fns = function_app
    kinds = {name: f.get_trigger().type for name, f in fns.items()}
    assert kinds == {
        "http_app_func": "httpTrigger",  # AsgiFunctionApp's catch-all: the API
        "drift_check": "timerTrigger",
        "loop_schedule": "timerTrigger",
        "loop_queue": "queueTrigger",
        **dict.fromkeys(ORCHESTRATORS, "orchestrationTrigger"),
        **dict.fromkeys(ACTIVITIES, "activityTrigger"),
    }
    assert fns["http_app_func"].get_trigger().route == "/{*route}"  # still the only HTTP route
    schedule = fns["loop_schedule"].get_trigger()
    assert schedule.schedule == "%RECOMMNDR_RETRAIN_SCHEDULE%" and schedule.run_on_startup is False
    queue = fns["loop_queue"].get_trigger()
    assert (queue.queue_name, queue.connection) == ("recommndr-loop", "AzureWebJobsStorage")
    for starter in ("loop_schedule", "loop_queue"):
        bindings = {b.type: b.name for b in fns[starter].get_bindings()}
        assert bindings["durableClient"] == "client"
    assert fns["retrain"].get_trigger().name == "context"
    assert fns["analyse"].get_trigger().name == "payload"


def test_the_worker_can_load_each_function(function_app) -> None:  # type: ignore[no-untyped-def]
    """The Python worker's checks when it indexes an app (azure_functions_worker/functions.py):
    the parameters are exactly the bindings' names (besides $return, and an unbound ``context``,
    which gets the invocation's func.Context), their annotations resolve and are types or generic
    aliases, a durable client's parameter is a str."""
    _module, fns = function_app
    for name, f in fns.items():
        user = f.get_user_function()
        params = set(inspect.signature(user).parameters)
        bound = {b.name for b in f.get_bindings() if b.name != "$return"}
        if "context" not in bound:
            params.discard("context")
        assert params == bound, name
        hints = typing.get_type_hints(user)
        for p in params:
            anno = hints.get(p)
            assert anno is None or isinstance(anno, type | types.GenericAlias), (name, p, anno)
        if any(b.type == "durableClient" for b in f.get_bindings()):
            assert hints["client"] is str and inspect.iscoroutinefunction(user), name


def _get(url: str) -> func.HttpRequest:
    return func.HttpRequest(method="GET", url=url, headers={}, body=b"")


def test_the_apis_paths_still_reach_the_api(function_app) -> None:  # type: ignore[no-untyped-def]
    module, _fns = function_app

    async def ask() -> dict[str, tuple[int, Any]]:
        out = {}
        for path in ("/health", "/models", "/openapi.json", "/retrain", "/rollback", "/loop_queue"):
            r = await module.app.middleware.handle_async(_get("http://localhost" + path), None)
            out[path] = (r.status_code, json.loads(r.get_body()))
        post = func.HttpRequest(method="POST", url="http://localhost/models/rollback", headers={}, body=b"{}")
        r = await module.app.middleware.handle_async(post, None)
        out["POST /models/rollback"] = (r.status_code, json.loads(r.get_body()))
        return out

    got = asyncio.run(ask())
    assert got["/health"] == (200, {"status": "ok"})
    assert got["/models"][0] == 200 and "models" in got["/models"][1]
    assert "/recommendations/{user_id}" in got["/openapi.json"][1]["paths"]
    for path in ("/retrain", "/rollback", "/loop_queue"):  # the Functions' names are no routes
        assert got[path] == (404, {"error": {"code": "not_found", "message": "Not Found"}})
    status, body = got["POST /models/rollback"]
    assert status in (401, 403) and body["error"]["code"]  # the API's admin check answered


# --- the starters, through the real durable client ------------------------------------------
class Host(ThreadingHTTPServer):
    """The Functions host's durable HTTP API (what the client calls, under ``rpcBaseUrl``) and
    the API's ``POST /models/rollback``, recording what they were asked."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.running: list[dict[str, Any]] = []  # instances the status query returns
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def client_json(self) -> str:
        """The durable client binding's value, as the host passes it."""
        return json.dumps({"taskHubName": "recommndr", "creationUrls": {}, "managementUrls": {},
                           "baseUrl": self.url + RPC, "rpcBaseUrl": self.url + RPC,
                           "requiredQueryStringParameters": ""})  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    server: Host

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.server.requests.append({"method": "GET", "path": url.path, "query": parse_qs(url.query)})
        self._answer(200, self.server.running)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else None
        self.server.requests.append({"method": "POST", "path": url.path, "body": body,
                                     "auth": self.headers.get("Authorization", "")})  # fmt: skip
        if url.path.startswith(RPC + "orchestrators/"):
            self._answer(202, {"id": url.path.rsplit("/", 1)[1]})
        else:
            self._answer(200, {"traffic": {"champion": 1.0}, "reason": body["reason"]})


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    server = Host()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    data = tmp_path / "shop"
    data.mkdir()
    monkeypatch.setenv("RECOMMNDR_LOOP_DATA_DIR", str(data))
    monkeypatch.setenv("RECOMMNDR_LOOP_API_URL", server.url)
    monkeypatch.setenv("RECOMMNDR_REGISTRY_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RECOMMNDR_ADMIN_JWT_SECRET", SECRET)
    monkeypatch.delenv("RECOMMNDR_ADMIN_TOKEN", raising=False)
    get_settings.cache_clear()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _run(fn: Any, **kwargs: Any) -> None:
    """One invocation as the worker makes it: the client binding as JSON text, in a fresh event
    loop (the library keeps one aiohttp session per process: closed before the loop ends)."""

    async def invoke() -> None:
        try:
            await fn(**kwargs)
        finally:
            await http_utils._close_session()

    asyncio.run(invoke())


def _starts(host: Host) -> list[dict[str, Any]]:
    return [r for r in host.requests if r["method"] == "POST" and r["path"].startswith(RPC)]


def test_the_schedule_starts_a_retrain_with_the_settings_input(function_app, host: Host) -> None:  # type: ignore[no-untyped-def]
    _module, fns = function_app
    _run(
        fns["loop_schedule"].get_user_function(),
        timer=TimerRequest(past_due=False),
        client=host.client_json(),
    )
    query, start = host.requests
    assert query["path"] == RPC + "instances/"
    assert query["query"] == {"instanceIdPrefix": ["retrain-"],
                              "runtimeStatus": ["Running,Pending,Suspended,ContinuedAsNew"]}  # fmt: skip
    assert start["path"].startswith(RPC + "orchestrators/retrain/retrain-")
    cfg = json.loads(start["body"])  # the client sends the input as JSON text
    assert (cfg["trigger"], cfg["by"], cfg["api"]) == ("schedule", "schedule", host.url)
    assert cfg["rules"]["steps"] == [0.05, 0.25, 0.5, 1.0]


def test_a_queued_retrain_is_skipped_while_one_runs(function_app, host: Host) -> None:  # type: ignore[no-untyped-def]
    _module, fns = function_app
    host.running = [
        {"name": "retrain", "instanceId": "retrain-20261201T030000Z-00000000", "runtimeStatus": "Running"}
    ]
    msg = func.QueueMessage(
        id="m1", body=b'{"action": "retrain", "reason": "drift on price", "by": "alertmanager"}'
    )
    _run(fns["loop_queue"].get_user_function(), msg=msg, client=host.client_json())
    assert _starts(host) == [] and [r["method"] for r in host.requests] == ["GET"]


def test_a_queued_rollback_goes_to_the_running_canary(function_app, host: Host) -> None:  # type: ignore[no-untyped-def]
    _module, fns = function_app
    host.running = [
        {"name": "retrain", "instanceId": "retrain-20261201T030000Z-00000000", "runtimeStatus": "Running"}
    ]
    msg = func.QueueMessage(
        id="m2", body=b'{"action": "rollback", "reason": "p95 over 300 ms", "by": "alertmanager"}'
    )
    _run(fns["loop_queue"].get_user_function(), msg=msg, client=host.client_json())
    assert _starts(host) == []
    (asked,) = [r for r in host.requests if r["path"] == "/models/rollback"]
    assert asked["body"] == {"reason": "p95 over 300 ms (by alertmanager)"}
    assert asked["auth"].startswith("Bearer ey")  # an admin token minted from the API's secret


def test_a_queued_rollback_with_no_canary_starts_the_rollback(function_app, host: Host) -> None:  # type: ignore[no-untyped-def]
    _module, fns = function_app
    msg = func.QueueMessage(id="m3", body=b'{"action": "rollback", "reason": "bad night", "by": "admin:ana"}')
    _run(fns["loop_queue"].get_user_function(), msg=msg, client=host.client_json())
    (start,) = _starts(host)
    assert start["path"].startswith(RPC + "orchestrators/rollback/rollback-")
    cfg = json.loads(start["body"])
    assert (cfg["acute"], cfg["share"], cfg["reason"], cfg["by"]) == (True, 0.0, "bad night", "admin:ana")


def test_a_bad_queue_message_is_dropped_with_its_reason(function_app, host: Host, caplog) -> None:  # type: ignore[no-untyped-def]
    _module, fns = function_app
    msg = func.QueueMessage(id="m4", body=b'{"action": "deploy"}')
    with caplog.at_level("ERROR", logger="orchestrations.loop"):
        _run(fns["loop_queue"].get_user_function(), msg=msg, client=host.client_json())
    assert host.requests == []  # nothing asked of the host or the API
    assert "loop message m4 dropped" in caplog.text and "action" in caplog.text
