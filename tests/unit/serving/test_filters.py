"""``/recommendations`` filters (issue 11): ``exclude=purchased,carted,viewed`` leaves out what the
shopper has in those states, as the model knows it from training and the online store since;
``exclude_items`` leaves out product ids. On the tiny shop: each filter removes a product the
list held without it and the list stays k long; cold users, users known only online, the
popularity fallback; the 422s; and the OpenAPI document's patterns are what the API accepts."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.serving.app import create_app
from recommndr.serving.filters import EXCLUDE_ITEMS_PATTERN, EXCLUDE_PATTERN, INT64_MAX
from recommndr.serving.model import ServingModel

pytestmark = pytest.mark.unit
K = 10
NEW_USER = 876_543_210
EVENT = {"viewed": "view", "carted": "add_to_cart", "purchased": "purchase"}


@pytest.fixture(scope="module")
def client(artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """For tests that send no events: an online store of its own that stays empty (a module's
    client starts before the per-test settings, which would leave it the shared default store)."""
    tmp = tmp_path_factory.mktemp("filters")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECOMMNDR_ONLINE_STORE_PATH", str(tmp / "online.db"))
        mp.setenv("RECOMMNDR_EXPLORE_SHARE", "0")  # lists compared with ServingModel.recommend's
        get_settings.cache_clear()
        with TestClient(create_app(artifacts, tmp / "events")) as c:
            yield c
    get_settings.cache_clear()


@pytest.fixture
def fresh(artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """An API with an online store of its own, for tests that send events."""
    monkeypatch.setenv("RECOMMNDR_EXPLORE_SHARE", "0")
    get_settings.cache_clear()
    with TestClient(create_app(artifacts, tmp_path / "events")) as c:
        yield c


def _model(c: TestClient) -> ServingModel:
    m: ServingModel = c.app.state.recommndr.slots.serving()  # type: ignore[attr-defined]
    return m


def _get(c: TestClient, user: int, **params: Any) -> dict[str, Any]:
    r = c.get(f"/recommendations/{user}", params={"k": K, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["degraded"] == [], body
    return body


def _ids(c: TestClient, user: int, **params: Any) -> list[int]:
    items = [i["item_id"] for i in _get(c, user, **params)["items"]]
    assert len(items) == len(set(items))
    return items


def _had(m: ServingModel, user_id: int, state: str) -> set[int]:
    """Product ids the model knows the user had in ``state`` before its cut-off."""
    b = m.bundle
    assert b is not None
    u = int(b.user_index(np.array([user_id]))[0])
    return set(m.catalogue.item_ids[b.features.user_items(u, **{state: True})].tolist())


def _post(c: TestClient, user: int, item: int, kind: str) -> None:
    r = c.post("/events", json={"user_id": user, "item_id": item, "event_type": kind})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("state", ["purchased", "carted", "viewed"])
def test_products_the_model_knows_in_that_state_are_not_offered(client: TestClient, state: str) -> None:
    m = _model(client)
    assert m.bundle is not None
    others = {"purchased": "carted", "carted": "viewed", "viewed": None}[state]
    for user in m.bundle.user_ids[:400].tolist():
        had = _had(m, user, state)
        before = [r.item_id for r in m.recommend(user, K)[0]]
        # a product in that state is offered, and (but for viewed, which takes every product the
        # shopper touched) one in the looser state only: it must stay
        other = [i for i in before if others and i in _had(m, user, others) - had]
        if had & set(before) and (other or not others):
            break
    else:
        pytest.fail(f"no shopper of the tiny shop is offered a product they {state}")
    assert _ids(client, user) == before
    after = _ids(client, user, exclude=state)
    assert len(after) == K, "still k long"
    assert not had & set(after), f"a product the shopper {state} is offered"
    assert set(before) - had <= set(after), "what the filter does not name stays"
    assert set(other) <= set(after)


def test_excluded_ids_are_not_offered_and_the_list_stays_k_long(client: TestClient) -> None:
    before = _ids(client, 5)
    gone = before[:2]
    after = _ids(client, 5, exclude_items=f"{gone[0]},{gone[1]},{gone[0]},99999999,0")  # repeats, unknown
    assert len(after) == K and not set(gone) & set(after)
    assert after[: K - 2] == before[2:], "the rest move up in order"
    both = _ids(client, 5, exclude="viewed,viewed", exclude_items=str(after[0]))
    assert len(both) == K and after[0] not in both and not _had(_model(client), 5, "viewed") & set(both)


def test_a_cold_shopper_gets_popular_products_less_the_excluded(client: TestClient) -> None:
    popular = [i["item_id"] for i in client.get("/popular", params={"k": K + 3}).json()["items"]]
    body = _get(client, NEW_USER, exclude_items=f"{popular[0]},{popular[2]},{popular[4]}", exclude="viewed")
    assert body["cold_start"] is True
    assert [i["item_id"] for i in body["items"]] == [popular[j] for j in (1, 3, *range(5, K + 3))]
    cat = _get(client, NEW_USER, category="Electronics", exclude_items=str(popular[0]))["items"]
    in_cat = [i["item_id"] for i in client.get("/popular?k=11&category=Electronics").json()["items"]]
    assert [i["item_id"] for i in cat] == [i for i in in_cat if i != popular[0]][:K]


@pytest.mark.parametrize("state", ["purchased", "carted", "viewed"])
def test_what_the_shopper_did_since_training_is_left_out_too(fresh: TestClient, state: str) -> None:
    """The online store's lists: recent products (viewed), carted products, bought products."""
    m = _model(fresh)
    b = m.bundle
    assert b is not None
    # a product offered that the model does not know in that state (and, for a purchase, a
    # repeatable one: a bought durable is left out without any filter)
    for user in b.user_ids[:400].tolist():
        before = [r.item_id for r in m.recommend(user, K)[0]]
        dense = b.catalogue.index_of(np.array(before))
        repeatable = b.exclusions.repeatable_l3[b.catalogue.l3[dense]]
        new = [i for i, rep in zip(before, repeatable, strict=True)
               if i not in _had(m, user, state) and (rep or state != "purchased")]  # fmt: skip
        if new:
            break
    else:
        pytest.fail(f"no shopper of the tiny shop is offered a product they have not {state}")
    assert _ids(fresh, user) == before
    _post(fresh, user, new[0], EVENT[state])
    assert new[0] in _ids(fresh, user), "still offered without the filter"
    after = _ids(fresh, user, exclude=state)
    assert len(after) == K and new[0] not in after
    if state != "viewed":  # a cart is not a purchase, nor a purchase a cart
        other = {"purchased": "carted", "carted": "purchased"}[state]
        assert new[0] in _ids(fresh, user, exclude=other) or new[0] in _had(m, user, other)


def test_a_shopper_known_only_online(fresh: TestClient) -> None:
    cold = _ids(fresh, NEW_USER)
    viewed, carted = cold[:3], cold[3]
    for item in viewed:
        _post(fresh, NEW_USER, item, "view")
    _post(fresh, NEW_USER, carted, "add_to_cart")
    body = _get(fresh, NEW_USER)
    assert body["cold_start"] is False
    warm = [i["item_id"] for i in body["items"]]
    touched = {*viewed, carted}
    assert touched & set(warm), "some of what they looked at is offered without the filter"
    after = _ids(fresh, NEW_USER, exclude="viewed")
    assert len(after) == K and not touched & set(after)
    if carted in warm:
        assert carted not in _ids(fresh, NEW_USER, exclude="carted")
    # exclude=carted leaves out the carted product only
    no_cart = _ids(fresh, NEW_USER, exclude="carted")
    assert len(no_cart) == K and carted not in no_cart and set(warm) - {carted} <= set(no_cart)


def test_the_popularity_fallback_filters_too(artifacts: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(artifacts, broken)
    with (broken / "ranker.onnx").open("ab") as f:
        f.write(b"tampered")
    with TestClient(create_app(broken, tmp_path / "events")) as c:
        base = [
            i["item_id"] for i in c.get(f"/recommendations/{NEW_USER}", params={"k": K + 3}).json()["items"]
        ]
        _post(c, NEW_USER, base[1], "view")
        r = c.get(
            f"/recommendations/{NEW_USER}", params={"k": K, "exclude": "viewed", "exclude_items": base[0]}
        )
        assert r.status_code == 200 and r.json()["degraded"] == ["model_unavailable"]
        assert [i["item_id"] for i in r.json()["items"]] == base[2 : K + 2]


def test_with_the_online_store_down_the_models_states_still_apply(fresh: TestClient) -> None:
    from tests.unit.serving.test_degrade import _Down

    fresh.app.state.recommndr.online.store = _Down()  # type: ignore[attr-defined]
    r = fresh.get("/recommendations/5", params={"k": K, "exclude": "viewed"})
    assert r.status_code == 200 and r.json()["degraded"] == ["online_features_unavailable"]
    items = [i["item_id"] for i in r.json()["items"]]
    assert len(items) == K and not _had(_model(fresh), 5, "viewed") & set(items)


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"exclude": "wishlist"}, "query.exclude: unknown value 'wishlist'"),
        ({"exclude": "viewed,Carted"}, "query.exclude: unknown value 'Carted'"),
        ({"exclude": "viewed,"}, "query.exclude: unknown value ''"),
        ({"exclude": ",".join(["viewed"] * 11)}, "query.exclude: at most 10 values"),
        ({"exclude": "x" * 100}, "query.exclude: String should have at most 99 characters"),
        ({"exclude_items": "1,two"}, "query.exclude_items: 'two' is not a product id"),
        ({"exclude_items": "-1"}, "query.exclude_items: '-1' is not a product id"),
        ({"exclude_items": "007"}, "query.exclude_items: '007' is not a product id"),
        ({"exclude_items": "1,,2"}, "query.exclude_items: '' is not a product id"),
        ({"exclude_items": " 1"}, "query.exclude_items: ' 1' is not a product id"),
        ({"exclude_items": "\u0661"}, "is not a product id"),  # an Arabic-Indic digit is not ASCII
        ({"exclude_items": str(INT64_MAX + 1)}, f"query.exclude_items: {INT64_MAX + 1} is outside int64"),
        ({"exclude_items": "1" * 30}, "is outside int64"),
        ({"exclude_items": ",".join(["1"] * 201)}, "query.exclude_items: at most 200 ids, got 201"),
        ({"exclude_items": "1" * 4000}, "query.exclude_items: String should have at most 3999 characters"),
    ],
)  # fmt: skip
def test_bad_filters_are_a_422_naming_the_value(
    client: TestClient, params: dict[str, str], names: str
) -> None:
    r = client.get("/recommendations/5", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request" and names in r.json()["error"]["message"]


def test_the_limits_themselves_are_served(client: TestClient) -> None:
    assert len(_ids(client, 5, exclude_items=",".join([str(INT64_MAX)] * 200))) == K
    assert len(_ids(client, 5, exclude=",".join(["purchased", "carted", "viewed"] * 3 + ["carted"]))) == K
    assert _ids(client, 5, exclude="", exclude_items="") == _ids(client, 5), "empty is no filter"


def test_the_openapi_document_names_the_filters_with_the_patterns_the_api_applies(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/recommendations/{user_id}"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    for name, pattern, max_length in (
        ("exclude", EXCLUDE_PATTERN, 99),
        ("exclude_items", EXCLUDE_ITEMS_PATTERN, 3999),
    ):
        schema = params[name]["schema"]
        assert params[name]["in"] == "query" and not params[name]["required"]
        assert (
            schema["type"] == "string" and schema["pattern"] == pattern and schema["maxLength"] == max_length
        )
        assert "422" in op["responses"] and params[name]["description"]
    assert "purchased" in params["exclude"]["description"] and "200" in params["exclude_items"]["description"]
    # the document's patterns accept exactly what the API serves
    rng = np.random.default_rng(11)
    edge = ["0", "1", "10", "00", "01", str(INT64_MAX), str(INT64_MAX - 1), str(INT64_MAX + 1), "9" * 19,
            "1" * 19, "9" * 18, "8" + "9" * 18, "92233720368547758070", "-0", "+1", "1e3", "", " "]  # fmt: skip
    ids = edge + [str(int(x)) for x in rng.integers(0, INT64_MAX, 40, dtype=np.int64)]
    ids += ["".join(rng.choice(list("0123456789"), int(rng.integers(1, 21)))) for _ in range(60)]
    for value in ids + [",".join(ids[i : i + 3]) for i in range(0, len(ids), 3)]:
        documented = re.fullmatch(EXCLUDE_ITEMS_PATTERN, value) is not None
        status = client.get("/recommendations/5", params={"k": 1, "exclude_items": value}).status_code
        assert status == (200 if documented else 422), value
        if value and not value.startswith("0") and value.isdigit():  # a single canonical number
            assert documented == (int(value) <= INT64_MAX), value
    words = ["viewed", "carted", "purchased", "", "view", "VIEWED", " viewed"]
    for value in [",".join(rng.choice(words, int(rng.integers(1, 4)))) for _ in range(40)]:
        documented = re.fullmatch(EXCLUDE_PATTERN, value) is not None
        assert client.get("/recommendations/5", params={"k": 1, "exclude": value}).status_code == (
            200 if documented else 422
        ), value
