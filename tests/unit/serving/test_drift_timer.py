"""The drift check as the Functions app's timer: registered beside the ASGI app (whose paths still
reach the API), run in the process that served, its results in /metrics."""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path

import azure.functions as func
import numpy as np
import pytest
from azure.functions.timer import TimerRequest

from recommndr.config import get_settings

pytestmark = pytest.mark.unit


def _get(url: str) -> func.HttpRequest:
    return func.HttpRequest(method="GET", url=url, headers={}, body=b"")


@pytest.fixture
def function_app(artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RECOMMNDR_ARTIFACTS_DIR", str(artifacts))
    monkeypatch.setenv("RECOMMNDR_EVENT_LOG_DIR", str(tmp_path / "events"))
    monkeypatch.setenv("FUNCTIONS_WORKER_RUNTIME", "python")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    import function_app

    yield importlib.reload(function_app)
    get_settings.cache_clear()


def _timer(module) -> object:  # type: ignore[no-untyped-def]
    fns = {f.get_function_name(): f for f in module.app.get_functions()}
    assert "drift_check" in fns  # beside the ASGI app's catch-all (the only HTTP route) and the loop's
    assert [n for n, f in fns.items() if f.get_trigger().type == "httpTrigger"] == ["http_app_func"]
    trigger = fns["drift_check"].get_trigger()
    assert trigger.type == "timerTrigger" and trigger.schedule == "%RECOMMNDR_DRIFT_SCHEDULE%"
    return fns["drift_check"].get_user_function()


def test_the_timer_checks_what_this_process_served(function_app) -> None:  # type: ignore[no-untyped-def]
    fa, state = function_app.app, function_app.api.state.recommndr
    check = _timer(function_app)

    async def scenario() -> tuple[bytes, bytes]:
        await fa.middleware.notify_startup()
        base = "http://localhost"
        got = await fa.middleware.handle_async(_get(f"{base}/shoppers?n=20"), None)
        users = json.loads(got.get_body())
        assert got.status_code == 200, users
        for u in users["shoppers"]:
            r = await fa.middleware.handle_async(_get(f"{base}/recommendations/{u['user_id']}?k=10"), None)
            assert r.status_code == 200  # the API's paths reach the API
        check(TimerRequest(past_due=False))  # type: ignore[operator]
        healthy = (await fa.middleware.handle_async(_get(f"{base}/metrics"), None)).get_body()
        # a ranker gone random: the same shoppers' lists get uniform scores
        rng = np.random.default_rng(0)
        window = state.slots.champion.window
        for _ in range(300):
            window.record_list(rng.random((3, len(window.feature_names))).astype(np.float32),
                               np.sort(rng.random(10)).astype(np.float32)[::-1].copy(), np.ones(10, np.uint8))  # fmt: skip
        check(TimerRequest(past_due=True))  # type: ignore[operator]
        broken = (await fa.middleware.handle_async(_get(f"{base}/metrics"), None)).get_body()
        await fa.middleware.notify_shutdown()
        return healthy, broken

    healthy, broken = asyncio.run(scenario())
    assert b'recommndr_drift{kind="score",variant="champion"} 0.0' in healthy
    size = [line for line in healthy.decode().splitlines() if line.startswith("recommndr_drift_window_size{")]
    assert (
        size and 1 <= float(size[0].split()[-1]) <= 20
    )  # the shoppers' ranked lists (popularity ones are not kept)
    assert b'recommndr_drift{kind="score",variant="champion"} 1.0' in broken
    assert b"recommndr_feature_psi{" in broken
