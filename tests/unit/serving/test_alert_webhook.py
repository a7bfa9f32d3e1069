"""The alert webhook Alertmanager posts to (a bearer secret, bounded body and alert count) and the
admin's view of what arrived: every refusal, the inbox's bound and cursor, the metric, and that
every worker process reads the same inbox."""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recommndr.config import ConfigError, get_settings
from recommndr.serving.app import create_app
from recommndr.serving.metrics import ALERT_NAMES
from recommndr.serving.routes.alerts import MAX_WEBHOOK_BYTES
from recommndr.serving.schemas import MAX_ALERTS
from tests.unit.serving.test_admin_ab import SECRET, token

pytestmark = pytest.mark.unit
WEBHOOK_TOKEN = "alertmanager-webhook-secret-0123456789abcdef"
RULES = Path(__file__).resolve().parents[3] / "infra" / "monitoring" / "rules" / "alerts.yml"


def alert(name: str = "RecommndrErrorRateHigh", status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": "critical", "endpoint": "/recommendations/{user_id}", **labels},
        "annotations": {"summary": "5xx share 0.31 on /recommendations/{user_id}", "action": "rollback",
                        "value": "0.31", "threshold": "0.05"},
        "startsAt": "2026-12-01T10:00:00.123Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
        "fingerprint": "8a1b2c3d4e5f6a7b",
    }  # fmt: skip


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    alerts = alerts or (alert(),)
    return {
        "version": "4",
        "groupKey": '{}:{alertname="RecommndrErrorRateHigh"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "recommndr",
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


HOOK = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


@pytest.fixture
def client(artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("RECOMMNDR_ALERT_WEBHOOK_TOKEN", WEBHOOK_TOKEN)
    monkeypatch.setenv("RECOMMNDR_ADMIN_JWT_SECRET", SECRET)
    monkeypatch.setenv("RECOMMNDR_ALERT_INBOX_SIZE", "5")
    get_settings.cache_clear()
    with TestClient(create_app(artifacts, tmp_path / "events"), client=("127.0.0.1", 50000)) as c:
        yield c


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {token()}"}


def test_an_alert_is_stored_counted_and_shown_to_the_admin(client: TestClient) -> None:
    r = client.post("/alerts/webhook", json=payload(alert(variant="challenger")), headers=HOOK)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 1, "ids": [1]}
    got = client.get("/alerts", headers=_admin())
    assert got.status_code == 200
    body = got.json()
    assert body["capacity"] == 5
    [stored] = body["alerts"]
    assert stored["alertname"] == "RecommndrErrorRateHigh" and stored["severity"] == "critical"
    assert stored["variant"] == "challenger" and stored["status"] == "firing"
    assert stored["annotations"]["action"] == "rollback" and stored["labels"]["endpoint"].startswith("/rec")
    assert (
        stored["starts_at"] == "2026-12-01T10:00:00.123000Z" and stored["fingerprint"] == "8a1b2c3d4e5f6a7b"
    )
    metrics = client.get("/metrics").text
    assert (
        'recommndr_alerts_received_total{alertname="RecommndrErrorRateHigh",severity="critical",'
        'status="firing"} 1.0' in metrics
    )


def test_names_and_severities_outside_the_rules_do_not_grow_the_metric(client: TestClient) -> None:
    odd = alert(name="x" * 200, severity="page-everyone")
    assert client.post("/alerts/webhook", json=payload(odd), headers=HOOK).status_code == 200
    metrics = client.get("/metrics").text
    assert (
        'recommndr_alerts_received_total{alertname="other",severity="other",status="firing"} 1.0' in metrics
    )
    assert "x" * 200 not in metrics
    assert client.get("/alerts", headers=_admin()).json()["alerts"][0]["alertname"] == "x" * 200


def test_the_inbox_keeps_the_last_n_and_serves_a_cursor(client: TestClient) -> None:
    for i in range(4):
        batch = [alert(status="resolved" if i % 2 else "firing", n=str(i * 2 + j)) for j in range(2)]
        assert client.post("/alerts/webhook", json=payload(*batch), headers=HOOK).status_code == 200
    newest = client.get("/alerts", headers=_admin()).json()["alerts"]
    assert [a["id"] for a in newest] == [4, 5, 6, 7, 8]  # capacity 5: the oldest three are gone
    assert [a["labels"]["n"] for a in newest] == ["3", "4", "5", "6", "7"]
    page = client.get("/alerts", params={"after": 5, "limit": 2}, headers=_admin()).json()["alerts"]
    assert [a["id"] for a in page] == [6, 7]
    assert client.get("/alerts", params={"after": 8}, headers=_admin()).json()["alerts"] == []
    assert [
        a["id"] for a in client.get("/alerts", params={"limit": 2}, headers=_admin()).json()["alerts"]
    ] == [7, 8]


def test_every_worker_reads_the_same_inbox(client: TestClient, artifacts: Path, tmp_path: Path) -> None:
    """Two apps on one settings file stand for two worker processes: one receives, the other shows."""
    assert client.post("/alerts/webhook", json=payload(), headers=HOOK).status_code == 200
    with TestClient(create_app(artifacts, tmp_path / "events2"), client=("127.0.0.1", 50001)) as other:
        assert [a["id"] for a in other.get("/alerts", headers=_admin()).json()["alerts"]] == [1]
        assert other.post("/alerts/webhook", json=payload(), headers=HOOK).json()["ids"] == [2]
    assert [a["id"] for a in client.get("/alerts", headers=_admin()).json()["alerts"]] == [1, 2]


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ({}, 401, "bearer token is required"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "bearer token is required"),
        ({"Authorization": "Bearer " + WEBHOOK_TOKEN[:-1]}, 401, "wrong webhook token"),
        ({"Authorization": "Bearer " + WEBHOOK_TOKEN + "x"}, 401, "wrong webhook token"),
        ({"Authorization": f"Bearer {'a' * 10_000}"}, 401, "wrong webhook token"),
    ],
)
def test_a_caller_without_the_token_is_refused_before_the_body_is_read(
    client: TestClient, headers: dict[str, str], status: int, words: str
) -> None:
    r = client.post(
        "/alerts/webhook", content=b"{not json", headers={**headers, "Content-Type": "application/json"}
    )
    assert r.status_code == status and words in r.json()["error"]["message"], r.text
    assert client.get("/alerts", headers=_admin()).json()["alerts"] == []


def test_the_admin_token_is_not_the_webhook_token_and_back(client: TestClient) -> None:
    assert client.post("/alerts/webhook", json=payload(), headers=_admin()).status_code == 401
    assert client.get("/alerts", headers=HOOK).status_code == 401
    assert client.get("/alerts").status_code == 401


def test_the_admin_view_keeps_the_admin_ip_allowlist(
    artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOMMNDR_ADMIN_JWT_SECRET", SECRET)
    get_settings.cache_clear()
    with TestClient(create_app(artifacts, tmp_path / "events"), client=("10.1.2.3", 50000)) as c:
        r = c.get("/alerts", headers=_admin())
    assert r.status_code == 403 and "10.1.2.3" in r.json()["error"]["message"]


def test_without_a_configured_token_the_webhook_is_off(artifacts: Path, tmp_path: Path) -> None:
    with TestClient(create_app(artifacts, tmp_path / "events")) as c:
        r = c.post("/alerts/webhook", json=payload(), headers=HOOK)
    assert r.status_code == 403 and "RECOMMNDR_ALERT_WEBHOOK_TOKEN" in r.json()["error"]["message"]


def test_a_short_token_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOMMNDR_ALERT_WEBHOOK_TOKEN", "short")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match=r"alert_webhook_token .* is 5 bytes"):
        get_settings()


def _bad(change: Any) -> dict[str, Any]:
    body = copy.deepcopy(payload())
    change(body)
    return body


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (_bad(lambda b: b.update(version="3")), "version"),
        (_bad(lambda b: b.update(alerts=[])), "alerts"),
        (_bad(lambda b: b.update(alerts=[alert()] * (MAX_ALERTS + 1))), "alerts"),
        (_bad(lambda b: b["alerts"][0].update(status="burning")), "alerts.0.status"),
        (_bad(lambda b: b["alerts"][0].update(startsAt="yesterday")), "alerts.0.startsAt"),
        (_bad(lambda b: b["alerts"][0].pop("labels")), "alerts.0.labels"),
        (_bad(lambda b: b["alerts"][0]["labels"].update(alertname=7)), "alerts.0.labels.alertname"),
        (_bad(lambda b: b["alerts"][0]["labels"].update({f"l{i}": "v" for i in range(70)})), "labels"),
        (_bad(lambda b: b["alerts"][0]["annotations"].update(description="d" * 5000)), "description"),
        (_bad(lambda b: b.update(truncatedAlerts=-1)), "truncatedAlerts"),
        (_bad(lambda b: b.update(truncatedAlerts="2")), "truncatedAlerts"),
        ([payload()], "body"),
    ],
)
def test_a_bad_body_is_a_422_naming_the_field(client: TestClient, body: Any, words: str) -> None:
    r = client.post("/alerts/webhook", json=body, headers=HOOK)
    assert r.status_code == 422 and words in r.json()["error"]["message"], r.text
    assert client.get("/alerts", headers=_admin()).json()["alerts"] == []


def test_not_json_and_too_large_bodies_are_refused(client: TestClient) -> None:
    r = client.post("/alerts/webhook", content=b"{", headers={**HOOK, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["message"] == "body: not valid JSON"
    big = json.dumps(payload(alert(pad="p" * 4000))).encode()
    big = big[:-1] + b" " * (MAX_WEBHOOK_BYTES + 1 - len(big)) + b"}"  # valid JSON, one byte too many
    r = client.post("/alerts/webhook", content=big, headers={**HOOK, "Content-Type": "application/json"})
    assert r.status_code == 413 and str(MAX_WEBHOOK_BYTES) in r.json()["error"]["message"]

    def streamed() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield big

    r = client.post(
        "/alerts/webhook", content=streamed(), headers={**HOOK, "Content-Type": "application/json"}
    )
    assert r.status_code == 413


def test_an_inbox_that_cannot_be_written_is_a_503(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(client.app.state.recommndr.alerts, "record", broken)  # type: ignore[attr-defined]
    r = client.post("/alerts/webhook", json=payload(), headers=HOOK)
    assert r.status_code == 503 and "retry" in r.json()["error"]["message"]


def test_the_openapi_document_declares_both_routes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    hook = doc["paths"]["/alerts/webhook"]["post"]
    assert set(hook["responses"]) == {"200", "401", "403", "413", "422", "503"}
    assert hook["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/AlertWebhookIn")
    schema = doc["components"]["schemas"]["AlertWebhookIn"]
    assert schema["properties"]["alerts"]["maxItems"] == MAX_ALERTS
    assert hook["security"] == [{"AlertWebhookToken": []}]
    listing = doc["paths"]["/alerts"]["get"]
    assert listing["security"] == [{"HTTPBearer": []}]
    assert {p["name"] for p in listing["parameters"]} == {"after", "limit"}


def test_the_metric_knows_every_alert_the_rules_define() -> None:
    import yaml

    rules = yaml.safe_load(RULES.read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert names == ALERT_NAMES
