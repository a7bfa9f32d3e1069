"""What a stranger on the network can send: ids outside int64, oversized or endless bodies,
forged A/B variants. Each is refused with a 4xx JSON error, or cannot move a metric."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recommndr.serving.app import create_app

pytestmark = pytest.mark.unit
INT64_MAX = 2**63 - 1


@pytest.fixture(scope="module")
def client(artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with TestClient(create_app(artifacts, tmp_path_factory.mktemp("events"))) as c:
        yield c


@pytest.mark.parametrize(
    "path",
    [
        f"/recommendations/{INT64_MAX + 1}",
        f"/recommendations/{-(2**63) - 1}",
        f"/similar_items/{INT64_MAX + 1}",
        f"/frequently_bought_together/{2**70}",
        f"/products/{INT64_MAX + 1}",
    ],
)
def test_an_id_outside_int64_is_a_422_naming_it(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request" and "_id" in r.json()["error"]["message"]


def test_the_largest_int64_user_is_served_and_personalisation_stays_on(client: TestClient) -> None:
    r = client.get(f"/recommendations/{INT64_MAX}?k=3")
    assert r.status_code == 200 and r.json()["degraded"] == [] and r.json()["cold_start"] is True
    after = client.get("/recommendations/5?k=3").json()
    assert after["degraded"] == [] and "unavailable" not in client.get("/ready").json()["online_store"]


def test_events_with_ids_outside_int64_are_refused(client: TestClient) -> None:
    r = client.post("/events", json={"user_id": INT64_MAX + 1, "item_id": 3, "event_type": "view"})
    assert r.status_code == 422 and "event.user_id" in r.json()["error"]["message"]


def test_products_by_ids_beyond_int64_are_missing_not_an_error(client: TestClient) -> None:
    r = client.get("/products", params={"ids": f"{INT64_MAX + 5},1"})
    assert r.status_code == 200 and INT64_MAX + 5 in r.json()["missing"]
    bad = client.get("/products", params={"ids": "1,two"})
    assert bad.status_code == 422 and "query.ids" in bad.json()["error"]["message"]


def test_a_body_over_the_limit_is_a_413_by_its_content_length(client: TestClient) -> None:
    limit = client.app.state.recommndr.settings.max_event_body_bytes  # type: ignore[attr-defined]
    body = b"[" + b" " * limit + b"]"
    r = client.post("/events", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_a_streamed_body_without_a_length_is_cut_at_the_limit(client: TestClient) -> None:
    limit = client.app.state.recommndr.settings.max_event_body_bytes  # type: ignore[attr-defined]
    sent = 0

    def endless() -> Iterator[bytes]:  # chunked: no Content-Length to refuse up front
        nonlocal sent
        yield b"["
        while sent < 4 * limit:
            sent += 65536
            yield b" " * 65536
        yield b"]"

    r = client.post("/events", content=endless(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_a_content_length_that_is_not_a_number_is_refused(client: TestClient) -> None:
    r = client.post(
        "/events", content=b"{}", headers={"content-type": "application/json", "content-length": "x"}
    )
    assert r.status_code in (400, 422)


def test_a_variant_the_api_does_not_serve_is_refused(client: TestClient) -> None:
    ev = {"user_id": 1, "item_id": 3, "event_type": "view", "variant": 'evil"} 1\nx{'}
    r = client.post("/events", json=ev)
    assert r.status_code == 422 and "event.variant" in r.json()["error"]["message"]
    assert "evil" not in client.get("/metrics").text


def test_event_metrics_count_the_assigned_variant_not_the_claimed_one(client: TestClient) -> None:
    # no challenger is loaded: every user is the champion's, whatever the event claims
    for _ in range(3):
        ev = {"user_id": 7, "item_id": 3, "event_type": "purchase", "variant": "challenger"}
        assert client.post("/events", json=ev).status_code == 202
    text = client.get("/metrics").text
    assert 'recommndr_events_total{event_type="purchase",variant="champion"}' in text
    assert 'variant="challenger"' not in text


def test_many_events_within_the_limit_are_accepted(client: TestClient) -> None:
    batch = [{"user_id": i, "item_id": 3, "event_type": "view"} for i in range(1000)]
    r = client.post(
        "/events", content=json.dumps(batch).encode(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 202 and r.json()["accepted"] == 1000


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_time_with_no_utc_equivalent_is_a_422(client: TestClient, ts: str) -> None:
    r = client.post("/events", json={"user_id": 1, "item_id": 3, "event_type": "view", "ts": ts})
    assert r.status_code == 422 and "event.ts" in r.json()["error"]["message"]


def test_an_event_from_the_future_is_kept_but_its_stream_time_is_capped() -> None:
    """A ``ts`` years ahead is schema-valid (accepted, kept as sent), but the event time the stream
    reads (``ts_ms``) is at most 5 minutes after receipt: one event cannot move the job's watermark
    past every real event."""
    from datetime import UTC, datetime, timedelta

    from recommndr.serving.events import EPOCH, MAX_FUTURE, MILLISECOND, EventIn, event_records

    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    far = EventIn.model_validate(
        {"user_id": 1, "item_id": 3, "event_type": "view", "ts": "7479-04-14T05:01:46Z"}
    )
    near = EventIn.model_validate({"user_id": 1, "item_id": 3, "event_type": "view",
                                   "ts": (now + timedelta(minutes=2)).isoformat()})  # fmt: skip
    _, lines = event_records([far, near], now, ts_ms=True)
    rec_far, rec_near = (json.loads(line) for line in lines)
    assert rec_far["ts"].startswith("7479-04-14")
    assert rec_far["ts_ms"] == (now + MAX_FUTURE - EPOCH) // MILLISECOND
    assert rec_near["ts_ms"] == (now + timedelta(minutes=2) - EPOCH) // MILLISECOND


def test_serve_never_lets_uvicorn_rewrite_the_client_address(
    artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from recommndr.cli import app

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append(k))
    monkeypatch.setenv("RECOMMNDR_EVENT_LOG_DIR", str(tmp_path / "events"))
    monkeypatch.setenv(
        "RECOMMNDR_ARTIFACTS_DIR", str(artifacts)
    )  # restored after (serve sets it for workers)
    for workers in ("1", "2"):
        r = CliRunner().invoke(
            app, ["serve", "--artifacts", str(artifacts), "--workers", workers, "--port", "1"]
        )
        assert r.exit_code == 0, r.output
    assert len(calls) == 2 and all(k["proxy_headers"] is False for k in calls)
