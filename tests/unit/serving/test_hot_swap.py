"""Hot swap: a new champion published while requests are in flight replaces the old one with
no failed request; every client thread goes from the old version to the new one, never back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.params import TrainConfig
from recommndr.registry.store import LocalStore
from recommndr.serving.app import create_app
from recommndr.training.pipeline import train
from tests.hammer import Hammer

pytestmark = pytest.mark.unit


def test_hot_swap_under_concurrent_requests(
    artifacts: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = tmp_path / "second"
    train(tiny_dataset, second, TrainConfig.model_validate({"seed": 7, "ranker": {"n_estimators": 25}}))
    store = LocalStore(tmp_path / "store")
    store.publish(artifacts, "champion")
    monkeypatch.setenv("RECOMMNDR_RELOAD_INTERVAL_S", "0.1")
    get_settings.cache_clear()

    with TestClient(create_app(tmp_path / "store" / "champion", tmp_path / "events")) as c:
        first = c.get("/ready").json()["model_version"]

        def recommend(thread: int, n: int) -> str:
            r = c.get(f"/recommendations/{(thread + 7 * n) % 300}?k=5")
            assert r.status_code == 200, f"{r.status_code} {r.text}"
            return str(r.json()["model_version"])

        hammer = Hammer(recommend, 4)
        hammer.start()
        try:
            hammer.wait_calls(3)  # every thread is under way on the old model
            published_at = time.monotonic()
            store.publish(second, "champion")
            deadline = time.monotonic() + 20
            while (now := c.get("/ready").json().get("model_version")) in (first, None):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            seen_at = time.monotonic()
            hammer.wait_calls(3, started_after=seen_at)
        finally:
            hammer.stop()

    assert now != first, "the new champion was never served"
    hammer.check_swap(first, now, published_at, seen_at)
