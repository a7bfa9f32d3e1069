"""Exploration through the API: the share of a list given to new products, per request and by
the API's setting, and its refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.serving.app import create_app
from recommndr.serving.model import ServingModel

pytestmark = pytest.mark.unit
K = 10


@pytest.fixture(scope="module")
def client(artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("explore")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECOMMNDR_ONLINE_STORE_PATH", str(tmp / "online.db"))
        mp.setenv("RECOMMNDR_EXPLORE_SHARE", "0.1")
        get_settings.cache_clear()
        with TestClient(create_app(artifacts, tmp / "events")) as c:
            yield c
    get_settings.cache_clear()


def _items(c: TestClient, user: int, **params: Any) -> list[dict[str, Any]]:
    r = c.get(f"/recommendations/{user}", params={"k": K, **params})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    assert len(items) == K
    return items


def test_a_share_of_the_list_goes_to_new_products(client: TestClient) -> None:
    m: ServingModel = client.app.state.recommndr.slots.serving()  # type: ignore[attr-defined]
    assert m.bundle is not None and m.ranking is not None
    new = set(m.catalogue.item_ids[m.ranking.new_products].tolist())
    assert new, "the tiny shop has products without events or new arrivals"
    user = int(m.bundle.user_ids[3])
    plain = _items(client, user, explore=0)
    assert not any(i["reason"].startswith("new in") for i in plain)
    assert [i["item_id"] for i in plain] == [r.item_id for r in m.recommend(user, K)[0]]
    for share, places in ((0.2, [4, 9]), (None, [9])):  # None: the API's setting, 0.1
        items = _items(client, user, **({} if share is None else {"explore": share}))
        explored = [j for j, i in enumerate(items) if i["reason"].startswith("new in")]
        assert explored == places
        assert {items[j]["item_id"] for j in explored} <= new
        rest = [i["item_id"] for j, i in enumerate(items) if j not in places]
        assert rest == [i["item_id"] for i in plain][: len(rest)]
        scores = [i["score"] for i in items]
        assert np.all(np.diff(scores) <= 1e-6), "the list stays sorted by score"


@pytest.mark.parametrize("value", ["0.6", "-0.1", "lots", "nan"])
def test_an_exploration_share_outside_0_to_half_is_a_422(client: TestClient, value: str) -> None:
    r = client.get("/recommendations/5", params={"explore": value})
    assert r.status_code == 422, r.text
    assert "explore" in r.text


def test_the_share_is_documented(client: TestClient) -> None:
    params = {
        p["name"]: p
        for p in client.get("/openapi.json").json()["paths"]["/recommendations/{user_id}"]["get"][
            "parameters"
        ]
    }
    schema = params["explore"]["schema"]
    assert "new products" in params["explore"]["description"]
    assert any(s.get("maximum") == 0.5 and s.get("minimum") == 0.0 for s in schema.get("anyOf", [schema]))
