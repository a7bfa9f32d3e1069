"""Online features in the request path (SQLite store) and each way the API degrades instead of
failing: online store down -> batch features; models unloadable -> popularity, /ready saying why."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recommndr.serving.app import create_app

pytestmark = pytest.mark.unit
NEW_USER = 987_654_321


@pytest.fixture
def client(artifacts: Path, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(artifacts, tmp_path / "events")) as c:
        yield c


def _products(artifacts: Path) -> pd.DataFrame:
    return pd.read_parquet(artifacts / "products.parquet").set_index("item_id")


def test_a_new_shoppers_views_personalise_the_next_list(client: TestClient, artifacts: Path) -> None:
    cold = client.get(f"/recommendations/{NEW_USER}").json()
    assert cold["cold_start"] and cold["degraded"] == []
    products = _products(artifacts)
    # a product outside the most popular category, so the change is visible
    top = Counter(products.loc[[i["item_id"] for i in cold["items"]], "category_l1"]).most_common(1)[0][0]
    viewed = products[products.category_l1 != top].index[:2].tolist()
    for item in viewed:
        assert (
            client.post(
                "/events", json={"user_id": NEW_USER, "item_id": item, "event_type": "view"}
            ).status_code
            == 202
        )
    warm = client.get(f"/recommendations/{NEW_USER}").json()
    assert not warm["cold_start"] and warm["degraded"] == []
    cats = Counter(products.loc[[i["item_id"] for i in warm["items"]], "category_l1"])
    assert cats.most_common(1)[0][0] == products.loc[viewed[0], "category_l1"], cats
    assert any("because you viewed" in i["reason"] or "more in" in i["reason"] for i in warm["items"])


def test_a_durable_bought_since_training_is_not_recommended_again(
    client: TestClient, artifacts: Path
) -> None:
    from recommndr.loading import load_bundle

    bundle = load_bundle(artifacts)
    user = int(bundle.user_ids[0])
    items = [i["item_id"] for i in client.get(f"/recommendations/{user}", params={"k": 50}).json()["items"]]
    l3 = bundle.catalogue.l3[bundle.catalogue.item_ids.searchsorted(items)]
    durable = [i for i, c in zip(items, l3, strict=True) if not bundle.exclusions.repeatable_l3[c]]
    assert durable, "the tiny shop should have durables in a top 50"
    bought = durable[0]
    r = client.post(
        "/events", json={"user_id": user, "item_id": bought, "event_type": "purchase", "quantity": 1}
    )
    assert r.status_code == 202
    after = [i["item_id"] for i in client.get(f"/recommendations/{user}", params={"k": 50}).json()["items"]]
    assert bought not in after


class _Down:
    name = "redis"

    def read(self, user_id: int) -> None:
        raise ConnectionError("connection refused")

    def read_many(self, user_ids: list[int]) -> dict[int, object]:
        raise ConnectionError("connection refused")

    def write(self, records: object, ts_us: int) -> None:
        raise ConnectionError("connection refused")

    def close(self) -> None:
        pass


def test_online_store_down_serves_batch_features_and_says_so(client: TestClient, artifacts: Path) -> None:
    state = client.app.state.recommndr  # type: ignore[attr-defined]
    state.online.store = _Down()
    r = client.get(f"/recommendations/{NEW_USER}")
    assert r.status_code == 200 and r.json()["degraded"] == ["online_features_unavailable"]
    assert len(r.json()["items"]) == 10
    item = int(_products(artifacts).index[0])
    assert (
        client.post("/events", json={"user_id": 1, "item_id": item, "event_type": "view"}).status_code == 202
    )
    ready = client.get("/ready").json()
    assert "unavailable" in ready["online_store"] and "connection refused" in ready["online_store"]
    assert 'recommndr_degraded_total{reason="online_features_unavailable"}' in client.get("/metrics").text


def test_unloadable_models_serve_popularity_and_ready_says_why(artifacts: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(artifacts, broken)
    with (broken / "ranker.onnx").open("ab") as f:
        f.write(b"tampered")
    with TestClient(create_app(broken, tmp_path / "events")) as c:
        ready = c.get("/ready")
        assert ready.status_code == 503
        message = ready.json()["error"]["message"]
        assert "popularity only" in message and "ranker.onnx" in message
        r = c.get(f"/recommendations/{NEW_USER}", params={"k": 5})
        assert r.status_code == 200 and r.json()["degraded"] == ["model_unavailable"]
        assert len(r.json()["items"]) == 5 and r.json()["items"][0]["reason"].startswith("popular in")
        assert c.get("/popular").status_code == 200 and c.get("/products").json()["total"] > 0
        item = r.json()["items"][0]["item_id"]
        sim = c.get(f"/similar_items/{item}")
        assert sim.status_code == 503 and sim.json()["error"]["code"] == "model_unavailable"
        assert 'recommndr_degraded_total{reason="model_unavailable"}' in c.get("/metrics").text


def test_nothing_loadable_is_not_ready_and_answers_503(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path / "empty", tmp_path / "events")) as c:
        assert c.get("/ready").status_code == 503
        r = c.get("/recommendations/1")
        assert r.status_code == 503 and "manifest.json" in r.json()["error"]["message"]


def test_inline_and_threaded_recommendations_agree(
    artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recommndr.config import get_settings

    answers = []
    for threads in ("0", "2"):
        monkeypatch.setenv("RECOMMNDR_RECOMMEND_THREADS", threads)
        get_settings.cache_clear()
        with TestClient(create_app(artifacts, tmp_path / f"events{threads}")) as c:
            assert (c.app.state.recommndr.pool is None) == (threads == "0")  # type: ignore[attr-defined]
            answers.append(
                [c.get(f"/recommendations/{u}", params={"k": 5}).json()["items"] for u in (1, 5, 9)]
            )
    assert answers[0] == answers[1]
