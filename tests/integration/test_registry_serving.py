"""The API following the MLflow registry (SQLite): the champion and challenger aliases pick the
bundles it serves, and moving an alias hot-swaps models without a restart or a failed request."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.params import TrainConfig
from recommndr.serving.app import create_app
from recommndr.training.pipeline import train
from tests.hammer import Hammer

pytestmark = pytest.mark.integration


def _wait(pred: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail("timed out waiting for the registry change to be served")


def test_aliases_choose_the_served_bundles_and_moving_one_hot_swaps(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from recommndr.lifecycle.train import register
    from recommndr.registry.tracking import RANKER_MODEL, RETRIEVAL_MODEL

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    bundles = []
    for n, ndcg in ((30, 0.30), (10, 0.20)):  # the second is worse: it stays challenger
        out = tmp_path / f"art{n}"
        cfg = TrainConfig.model_validate({"ranker": {"n_estimators": n}})
        res = train(tiny_dataset, out, cfg)
        reg = register(out, cfg, res.timings, {"two_stage": {"ndcg@10": ndcg}}, uri)
        bundles.append(reg)
    assert bundles[0].champion and not bundles[1].champion
    monkeypatch.setenv("RECOMMNDR_REGISTRY_URI", uri)
    monkeypatch.setenv("RECOMMNDR_ARTIFACT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RECOMMNDR_RELOAD_INTERVAL_S", "0.2")
    get_settings.cache_clear()
    with TestClient(create_app(None, tmp_path / "events")) as c:
        models = c.get("/models").json()["models"]
        assert [m["variant"] for m in models] == ["champion", "challenger"]
        first_champion, first_challenger = models[0]["version"], models[1]["version"]
        assert first_champion != first_challenger

        def recommend(thread: int, n: int) -> str:
            r = c.get(f"/recommendations/{(thread + 7 * n) % 300}", params={"k": 5})
            assert r.status_code == 200, f"{r.status_code} {r.text}"
            return str(r.json()["model_version"])

        hammer = Hammer(recommend, 3)
        hammer.start()
        try:
            hammer.wait_calls(3)  # every thread is under way on the first champion
            published_at = time.monotonic()
            client = MlflowClient(tracking_uri=uri)
            for name in (RETRIEVAL_MODEL, RANKER_MODEL):  # promote the challenger by hand
                client.set_registered_model_alias(name, "champion", bundles[1].versions[name])
            _wait(lambda: c.get("/ready").json().get("model_version") == first_challenger)
            seen_at = time.monotonic()
            # champion and challenger now name the same bundle: no challenger, everyone on the champion
            _wait(lambda: [m["variant"] for m in c.get("/models").json()["models"]] == ["champion"])
            hammer.wait_calls(3, started_after=seen_at)
        finally:
            hammer.stop()
        hammer.check_swap(first_champion, first_challenger, published_at, seen_at)
        assert c.get("/models").json()["traffic"] == {"champion": 1.0}
