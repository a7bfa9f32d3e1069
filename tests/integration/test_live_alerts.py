"""The alerts for real: Debian's Prometheus and Alertmanager (1-second scrapes and evaluations,
the project's rules with test-sized windows) watch a real API under a small load. Healthy, nothing
is pending or firing once the rules have run over a full window; with an injected fault (every
recommendation raising, then each one slow) the matching alert goes through Alertmanager to the
API's webhook, where the admin reads it, and the error alert resolves when the errors stop."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.e2e.servers import REPO, clean_env, log_tail, running, wait_ok
from tests.monitoring_stack import Stack, logs, monitoring_stack, poll
from tests.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ADMIN_SECRET = "live-alerts-admin-key-0123456789abcdef"
WEBHOOK_TOKEN = "live-alerts-webhook-token-0123456789abcdef"
ENDPOINT = "/recommendations/{user_id}"


class Load:
    """A few client threads asking for recommendations, ~20 requests/s in all (paced: a small
    load, which a loaded 2-core machine serves with room to spare)."""

    def __init__(self, base: str, threads: int = 3, pause_s: float = 0.15) -> None:
        self.base, self.pause_s = base, pause_s
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, i: int) -> None:
        user = i
        while not self.stop.is_set():
            user = (user + 7) % 500
            try:
                with urllib.request.urlopen(f"{self.base}/recommendations/{user}?k=5", timeout=10) as r:
                    status = r.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = 0
            with self._lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
            self.stop.wait(self.pause_s)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)


@pytest.fixture
def live(artifacts: Path, tmp_path: Path) -> Iterator[tuple[str, Path, Stack]]:
    """The fault-injectable API, and Prometheus + Alertmanager watching it; yields the API's URL,
    its fault file and the stack."""
    port = free_port()
    fault = tmp_path / "fault"
    env = clean_env(RECOMMNDR_ALERT_WEBHOOK_TOKEN=WEBHOOK_TOKEN, RECOMMNDR_ADMIN_JWT_SECRET=ADMIN_SECRET,
                    RECOMMNDR_ALERT_INBOX_PATH=str(tmp_path / "alerts.db"),
                    RECOMMNDR_EVENT_LOG_DIR=str(tmp_path / "events"),
                    RECOMMNDR_ONLINE_STORE_PATH=str(tmp_path / "online.db"),
                    RECOMMNDR_TRAFFIC_FILE=str(tmp_path / "traffic.json"), RECOMMNDR_RELOAD_INTERVAL_S="0")  # fmt: skip
    cmd = [sys.executable, "-m", "tests.integration.faulty_api", "--artifacts", str(artifacts),
           "--port", str(port), "--fault-file", str(fault)]  # fmt: skip
    log = tmp_path / "api.log"
    with running(cmd, env=env, cwd=REPO, log=log) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_ok(f"{base}/ready", proc, log)
        targets = {"recommndr-api": [f"127.0.0.1:{port}"]}
        with monitoring_stack(tmp_path / "stack", targets, f"{base}/alerts/webhook", WEBHOOK_TOKEN) as stack:
            try:
                yield base, fault, stack
            except BaseException:
                print(logs(stack.work), "\n--- API:\n", log_tail(log))
                raise


def _received(base: str) -> list[dict[str, Any]]:
    now = int(time.time())
    token = jwt.encode({"sub": "live-test", "iss": "recommndr", "aud": "recommndr-admin", "iat": now,
                        "exp": now + 300}, ADMIN_SECRET, algorithm="HS256")  # fmt: skip
    req = urllib.request.Request(f"{base}/alerts", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return list(json.loads(r.read())["alerts"])


def _arrived(base: str, name: str, status: str) -> list[dict[str, Any]]:
    return [a for a in _received(base) if a["alertname"] == name and a["status"] == status]


def test_a_fault_reaches_the_webhook_and_a_healthy_run_raises_nothing(live: tuple[str, Path, Stack]) -> None:
    base, fault, stack = live
    with Load(base) as load:
        # healthy: the rules have run on a full window of healthy traffic (>= 10 evaluations of
        # the p95 over the last 12 s, the shortened 5-minute window plus the 5-minute `for:`)
        p95 = f'endpoint_variant:recommndr_request_seconds:p95_5m{{endpoint="{ENDPOINT}"}}'
        poll(
            "healthy traffic evaluated by the rules",
            lambda: stack.query(f"count_over_time({p95}[12s]) >= 10"),
            90,
        )
        assert stack.query(f'endpoint:recommndr_requests:rate5m{{endpoint="{ENDPOINT}"}} > 1')
        assert stack.active_alerts() == [], "a healthy API raised alerts"
        assert _received(base) == []
        assert load.statuses.get(200, 0) > 50 and set(load.statuses) == {200}, load.statuses

        fault.write_text("errors")  # every recommendation now answers 500
        [hit, *_] = poll(
            "RecommndrErrorRateHigh at the webhook",
            lambda: _arrived(base, "RecommndrErrorRateHigh", "firing"),
            90,
        )
        assert hit["severity"] == "critical" and hit["labels"]["endpoint"] == ENDPOINT
        assert hit["annotations"]["action"] == "rollback" and float(hit["annotations"]["value"]) > 0.05
        assert load.statuses.get(500, 0) > 0

        fault.write_text("slow")  # no more errors; each recommendation 0.4 s slower
        [slow, *_] = poll(
            "RecommndrLatencyP95High at the webhook",
            lambda: _arrived(base, "RecommndrLatencyP95High", "firing"),
            90,
        )
        assert slow["variant"] == "champion" and slow["labels"]["endpoint"] == ENDPOINT
        assert float(slow["annotations"]["value"]) > 0.3 and slow["annotations"]["action"] == "rollback"
        poll(
            "RecommndrErrorRateHigh resolved at the webhook",
            lambda: _arrived(base, "RecommndrErrorRateHigh", "resolved"),
            90,
        )

    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert (
        'recommndr_alerts_received_total{alertname="RecommndrErrorRateHigh",severity="critical",status="firing"}'
        in metrics
    )
    names = {a["alertname"] for a in _received(base)}
    assert names == {"RecommndrErrorRateHigh", "RecommndrLatencyP95High"}, names
