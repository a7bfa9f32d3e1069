"""The dashboards as code: the committed JSON is what the generator writes, every panel's query
is valid PromQL to promtool (Debian's ``prometheus``), and the interval panels compute the Wilson
score interval (checked by ``promtool test rules`` against a Python computation)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recommndr.monitoring.dashboards import (
    DASHBOARDS,
    dashboard_json,
    default_values,
    expand,
    panel_queries,
    stale_dashboards,
)

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]
COMMITTED = REPO / "infra" / "monitoring" / "dashboards"


def promtool() -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: `make setup` installs Debian's prometheus package"
    return exe


def all_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expression with its variables expanded) for every target."""
    out = []
    for name in DASHBOARDS:
        data = json.loads(dashboard_json(name))
        values = default_values(data, "1m")
        out += [(name, q.panel, expand(q.expr, values)) for q in panel_queries(data)]
    return out


def check_rules(exprs: list[str], path: Path) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def test_the_committed_json_is_what_the_generator_writes() -> None:
    assert sorted(p.name for p in COMMITTED.glob("*.json")) == sorted(f"{n}.json" for n in DASHBOARDS)
    assert stale_dashboards(COMMITTED) == [], "run `recommndr monitor dashboards` and commit the JSON"


def test_a_hand_edited_file_is_stale(tmp_path: Path) -> None:
    shutil.copytree(COMMITTED, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "recommndr-api.json"
    path.write_text(path.read_text().replace('"title": "Ready"', '"title": "Up"'))
    assert stale_dashboards(tmp_path) == ["recommndr-api"]
    r = subprocess.run([sys.executable, "-m", "recommndr.cli", "monitor", "dashboards", "--check", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert r.returncode == 1 and "recommndr-api.json" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "recommndr.cli", "monitor", "dashboards", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert stale_dashboards(tmp_path) == []


def test_the_dashboards_hold_the_panels_and_variables_asked_for() -> None:
    api, drift = (json.loads(dashboard_json(n)) for n in ("recommndr-api", "recommndr-drift"))
    titles = {p["title"] for p in api["panels"]}
    for want in ("Latency p50 per endpoint and variant", "Latency p95 per endpoint and variant",
                 "Latency p99 per endpoint and variant", "Error rate (5xx share) per endpoint",
                 "Requests per variant", "CTR per variant (95 % Wilson interval)", "Model versions loaded",
                 "Traffic split (share of lists per variant)", "Degradations per reason",
                 "API memory (RSS)", "API CPU", "Stream lag", "Kafka lag (records)", "Stream throughput",
                 "Freshness (age of the job's status)", "Trending live",
                 "Stream consistency (job / API events, last hour)"):  # fmt: skip
        assert want in titles
    assert {v["name"]: v["type"] for v in api["templating"]["list"]} == {
        "datasource": "datasource", "endpoint": "query", "variant": "query", "window": "interval"}  # fmt: skip
    assert {p["title"] for p in drift["panels"]} >= {"PSI per feature", "Drift flags", "Confidence drop"}
    for d in (api, drift):
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids)  # Grafana needs unique panel ids
        for p in d["panels"]:
            if p["type"] != "row":
                assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    exprs = " ".join(q.expr for n in DASHBOARDS for q in panel_queries(json.loads(dashboard_json(n))))
    for metric in ("recommndr_request_seconds_bucket", "recommndr_errors_total", "recommndr_client_errors_total",
                   "recommndr_recommendations_served_total", "recommndr_events_total", "recommndr_model_info",
                   "recommndr_ready", "recommndr_degraded_total", "recommndr_variant_rate",
                   "recommndr_feature_psi", "recommndr_drift{", "recommndr_score_psi", "recommndr_confidence_drop",
                   "recommndr_validation_failure_rate", "recommndr_drift_last_check_timestamp_seconds",
                   "recommndr_drift_window_size", "recommndr_stream_clock_lag_seconds",
                   "recommndr_stream_kafka_lag_records", "rate(recommndr_stream_records_in_total[1m])",
                   "recommndr_stream_status_age_seconds", "recommndr_stream_live",
                   "recommndr_stream_consistency_ratio", "recommndr_stream_session_agreement_ratio"):  # fmt: skip
        assert metric in exprs
    assert ":" not in exprs.replace("[$", "")  # raw metrics, no recording-rule names (level:metric:op)


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    queries = all_queries()
    assert len(queries) >= 30
    r = check_rules([e for _, _, e in queries], tmp_path / "dashboards.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(queries)} rules found" in r.stdout


def test_promtool_refuses_a_broken_query(tmp_path: Path) -> None:
    """The check above can fail: one panel's expression with a missing bracket fails it by name."""
    exprs = [e for _, _, e in all_queries()]
    exprs[3] = exprs[3].replace("[1m]", "[1m", 1)
    r = check_rules(exprs, tmp_path / "broken.yml")
    assert r.returncode != 0 and "dashboard:query_3" in r.stdout + r.stderr


def test_a_variable_without_a_value_is_named() -> None:
    assert expand('x{v=~"$variant"}[${window}]', {"variant": ".*", "window": "1h"}) == 'x{v=~".*"}[1h]'
    with pytest.raises(KeyError, match=r"\$feature"):
        expand('psi{feature=~"$feature"}', {"variant": ".*"})
    with pytest.raises(KeyError, match="unknown dashboard"):
        dashboard_json("nope")


def wilson(k: float, n: float) -> tuple[float, float, float]:
    z = 1.959963984540054
    p = min(k / n, 1.0)
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return p, (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def test_the_rate_panels_compute_the_wilson_interval(tmp_path: Path) -> None:
    """Counters growing at known rates for 20 minutes; over a 10-minute window Prometheus' answer for
    each rate panel (estimate, low, high) equals the Wilson interval computed here from the same
    counts. The challenger has lists but no click: its CTR is 0 with a non-zero upper bound."""
    api = json.loads(dashboard_json("recommndr-api"))
    values = {**default_values(api, "1m"), "window": "10m"}
    per_min = {("champion", "lists"): 200, ("champion", "view"): 12, ("champion", "add_to_cart"): 3,
               ("champion", "purchase"): 1, ("challenger", "lists"): 50}  # fmt: skip
    series = []
    for (variant, what), step in per_min.items():
        name = (f'recommndr_recommendations_served_total{{variant="{variant}", path="two_stage"}}'
                if what == "lists" else
                f'recommndr_events_total{{event_type="{what}", variant="{variant}"}}')  # fmt: skip
        series.append({"series": name, "values": f"0+{step}x20"})
    series.append(
        {"series": 'recommndr_events_total{event_type="view", variant="none"}', "values": "0+500x20"}
    )
    rules, tests = [], []
    expected = {"CTR": (12 * 10, 200 * 10), "Add-to-cart": (3 * 10, 12 * 10), "Conversion": (1 * 10, 12 * 10)}
    for q in panel_queries(api):
        kind = next((k for k in expected if q.panel.startswith(k)), None)
        if kind is None:
            continue
        rec = f"test:{kind.lower().replace('-', '_')}:{q.ref_id}"
        rules.append({"record": rec, "expr": expand(q.expr, values)})
        k, n = expected[kind]
        want = {"champion": wilson(k, n)["ABC".index(q.ref_id)]}
        if kind == "CTR":
            want["challenger"] = wilson(0, 50 * 10)["ABC".index(q.ref_id)]
        for variant, value in want.items():  # promtool compares exactly: these carry the expected values
            series.append({"series": f'expected{{rule="{rec}", variant="{variant}"}}',
                           "values": " ".join([repr(value)] * 21)})  # fmt: skip
        e = f'expected{{rule="{rec}"}}'
        tests.append({"expr": f"abs({rec} - on (variant) {e}) <= bool on (variant) (1e-9 * abs({e}) + 1e-9)",
                      "eval_time": "20m",
                      "exp_samples": [{"labels": f'{{variant="{v}"}}', "value": 1} for v in want]})  # fmt: skip
    assert len(rules) == 9
    (tmp_path / "rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "t", "interval": "1m", "rules": rules}]})
    )
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}]}))  # fmt: skip
    r = subprocess.run([promtool(), "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60, check=False)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def test_render_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    from tests.ports import free_port

    def render(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "recommndr.cli", "monitor", "render", *args],
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip

    api = str(COMMITTED / "recommndr-api.json")
    down = render(
        "--dashboard",
        api,
        "--prometheus",
        f"http://127.0.0.1:{free_port()}",
        "--out",
        str(tmp_path / "x.png"),
    )
    assert down.returncode == 2 and "not reachable" in down.stderr and "Traceback" not in down.stderr
    bad = render("--dashboard", api, "--rate-interval", "1m; drop", "--out", str(tmp_path / "x.png"))
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    (tmp_path / "no.json").write_text('{"title": "x"}')
    notdash = render("--dashboard", str(tmp_path / "no.json"), "--out", str(tmp_path / "x.png"))
    assert notdash.returncode == 2 and "not a Grafana dashboard" in notdash.stderr
    assert not (tmp_path / "x.png").exists()
