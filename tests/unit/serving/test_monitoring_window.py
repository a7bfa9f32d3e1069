"""The API's drift window: what it served and received, behind the admin guard, and the count of
refused events."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import numpy as np
import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.monitoring import drift
from recommndr.monitoring.reference import Reference
from recommndr.monitoring.window import Window
from recommndr.serving.app import create_app

pytestmark = pytest.mark.unit
SECRET = "test-admin-key-0123456789abcdef0123"


def _auth() -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": "ops", "iss": "recommndr", "aud": "recommndr-admin", "iat": now, "exp": now + 300}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


@pytest.fixture
def client(artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("RECOMMNDR_ADMIN_JWT_SECRET", SECRET)
    get_settings.cache_clear()
    with TestClient(create_app(artifacts, tmp_path / "events"), client=("127.0.0.1", 50000)) as c:
        yield c  # type: ignore[misc]
    get_settings.cache_clear()


def test_the_trained_bundle_carries_a_calibrated_reference(artifacts: Path) -> None:
    manifest = (artifacts / "manifest.json").read_text()
    assert "monitoring.npz" in manifest
    ref = Reference.load(artifacts / "monitoring.npz")
    assert {"score", "margin", "price", "als_score"} <= set(ref.numeric)
    assert ref.calibration["windows"] > 0
    # every quantity the calibration windows were large enough to test has its threshold
    assert {"score", "price", "category", "event_type"} <= set(ref.thresholds)
    assert set(ref.thresholds) <= set(ref.numeric) | set(ref.categorical)


def test_served_lists_and_received_events_reach_the_window(client: TestClient, artifacts: Path) -> None:
    users = [int(u["user_id"]) for u in client.get("/shoppers?n=20").json()["shoppers"]]
    for u in users:
        assert client.get(f"/recommendations/{u}?k=10").status_code == 200
    item = client.get(f"/recommendations/{users[0]}?k=1").json()["items"][0]["item_id"]
    r = client.post("/events", json=[{"user_id": users[0], "item_id": item, "event_type": "view"}] * 3)
    assert r.status_code == 202
    assert (
        client.post("/events", json=[{"user_id": 1, "item_id": item, "event_type": "bogus"}] * 2).status_code
        == 422
    )
    assert (
        client.post("/events", content=b"{not json", headers={"Content-Type": "application/json"}).status_code
        == 422
    )
    body = client.get("/monitoring/window?seconds=600", headers=_auth()).json()
    w = Window.from_json(body["window"])
    assert body["variant"] == "champion" and body["model_version"]
    assert w.lists_seen == len(users) + 1  # the warm-up's lists are not counted
    assert w.features.shape == (3 * w.lists_seen, len(w.feature_names))
    assert len(w.event_type) == 3 and w.failures == 3 and w.events_seen == 6
    assert np.isfinite(w.price).all() and w.category[0] != "(unknown)"
    metrics = client.get("/metrics").text
    assert "recommndr_events_rejected_total 3.0" in metrics
    # the window is what the drift check reads
    report = drift.check(Reference.load(artifacts / "monitoring.npz"), w)
    assert report["validation"]["failures"] == 3 and report["lists"] == w.lists_seen


def test_the_window_keeps_lists_as_the_reference_ranked_them(client: TestClient, artifacts: Path) -> None:
    users = [int(u["user_id"]) for u in client.get("/shoppers?n=20").json()["shoppers"]]
    for _ in range(3):
        for u in users:  # the API's default exploration share (0.1) places new products
            assert client.get(f"/recommendations/{u}?k=10").status_code == 200
    category = client.get("/categories").json()["categories"][0]["name"]
    for u in users[:5]:  # filtered lists are not what the reference describes: not kept
        client.get(f"/recommendations/{u}?k=10&category={category}")
        client.get(f"/recommendations/{u}?k=10&exclude=viewed")
    w = Window.from_json(client.get("/monitoring/window", headers=_auth()).json()["window"])
    assert w.lists_seen == 3 * len(users)  # every unfiltered list, none of the filtered ones
    assert not (w.sources & 8).any()  # explored slots are left out of the sources
    report = drift.check(Reference.load(artifacts / "monitoring.npz"), w)
    assert report["features"]["source"]["n"] >= 100 and not report["features"]["source"]["drift"]


def test_the_window_is_admin_only_and_its_parameters_are_bounded(client: TestClient) -> None:
    assert client.get("/monitoring/window").status_code == 401
    assert client.get("/monitoring/window?seconds=0", headers=_auth()).status_code == 422
    assert client.get("/monitoring/window?seconds=999999", headers=_auth()).status_code == 422
    assert client.get("/monitoring/window?variant=other", headers=_auth()).status_code == 422
    r = client.get("/monitoring/window?variant=challenger", headers=_auth())
    assert r.status_code == 404 and r.json()["error"]["code"] == "no_model"
