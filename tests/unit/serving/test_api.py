"""The API in-process: every endpoint built so far, bad input, durability of accepted events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recommndr.serving.app import create_app

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def event_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("events")


@pytest.fixture(scope="module")
def client(artifacts: Path, event_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(artifacts, event_dir)) as c:
        yield c


def test_health_ready_models_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and len(ready.json()["model_version"]) == 12
    models = client.get("/models").json()
    assert models["traffic"] == {"champion": 1.0}
    assert models["models"][0]["version"] == ready.json()["model_version"]
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/health", "/ready", "/recommendations/{user_id}", "/similar_items/{item_id}",
              "/frequently_bought_together/{item_id}", "/popular", "/products", "/products/{item_id}",
              "/events", "/models", "/metrics"):  # fmt: skip
        assert p in paths


def test_recommendations_for_a_known_user(client: TestClient, tiny_dataset: Path) -> None:
    import polars as pl

    ev = pl.read_parquet(tiny_dataset / "events.parquet")
    user = int(ev["user_id"].value_counts(sort=True)["user_id"][0])
    r = client.get(f"/recommendations/{user}?k=10")
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == user and body["variant"] == "champion" and body["cold_start"] is False
    items = body["items"]
    assert len(items) == 10 and len({i["item_id"] for i in items}) == 10
    assert all(isinstance(i["reason"], str) and i["reason"] for i in items)
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)


def test_unknown_user_gets_cold_start_popularity(client: TestClient) -> None:
    body = client.get("/recommendations/987654321?k=5").json()
    assert body["cold_start"] is True
    popular = client.get("/popular?k=5").json()["items"]
    assert [i["item_id"] for i in body["items"]] == [i["item_id"] for i in popular]
    assert all(i["reason"].startswith("popular in ") for i in body["items"])


def test_category_filter(client: TestClient) -> None:
    for path in ("/recommendations/5?k=8&category=Electronics", "/popular?k=8&category=electronics"):
        items = client.get(path).json()["items"]
        assert items
        for it in items:
            assert client.get(f"/products/{it['item_id']}").json()["category_l1"] == "Electronics"


def test_similar_items_and_fbt(client: TestClient, artifacts: Path) -> None:
    sim = client.get("/similar_items/10?k=5").json()
    assert sim["item_id"] == 10 and len(sim["items"]) == 5
    assert 10 not in [i["item_id"] for i in sim["items"]]
    with np.load(artifacts / "copurchase.npz") as z:
        indptr, nbr = z["indptr"], z["nbr"]
    with np.load(artifacts / "catalog.npz") as z:
        ids = z["item_ids"]
    a = int(np.flatnonzero(np.diff(indptr) > 0)[0])
    fbt = client.get(f"/frequently_bought_together/{ids[a]}?k=5").json()
    assert fbt["items"][0]["item_id"] == int(ids[nbr[indptr[a]]])
    for path in ("/similar_items/99999999", "/frequently_bought_together/99999999", "/products/99999999"):
        r = client.get(path)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found" and "99999999" in r.json()["error"]["message"]


def test_products_filter_search_and_pages(client: TestClient) -> None:
    everything = client.get("/products?page_size=100").json()
    assert everything["total"] == 600 and len(everything["items"]) == 100
    page2 = client.get("/products?page=2&page_size=100").json()["items"]
    assert {p["item_id"] for p in page2}.isdisjoint({p["item_id"] for p in everything["items"]})
    cat = client.get("/products?category=Grocery%20%26%20Gourmet&page_size=100").json()
    assert 0 < cat["total"] < 600 and all(p["category_l1"] == "Grocery & Gourmet" for p in cat["items"])
    found = client.get("/products?q=premium%20snacks").json()
    assert found["total"] > 0 and all("snacks" in p["title"].lower() for p in found["items"])


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "names"),
    [
        ("get", "/recommendations/5?k=0", None, 422, "query.k"),
        ("get", "/recommendations/5?k=10000", None, 422, "query.k"),
        ("get", "/recommendations/abc", None, 422, "path.user_id"),
        ("get", "/similar_items/x1", None, 422, "path.item_id"),
        ("get", "/products?page=0", None, 422, "query.page"),
        ("post", "/events", b"{not json", 422, "not valid JSON"),
        ("post", "/events", {"user_id": 1, "item_id": 2}, 422, "event.event_type"),
        ("post", "/events", {"user_id": 1, "item_id": 2, "event_type": "wishlist"}, 422, "event.event_type"),
        ("post", "/events", [{"user_id": 1, "item_id": 2, "event_type": "view"}, {"user_id": "x"}], 422, "events[1].user_id"),
        ("post", "/events", {"user_id": 1, "item_id": 2, "event_type": "view", "price": -3}, 422, "event.price"),
        ("post", "/events", [], 422, "empty"),
        ("get", "/nowhere", None, 404, "Not Found"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_4xx_naming_the_problem(
    client: TestClient, method: str, path: str, body: object, status: int, names: str
) -> None:
    if method == "get":
        r = client.get(path)
    elif isinstance(body, bytes):
        r = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = client.post(path, json=body)
    assert r.status_code == status
    err = r.json()["error"]
    assert names in err["message"] and err["code"]


def test_events_are_durable_and_counted(client: TestClient, event_dir: Path) -> None:
    one = {"user_id": 7, "item_id": 3, "event_type": "view", "variant": "champion"}
    r = client.post("/events", json=one)
    assert r.status_code == 202 and r.json()["accepted"] == 1
    many = [
        {"user_id": 7, "item_id": 3, "event_type": "add_to_cart", "variant": "champion", "event_id": f"x{i}"}
        for i in range(3)
    ]
    r = client.post("/events", json=many)
    assert r.status_code == 202 and r.json()["event_ids"] == ["x0", "x1", "x2"]
    lines = [json.loads(x) for f in event_dir.glob("events-*.jsonl") for x in f.read_text().splitlines()]
    assert {ln["event_id"] for ln in lines} >= {"x0", "x1", "x2", r.json()["event_ids"][0]}
    assert all(ln["ts"].endswith("+00:00") for ln in lines)
    metrics = client.get("/metrics").text
    assert 'recommndr_events_total{event_type="add_to_cart",variant="champion"} 3.0' in metrics
    assert 'recommndr_request_seconds_count{endpoint="/events",variant="champion"}' in metrics
    assert "recommndr_model_info" in metrics and "recommndr_ready 1.0" in metrics


def test_variant_rates_are_computed_from_lists_served_and_events(artifacts: Path, tmp_path: Path) -> None:
    with TestClient(create_app(artifacts, tmp_path / "ev")) as c:
        for user in range(1, 9):  # 8 lists, all champion
            assert c.get(f"/recommendations/{user}?k=3").status_code == 200
        events = [{"user_id": 1, "item_id": 3, "event_type": t, "variant": "champion", "event_id": f"e{i}"}
                  for i, t in enumerate(["view"] * 4 + ["add_to_cart"] * 2 + ["purchase"])]  # fmt: skip
        events.append({"user_id": 2, "item_id": 3, "event_type": "view", "event_id": "no-variant"})
        assert c.post("/events", json=events).status_code == 202
        text = c.get("/metrics").text
    assert 'recommndr_variant_rate{rate="ctr",variant="champion"} 0.5' in text  # 4 views / 8 lists
    assert 'recommndr_variant_rate{rate="atc",variant="champion"} 0.5' in text  # 2 carts / 4 views
    assert 'recommndr_variant_rate{rate="cvr",variant="champion"} 0.25' in text  # 1 purchase / 4 views
    assert 'variant="none"' not in text.split("recommndr_variant_rate", 1)[1]


def test_without_a_model_ready_says_why(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path / "nothing", tmp_path / "ev")) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and "manifest.json" in r.json()["error"]["message"]
        r = c.get("/recommendations/1")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        assert c.get("/health").status_code == 200


def test_ranker_failure_degrades_to_retrieval_order(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = client.app.state.recommndr.model  # type: ignore[attr-defined]

    def broken(X: object) -> object:
        raise RuntimeError("onnxruntime session lost")

    ranker = model.bundle.ranker
    monkeypatch.setattr(ranker, "score", broken)
    r = client.get("/recommendations/5?k=5")
    assert r.status_code == 200
    body = r.json()
    assert body["degraded"] == ["ranker_unavailable"] and len(body["items"]) == 5
    assert 'recommndr_degraded_total{reason="ranker_unavailable"}' in client.get("/metrics").text
    monkeypatch.undo()
    again = client.get("/recommendations/5?k=5").json()
    assert again["degraded"] == [], again


def test_event_storage_failure_is_a_clear_retryable_503(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = client.app.state.recommndr.events  # type: ignore[attr-defined]

    def disk_full(data: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log, "_write", disk_full)
    r = client.post("/events", json={"user_id": 1, "item_id": 3, "event_type": "view"})
    assert r.status_code == 503
    assert r.json()["error"] == {
        "code": "events_unavailable",
        "message": "the events were not stored (No space left on device); retry",
    }


def test_price_range_categories_and_demo_shoppers(client: TestClient, artifacts: Path) -> None:
    import pandas as pd

    products = pd.read_parquet(artifacts / "products.parquet")
    lo, hi = float(products.price.quantile(0.25)), float(products.price.quantile(0.5))
    r = client.get("/products", params={"min_price": lo, "max_price": hi, "page_size": 100}).json()
    assert r["total"] == int(((products.price >= lo) & (products.price <= hi)).sum()) > 0
    assert all(lo <= p["price"] <= hi for p in r["items"])
    empty = client.get("/products", params={"min_price": 10, "max_price": 5})  # an empty range
    assert empty.status_code == 200 and empty.json()["total"] == 0 and empty.json()["items"] == []
    assert client.get("/products", params={"min_price": -1}).status_code == 422
    tree = client.get("/categories").json()["categories"]
    assert sum(c["count"] for c in tree) == len(products)
    assert {c["name"] for c in tree} == set(products.category_l1)
    assert all(c["count"] == sum(ch["count"] for ch in c["children"]) for c in tree)
    shoppers = client.get("/shoppers", params={"n": 4}).json()["shoppers"]
    assert 1 <= len(shoppers) <= 4
    assert len({s["favourite_category"] for s in shoppers}) == len(shoppers)
    for s in shoppers:  # real shoppers with history get the personal path
        assert client.get(f"/recommendations/{s['user_id']}").json()["cold_start"] is False
    assert client.get("/shoppers", params={"n": 0}).status_code == 422


def test_trending_and_products_by_ids(client: TestClient, artifacts: Path) -> None:
    from recommndr.loading import load_bundle

    t = load_bundle(artifacts).features
    r = client.get("/trending", params={"k": 5})
    assert r.status_code == 200
    items = r.json()["items"]
    assert 1 <= len(items) <= 5 and all(i["reason"] == "trending" for i in items)
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    ids = load_bundle(artifacts).catalogue.item_ids
    for i in items:  # every trending product had enough events last week, and rose
        j = int(np.searchsorted(ids, i["item_id"]))
        assert t.item_events_7d[j] >= 3
    cat = client.get("/products", params={"page_size": 1}).json()["items"][0]["category_l1"]
    in_cat = client.get("/trending", params={"k": 5, "category": cat}).json()["items"]
    for i in in_cat:
        assert client.get(f"/products/{i['item_id']}").json()["category_l1"] == cat
    want = [int(ids[3]), int(ids[1]), 999_999_999]
    r = client.get("/products", params={"ids": ",".join(map(str, want))}).json()
    assert [p["item_id"] for p in r["items"]] == want[:2] and r["missing"] == [999_999_999]
    assert client.get("/products", params={"ids": "1,x"}).status_code == 422
    assert client.get("/products", params={"ids": ",".join(["1"] * 101)}).status_code == 422
