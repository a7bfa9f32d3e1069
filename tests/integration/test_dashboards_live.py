"""Every dashboard panel against a live Prometheus (Debian's ``prometheus``, 1-second scrapes)
scraping a real ``recommndr serve`` under a small load: each expression, its template variables
expanded, parses and returns at least one series through ``/api/v1/query``. The picture of the
API dashboard is drawn from the same Prometheus (``recommndr.monitoring.render``).

What a fresh API cannot give is fed: the online store points at a closed Redis port, so lists are
served degraded (``online_features_unavailable``); a second bundle (a smaller ranker) is the challenger
for half the shoppers. The drift watcher (``recommndr monitor watch``) and the streaming job are
not in this module's reach: a stand-in exporter serves their metric names with fixed values,
scraped as ``recommndr-monitor``, so their panels' queries are checked for shape, not for their
numbers. The API's own streaming gauges read "down" (its window store is the closed Redis port).

Self-contained on purpose (one module): the shared live-Prometheus fixture may replace
``live_prometheus`` below. Set ``RECOMMNDR_DASHBOARD_PNG=docs/dashboard-api.png`` to keep the picture.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from recommndr.monitoring.dashboards import DASHBOARDS, dashboard_json, default_values, expand, panel_queries
from recommndr.monitoring.render import render
from tests.e2e.servers import clean_env, running, wait_ok
from tests.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RATE_INTERVAL = "10s"  # Grafana's $__rate_interval at a 1 s scrape is 4 s; 10 s spans the load's pauses
# not exported by the API of this branch (being added on main); checked to parse, and to return
# series once /metrics has it
NOT_YET = "recommndr_events_rejected_total"


@dataclass
class Live:
    prometheus: str
    api: str
    metrics_text: str


def _get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(url: str, body: object) -> int:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def query(prometheus: str, expr: str) -> dict[str, object]:
    status, body = _get(f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    answer: dict[str, object] = json.loads(body)
    assert status == 200 and answer["status"] == "success", f"{expr}: {answer}"
    return answer


def _watcher_stand_in() -> tuple[int, object]:
    """The drift watcher's metric names and labels, with fixed values (not the watcher's)."""
    reg = CollectorRegistry()
    psi = Gauge("recommndr_feature_psi", "PSI", ["variant", "feature"], registry=reg)
    drift = Gauge("recommndr_drift", "flag", ["variant", "kind"], registry=reg)
    for variant in ("champion", "challenger"):
        for feature, value in (("item_price", 0.04), ("als_score", 0.12)):
            psi.labels(variant, feature).set(value)
        for kind in ("feature", "score", "confidence", "validation"):
            drift.labels(variant, kind).set(0)
    Gauge("recommndr_score_psi", "PSI", ["variant"], registry=reg).labels("champion").set(0.02)
    Gauge("recommndr_confidence_drop", "drop", ["variant"], registry=reg).labels("champion").set(0.05)
    Gauge("recommndr_validation_failure_rate", "share", registry=reg).set(0.001)
    Gauge("recommndr_drift_last_check_timestamp_seconds", "ts", registry=reg).set(time.time())
    Gauge("recommndr_drift_window_size", "n", ["variant"], registry=reg).labels("champion").set(10_000)
    # the streaming job's exporter's names (the Flink job's, not in this module's reach either)
    Gauge("recommndr_stream_clock_lag_seconds", "lag", registry=reg).set(1.5)
    Gauge("recommndr_stream_kafka_lag_records", "lag", registry=reg).set(120)
    Counter("recommndr_stream_records_in", "records", registry=reg).inc(1000)
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=reg)
    return port, server


def _load(api: str, users: list[int], seconds: float) -> None:
    """Shoppers: lists (known and unknown users), clicks, carts and purchases from them, similar
    items, and the caller's mistakes (404, 422)."""
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        user = users[i % len(users)] if i % 7 else 10**12 + i  # every 7th an unknown shopper
        status, body = _get(f"{api}/recommendations/{user}?k=5")
        assert status == 200, body
        rec = json.loads(body)
        item = rec["items"][0]["item_id"]
        events = []  # two lists in three are clicked
        if i % 3 != 2:
            events.append({"user_id": user, "item_id": item, "event_type": "view", "variant": rec["variant"]})
        if i % 3 == 0:
            events.append(
                {"user_id": user, "item_id": item, "event_type": "add_to_cart", "variant": rec["variant"]}
            )
        if i % 6 == 0:
            events.append(
                {"user_id": user, "item_id": item, "event_type": "purchase", "variant": rec["variant"]}
            )
        events.append({"user_id": user, "item_id": item, "event_type": "view"})  # not from a list
        assert _post(f"{api}/events", events) == 202
        if i % 5 == 0:
            assert _get(f"{api}/similar_items/{item}?k=5")[0] == 200
            assert _get(f"{api}/similar_items/999999999")[0] == 404
            assert _get(f"{api}/recommendations/{user}?k=0")[0] == 422
        i += 1


@pytest.fixture(scope="module")
def challenger(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second bundle (a smaller ranker): the same bundle as the champion's is no challenger."""
    from recommndr.params import TrainConfig
    from recommndr.training.pipeline import train

    out = tmp_path_factory.mktemp("live-challenger") / "art"
    train(tiny_dataset, out, TrainConfig.model_validate({"ranker": {"n_estimators": 20}}))
    return out


@pytest.fixture(scope="module")
def live_prometheus(
    artifacts: Path, challenger: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    prom = shutil.which("prometheus")
    assert prom, "prometheus is missing: `make setup` installs Debian's prometheus package"
    work = tmp_path_factory.mktemp("live-prom")
    api_port, prom_port = free_port(), free_port()
    closed = free_port()  # nothing listens: the online store is down, lists are served degraded
    env = clean_env(
        RECOMMNDR_EVENT_LOG_DIR=str(work / "events"),
        RECOMMNDR_TRAFFIC_FILE=str(work / "traffic.json"),
        RECOMMNDR_RELOAD_INTERVAL_S="0",
        RECOMMNDR_ONLINE_STORE="redis",
        RECOMMNDR_REDIS_URL=f"redis://127.0.0.1:{closed}/0",
        RECOMMNDR_CHALLENGER_ARTIFACTS_DIR=str(challenger),
        RECOMMNDR_CHALLENGER_TRAFFIC="0.5",
    )
    cli = Path(sys.executable).with_name("recommndr")
    api_cmd = [
        str(cli),
        "serve",
        "--artifacts",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(api_port),
    ]
    watcher_port, watcher = _watcher_stand_in()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "recommndr-api", "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}]},
            {"job_name": "recommndr-monitor", "static_configs": [{"targets": [f"127.0.0.1:{watcher_port}"]}]},
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom_cmd = [prom, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"]  # fmt: skip
    users = pl.read_parquet(tiny_dataset / "events.parquet", columns=["user_id"])["user_id"].unique().sort()
    try:
        with (
            running(api_cmd, env=env, cwd=work, log=work / "api.log") as api_proc,
            running(prom_cmd, env=clean_env(), cwd=work, log=work / "prometheus.log") as prom_proc,
        ):
            api, prometheus = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{prom_port}"
            wait_ok(f"{api}/ready", api_proc, work / "api.log")
            wait_ok(f"{prometheus}/-/ready", prom_proc, work / "prometheus.log", timeout=60)
            _load(api, users.head(200).to_list(), seconds=12)
            time.sleep(3)  # the last requests scraped
            yield Live(prometheus, api, _get(f"{api}/metrics")[1].decode())
    finally:
        watcher.shutdown()  # type: ignore[attr-defined]


def _cases() -> list[tuple[str, str]]:
    return [(name, q.panel) for name in DASHBOARDS for q in panel_queries(json.loads(dashboard_json(name)))]


def test_prometheus_scrapes_both_jobs(live_prometheus: Live) -> None:
    answer = query(live_prometheus.prometheus, "up")
    up = {r["metric"]["job"]: r["value"][1] for r in answer["data"]["result"]}  # type: ignore[index]
    assert up == {"recommndr-api": "1", "recommndr-monitor": "1"}


@pytest.mark.parametrize("variant", [".*", "champion"])
def test_every_panel_returns_series(live_prometheus: Live, variant: str) -> None:
    """With "All" and with one variant picked; a panel whose metric the API does not export yet
    is checked to parse, and fails here once the API exports it and the panel still finds nothing."""
    empty, checked = [], 0
    for name in DASHBOARDS:
        data = json.loads(dashboard_json(name))
        values = {**default_values(data, RATE_INTERVAL), "window": "1m", "variant": variant}
        for q in panel_queries(data):
            answer = query(live_prometheus.prometheus, expand(q.expr, values))
            result = answer["data"]["result"]  # type: ignore[index]
            checked += 1
            if not result and not (NOT_YET in q.expr and NOT_YET not in live_prometheus.metrics_text):
                empty.append(f"{name} / {q.panel} / {q.ref_id}: {q.expr}")
            if result and variant != ".*" and "$variant" in q.expr and "variant" in result[0]["metric"]:
                assert {r["metric"]["variant"] for r in result} == {variant}, q.panel
    assert checked == sum(len(panel_queries(json.loads(dashboard_json(n)))) for n in DASHBOARDS)
    assert not empty, "panels with no series:\n" + "\n".join(empty)


def test_the_numbers_are_the_apis(live_prometheus: Live) -> None:
    """Spot checks that the panels read what happened: both variants served lists, degraded
    answers were counted, 404s and 422s were seen, the intervals bracket the estimate."""
    prom = live_prometheus.prometheus
    data = json.loads(dashboard_json("recommndr-api"))
    values = {**default_values(data, RATE_INTERVAL), "window": "1m"}
    by_title = {q.panel + q.ref_id: expand(q.expr, values) for q in panel_queries(data)}

    def series(key: str) -> dict[str, float]:
        res = query(prom, by_title[key])["data"]["result"]  # type: ignore[index]
        return {
            " ".join(f"{k}={v}" for k, v in sorted(r["metric"].items())): float(r["value"][1]) for r in res
        }

    split = series("Traffic split (share of lists per variant)A")
    assert set(split) == {"variant=champion", "variant=challenger"} and abs(sum(split.values()) - 1) < 1e-9
    assert set(series("Degradations per reasonA")) == {"reason=online_features_unavailable"}
    assert {
        "code=404 endpoint=/similar_items/{item_id}",
        "code=422 endpoint=/recommendations/{user_id}",
    } <= set(series("Client errors (4xx) per endpoint and statusA"))
    assert all(v == 0 for v in series("Error rate (5xx share) per endpointA").values())
    ctr, low, high = (series(f"CTR per variant (95 % Wilson interval){r}") for r in "ABC")
    for variant in ("variant=champion", "variant=challenger"):
        assert 0 < low[variant] < ctr[variant] < high[variant] < 1  # two lists in three clicked
    assert series("Trending liveA") == {"": 0.0}  # the window store is the closed Redis port: batch
    models = series("Model versions loadedA")
    assert {k.split()[0] for k in models} == {"variant=challenger", "variant=champion"}


def test_the_api_dashboard_is_drawn_from_its_json(live_prometheus: Live, tmp_path: Path) -> None:
    data = json.loads(dashboard_json("recommndr-api"))
    values = {**default_values(data, RATE_INTERVAL), "window": "1m"}
    png = render(data, live_prometheus.prometheus, tmp_path / "api.png", values, minutes=0.5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 20_000 < png.stat().st_size < 300_000
    keep = os.environ.get("RECOMMNDR_DASHBOARD_PNG")
    if keep:
        shutil.copy(png, keep)
