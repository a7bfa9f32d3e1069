"""The loop on one machine: the same orchestrator functions (:mod:`recommndr.lifecycle.workflow`)
and the same activities, run by the Durable Task SDK (``durabletask``) on its in-memory backend —
real orchestration replay over gRPC, real timers — through a thin adapter of its context to the
names azure-functions-durable's v1 context has.

``recommndr retrain --local`` uses :func:`run_workflow`; without ``--api`` it first starts an API
that follows the MLflow registry (:class:`LocalStack`) and a traffic simulator beside it.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

from recommndr.errors import RecommndrError
from recommndr.lifecycle.activities import ACTIVITIES
from recommndr.lifecycle.workflow import ORCHESTRATORS, RETRAIN, Context

log = logging.getLogger(__name__)
MAX_MESSAGE = 64 * 1024 * 1024  # bytes of one gRPC message between the backend and its worker


class DurableTaskContext:
    """azure-functions-durable's orchestration context names over a durabletask context."""

    def __init__(self, ctx: Any, input_: Any) -> None:
        self._ctx, self._input = ctx, input_

    @property
    def instance_id(self) -> str:
        return str(self._ctx.instance_id)

    @property
    def current_utc_datetime(self) -> datetime:
        return self._ctx.current_utc_datetime  # type: ignore[no-any-return]

    def get_input(self) -> Any:
        return self._input

    def call_activity(self, name: str, input_: Any = None) -> Any:
        return self._ctx.call_activity(name, input=input_)

    def call_sub_orchestrator(self, name: str, input_: Any = None, instance_id: str | None = None) -> Any:
        return self._ctx.call_sub_orchestrator(name, input=input_, instance_id=instance_id)

    def create_timer(self, fire_at: datetime) -> Any:
        return self._ctx.create_timer(fire_at)

    def set_custom_status(self, status: Any) -> None:
        self._ctx.set_custom_status(status)


def _orchestrator(name: str, body: Callable[[Context], Generator[Any, Any, Any]]) -> Callable[..., Any]:
    def run(ctx: Any, input_: Any) -> Generator[Any, Any, Any]:
        return (yield from body(DurableTaskContext(ctx, input_)))

    run.__name__ = name  # durabletask registers a function under its name
    return run


def _activity(name: str, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., Any]:
    def run(ctx: Any, input_: Any) -> dict[str, Any]:
        return fn(input_)

    run.__name__ = name
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def durable_backend(
    activities: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
) -> Iterator[Any]:
    """An in-memory task hub with a worker running the loop's orchestrators and ``activities``
    (the real ones by default); yields its client."""
    from durabletask.client import TaskHubGrpcClient
    from durabletask.grpc_options import GrpcChannelOptions
    from durabletask.testing import create_test_backend
    from durabletask.worker import TaskHubGrpcWorker

    port = free_port()
    backend = create_test_backend(port=port)
    address = f"localhost:{port}"
    # a long canary's history passes gRPC's default 4 MB message (the worker receives it whole)
    options = GrpcChannelOptions(max_receive_message_length=MAX_MESSAGE, max_send_message_length=MAX_MESSAGE)
    worker = TaskHubGrpcWorker(host_address=address, channel_options=options)
    for name, body in ORCHESTRATORS.items():
        worker.add_orchestrator(_orchestrator(name, body))
    for name, fn in (activities or ACTIVITIES).items():
        worker.add_activity(_activity(name, fn))
    worker.start()  # type: ignore[no-untyped-call]
    try:
        yield TaskHubGrpcClient(host_address=address, channel_options=options)
    finally:
        worker.stop()  # type: ignore[no-untyped-call]
        backend.stop()


def run_workflow(
    input_: dict[str, Any],
    name: str = RETRAIN,
    timeout_s: float = 3600.0,
    activities: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Run one orchestration to its end on the in-memory backend; its output, or RecommndrError
    with the failure's message."""
    import json

    from durabletask.client import OrchestrationStatus

    with durable_backend(activities) as client:
        iid = client.schedule_new_orchestration(name, input=input_)
        try:
            state = client.wait_for_orchestration_completion(iid, timeout=int(timeout_s))
        except (TimeoutError, KeyboardInterrupt) as exc:
            _abandon(input_, activities)  # nobody will watch the canary: every shopper to the champion
            why = f"timed out after {timeout_s:.0f} s" if isinstance(exc, TimeoutError) else "interrupted"
            raise RecommndrError(
                f"the {name} workflow was stopped ({why}); challenger traffic sent back to 0"
            ) from exc
    if state is None:
        raise RecommndrError(f"the {name} workflow did not finish within {timeout_s:.0f} s")
    if state.runtime_status != OrchestrationStatus.COMPLETED:
        details = state.failure_details.message if state.failure_details else state.runtime_status.name
        raise RecommndrError(f"the {name} workflow failed: {details}")
    out: dict[str, Any] = json.loads(state.serialized_output or "{}")
    return out


def _abandon(
    input_: dict[str, Any], activities: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None
) -> None:
    """Best effort, when a run is given up: the challenger's share to 0 and its fault cleared."""
    acts = activities or ACTIVITIES
    try:
        acts["set_traffic"]({**input_, "share": 0.0, "reason": "rollback: the workflow was stopped"})
        if input_.get("fault", "none") != "none":
            from recommndr.lifecycle.activities import _call

            _call(input_, "POST", "/models/fault", json={"kind": "none"})
    except Exception as exc:  # the API may be what failed
        log.error("could not send the challenger's traffic back to 0: %s", exc)


class LocalStack:
    """An API (``recommndr serve``) that follows the MLflow registry's aliases every second, with
    fault injection on, its own admin secret and state files under ``workdir``; stopped on exit."""

    def __init__(self, workdir: Path, tracking_uri: str, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.tracking_uri = tracking_uri
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_urlsafe(48)
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        state = self.workdir / "serving"
        return {
            "RECOMMNDR_REGISTRY_URI": self.tracking_uri,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "RECOMMNDR_RELOAD_INTERVAL_S": "1",
            "RECOMMNDR_FAULT_INJECTION": "true",
            "RECOMMNDR_ADMIN_JWT_SECRET": self.secret,
            "RECOMMNDR_TRAFFIC_FILE": str(state / "traffic.json"),
            "RECOMMNDR_CONTROL_FILE": str(state / "control.json"),
            "RECOMMNDR_CANARY_FILE": str(state / "canary.json"),
            "RECOMMNDR_ALERT_INBOX_PATH": str(state / "alerts.db"),
            "RECOMMNDR_ARTIFACT_CACHE_DIR": str(self.workdir / "cache"),
            "RECOMMNDR_EVENT_LOG_DIR": str(self.workdir / "events"),
        }

    def __enter__(self) -> LocalStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env()}
        os.environ["RECOMMNDR_ADMIN_JWT_SECRET"] = self.secret  # this process' activities mint tokens
        from recommndr.config import get_settings

        get_settings.cache_clear()
        logf = (self.workdir / "api.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recommndr.cli", "serve", "--port", str(self.port), "--workers", "1",
             "--registry", self.tracking_uri],
            env=env, stdout=logf, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_up()
        return self

    def wait_up(self, timeout_s: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RecommndrError(
                    f"the API exited ({self.proc.returncode}); see {self.workdir / 'api.log'}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RecommndrError(
            f"the API did not start within {timeout_s:.0f} s; see {self.workdir / 'api.log'}"
        )

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def loop_input(
    data: Path,
    api: str,
    workdir: Path,
    tracking_uri: str,
    audit_path: Path,
    rules: dict[str, Any],
    fault: str = "none",
    params: Path | None = None,
    trigger: str = "cli",
    by: str = "cli",
    eval_users: int = 20_000,
) -> dict[str, Any]:
    """The orchestration's input for one run (validated, as JSON)."""
    from recommndr.lifecycle.activities import LoopInput
    from recommndr.lifecycle.canary import CanaryRules

    cfg = LoopInput(
        data=str(Path(data).resolve()), out_root=str((Path(workdir) / "bundles").resolve()), api=api,
        tracking_uri=tracking_uri, audit_path=str(Path(audit_path).resolve()),
        rules=CanaryRules.model_validate(rules), params=str(params) if params else None,
        fault=fault, trigger=trigger, by=by, eval_users=eval_users,
    )  # fmt: skip
    return cfg.model_dump(mode="json")


def retrain_local(
    data: Path,
    workdir: Path,
    tracking_uri: str,
    audit_path: Path,
    rules: dict[str, Any],
    api: str | None = None,
    fault: str = "none",
    params: Path | None = None,
    traffic: Callable[[str], AbstractContextManager[Any]] | None = None,
    eval_users: int = 20_000,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """``recommndr retrain --local``: the workflow on the in-memory backend against ``api`` or,
    without one, against an API started here (following the registry) with ``traffic(url)``
    running beside it for the run (the CLI's simulated shoppers: a layer above this one)."""
    if api is not None:
        cfg = loop_input(
            data, api, workdir, tracking_uri, audit_path, rules, fault, params, eval_users=eval_users
        )
        return run_workflow(cfg, timeout_s=timeout_s)
    with LocalStack(Path(workdir) / "api", tracking_uri) as stack:
        cfg = loop_input(
            data, stack.url, workdir, tracking_uri, audit_path, rules, fault, params, eval_users=eval_users
        )
        with traffic(stack.url) if traffic is not None else nullcontext():
            out = run_workflow(cfg, timeout_s=timeout_s)
        out["api"] = stack.url
        return out
