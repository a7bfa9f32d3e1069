"""The API following the MLflow registry (SQLite): the champion and challenger aliases pick the
bundles it serves, and moving an alias hot-swaps models without a restart or a failed request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.serving.app import create_app
from recommndr.training.config import TrainConfig
from recommndr.training.pipeline import train

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

    from recommndr.registry.tracking import RANKER_MODEL, RETRIEVAL_MODEL, log_and_register

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    bundles = []
    for n, ndcg in ((30, 0.30), (10, 0.20)):  # the second is worse: it stays challenger
        out = tmp_path / f"art{n}"
        cfg = TrainConfig.model_validate({"ranker": {"n_estimators": n}})
        res = train(tiny_dataset, out, cfg)
        reg = log_and_register(out, cfg, res.timings, {"two_stage": {"ndcg@10": ndcg}}, uri)
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
        errors: list[str] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                r = c.get("/recommendations/1", params={"k": 5})
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text}")

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        client = MlflowClient(tracking_uri=uri)
        for name in (RETRIEVAL_MODEL, RANKER_MODEL):  # promote the challenger by hand
            client.set_registered_model_alias(name, "champion", bundles[1].versions[name])
        _wait(lambda: c.get("/ready").json().get("model_version") == first_challenger)
        # champion and challenger now name the same bundle: no challenger, everyone on the champion
        _wait(lambda: [m["variant"] for m in c.get("/models").json()["models"]] == ["champion"])
        stop.set()
        for t in threads:
            t.join()
        assert errors == []
        assert c.get("/models").json()["traffic"] == {"champion": 1.0}
