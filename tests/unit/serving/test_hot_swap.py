"""Hot swap: a new champion published while requests are in flight replaces the old one with
no failed request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.registry.store import LocalStore
from recommndr.serving.app import create_app
from recommndr.training.config import TrainConfig
from recommndr.training.pipeline import train

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
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    with TestClient(create_app(tmp_path / "store" / "champion", tmp_path / "events")) as c:
        first = c.get("/ready").json()["model_version"]

        def hammer(offset: int) -> None:
            u = offset
            while not stop.is_set():
                r = c.get(f"/recommendations/{u % 300}?k=5")
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json()["model_version"])
                u += 7

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        store.publish(second, "champion")
        deadline = time.monotonic() + 20
        while c.get("/ready").json()["model_version"] == first and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        now = c.get("/ready").json()["model_version"]

    assert now != first
    assert statuses and set(statuses) == {200}
    assert first in versions and now in versions
    assert versions.index(now) > versions.index(first)
