"""Azure Monitor: nothing of it is imported unless APPLICATIONINSIGHTS_CONNECTION_STRING is set
(the Functions app's cold start), and when it is set the API's metrics reach OpenTelemetry's SDK
under their Prometheus names. Each case runs in a fresh interpreter: the distro sets process-wide
providers and instruments FastAPI's class. No network: the connection string points at a closed
loopback port, statsbeat and the control plane are off, and an in-memory reader added to the
distro's own readers collects what its Azure exporter would send."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ports import free_port

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]
HEAVY = ("azure.monitor", "opentelemetry.sdk", "opentelemetry.instrumentation", "recommndr.serving.telemetry")

COLD = """
import json, sys
import function_app  # the Azure Functions entry point: creates the app at import
print(json.dumps(sorted(m for m in sys.modules if m.startswith(HEAVY))))
"""

ENABLED = """
import json, sys
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
import azure.monitor.opentelemetry as distro

reader, calls = InMemoryMetricReader(), []
real = distro.configure_azure_monitor

def configure(**kwargs):  # the real distro, with one more reader beside its Azure exporter's
    calls.append(kwargs["connection_string"])
    real(**kwargs, metric_readers=[reader], enable_live_metrics=False)

distro.configure_azure_monitor = configure
from recommndr.serving.app import create_app

with TestClient(create_app(ARTIFACTS)) as c:
    r = c.get("/recommendations/3?k=5").json()
    c.post("/events", json=[{"user_id": 3, "item_id": r["items"][0]["item_id"], "event_type": "view",
                             "variant": r["variant"]}])
    c.get("/similar_items/999999999")
    prom = c.get("/metrics").text
got = {}
for rm in reader.get_metrics_data().resource_metrics:
    for sm in rm.scope_metrics:
        if sm.scope.name != "recommndr":
            continue
        for m in sm.metrics:
            got[m.name] = [[dict(p.attributes), p.value] for p in m.data.data_points if hasattr(p, "value")]
# series with a finite value (Azure Monitor takes no +Inf or NaN: the bridge leaves those out)
names = sorted({line.split("{")[0].split()[0] for line in prom.splitlines() if line and not line.startswith("#")
                and line.rsplit(" ", 1)[-1] not in ("+Inf", "-Inf", "NaN")})
print(json.dumps({"calls": calls, "otel": got, "prometheus": names}))
"""


def _run(code: str, env: dict[str, str], tmp_path: Path) -> str:
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOMMNDR_", "APPLICATIONINSIGHTS_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(RECOMMNDR_EVENT_LOG_DIR=str(tmp_path / "events"), RECOMMNDR_ONLINE_STORE="off",
               RECOMMNDR_TRAFFIC_FILE=str(tmp_path / "traffic.json"), RECOMMNDR_RELOAD_INTERVAL_S="0",
               TMPDIR=str(tmp_path), **extra)  # fmt: skip
    return env


def test_nothing_of_azure_monitor_is_imported_without_the_connection_string(tmp_path: Path) -> None:
    code = f"HEAVY = {HEAVY!r}\n{COLD}"
    assert json.loads(_run(code, _env(tmp_path), tmp_path)) == []


def test_the_metrics_reach_opentelemetry_under_their_prometheus_names(
    artifacts: Path, tmp_path: Path
) -> None:
    closed = free_port()
    conn = (f"InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            f"IngestionEndpoint=http://127.0.0.1:{closed}/;LiveEndpoint=http://127.0.0.1:{closed}/")  # fmt: skip
    env = _env(tmp_path, APPLICATIONINSIGHTS_CONNECTION_STRING=conn,
               APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true", APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED="true")  # fmt: skip
    out = json.loads(_run(f"ARTIFACTS = {str(artifacts)!r}\n{ENABLED}", env, tmp_path))
    assert out["calls"] == [conn]
    otel, prom = out["otel"], set(out["prometheus"])
    # every series /metrics shows has its instrument (the _created timestamps are Prometheus' own)
    assert {n for n in prom if not n.endswith("_created")} <= set(otel)
    for name in ("recommndr_request_seconds_bucket", "recommndr_request_seconds_count",
                 "recommndr_recommendations_served_total", "recommndr_events_total", "recommndr_model_info",
                 "recommndr_ready", "recommndr_variant_rate", "recommndr_client_errors_total"):  # fmt: skip
        assert otel.get(name), name
    served = otel["recommndr_recommendations_served_total"]
    assert served == [[{"variant": "champion", "path": "two_stage"}, 1]]
    views = [p for p in otel["recommndr_events_total"] if p[0]["event_type"] == "view"]
    assert views == [[{"event_type": "view", "variant": "champion"}, 1]]
    assert [{"endpoint": "/similar_items/{item_id}", "code": "404"}, 1] in otel[
        "recommndr_client_errors_total"
    ]
    recs = [
        p for p in otel["recommndr_request_seconds_count"] if p[0]["endpoint"] == "/recommendations/{user_id}"
    ]
    assert recs == [[{"endpoint": "/recommendations/{user_id}", "variant": "champion"}, 1]]
    assert [{"variant": "champion", "rate": "ctr"}, 1.0] in otel["recommndr_variant_rate"]
