"""The synthetic shop: exact sizes, determinism, internal consistency and the behaviours it plants."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recommndr.data.schema import EVENTS_SCHEMA, GROUND_TRUTH_DIR, PRODUCTS_SCHEMA, USERS_SCHEMA, read_table
from recommndr.data.synthetic import generate
from recommndr.data.synthetic.params import SCALES

pytestmark = pytest.mark.unit


def _pl(root: Path, name: str) -> pl.DataFrame:
    df = pl.from_arrow(read_table(root, name))
    assert isinstance(df, pl.DataFrame)
    return df


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for name in ("products", "users", "events"):
        h.update(pl.from_arrow(read_table(root, name)).hash_rows().to_numpy().tobytes())  # type: ignore[union-attr]
    return h.hexdigest()


def test_sizes_and_schema(tiny_dataset: Path) -> None:
    sc = SCALES["tiny"]
    assert read_table(tiny_dataset, "products").schema == PRODUCTS_SCHEMA
    assert read_table(tiny_dataset, "users").schema == USERS_SCHEMA
    ev = read_table(tiny_dataset, "events")
    assert ev.schema == EVENTS_SCHEMA
    assert ev.num_rows == sc.n_events
    assert read_table(tiny_dataset, "products").num_rows == sc.n_items
    assert read_table(tiny_dataset, "users").num_rows == sc.n_users


def test_same_seed_same_data_other_seed_other_data(tiny_dataset: Path, tmp_path: Path) -> None:
    generate("tiny", tmp_path / "again", seed=7)
    generate("tiny", tmp_path / "other", seed=8)
    assert _digest(tmp_path / "again") == _digest(tiny_dataset)
    assert _digest(tmp_path / "other") != _digest(tiny_dataset)


def test_ground_truth_is_apart_from_the_dataset(tiny_dataset: Path) -> None:
    truth = tiny_dataset / GROUND_TRUTH_DIR
    assert {p.name for p in truth.iterdir()} == {
        "user_tastes.parquet",
        "complements.parquet",
        "item_appeal.parquet",
    }
    assert not any("taste" in c for c in read_table(tiny_dataset, "users").column_names)


def test_events_are_consistent_in_time(tiny_dataset: Path) -> None:
    ev = _pl(tiny_dataset, "events")
    pr = _pl(tiny_dataset, "products").select("item_id", "created_at")
    us = _pl(tiny_dataset, "users").select("user_id", "signup_at")
    j = ev.join(pr, on="item_id").join(us, on="user_id")
    assert j.height == ev.height  # every user and product known
    assert (j["ts"] >= j["created_at"]).all()  # nothing before launch
    assert (j["ts"] >= j["signup_at"]).all()  # nothing before sign-up
    assert ev["event_id"].n_unique() == ev.height
    assert ev["ts"].is_sorted()
    # within a session, positions in the event id follow time
    pos = ev["event_id"].str.split("-").list.get(1).cast(pl.Int64)
    per = ev.with_columns(pos.alias("pos")).sort("session_id", "pos")
    assert (
        per.group_by("session_id", maintain_order=True).agg(pl.col("ts").is_sorted().alias("ok"))["ok"].all()
    )


def test_every_purchase_was_carted_in_its_session(tiny_dataset: Path) -> None:
    ev = _pl(tiny_dataset, "events")
    buys = ev.filter(pl.col("event_type") == "purchase").select("session_id", "item_id")
    carts = ev.filter(pl.col("event_type") == "add_to_cart").select("session_id", "item_id").unique()
    assert buys.join(carts, on=["session_id", "item_id"], how="anti").height == 0


def test_planted_complements_are_bought_together(tiny_dataset: Path) -> None:
    ev = _pl(tiny_dataset, "events").filter(pl.col("event_type") == "purchase")
    comp = pl.from_arrow(read_table(tiny_dataset / GROUND_TRUTH_DIR, "complements"))
    assert isinstance(comp, pl.DataFrame)
    baskets = ev.select("session_id", "item_id").unique()
    n_baskets = baskets["session_id"].n_unique()
    pairs = baskets.join(baskets, on="session_id").filter(pl.col("item_id") != pl.col("item_id_right"))
    together = pairs.join(
        comp, left_on=["item_id", "item_id_right"], right_on=["item_id", "complement_item_id"]
    )
    assert together.height > 20
    # lift of planted pairs: P(a and b) / (P(a) P(b)) far above 1
    freq = baskets.group_by("item_id").len()
    t = together.group_by("item_id", "item_id_right").len().rename({"len": "ab"})
    t = t.join(freq.rename({"len": "a"}), on="item_id").join(
        freq.rename({"item_id": "item_id_right", "len": "b"}), on="item_id_right"
    )
    lift = (t["ab"] * n_baskets / (t["a"] * t["b"])).median()
    assert lift is not None and float(lift) > 10  # type: ignore[arg-type]


def test_tastes_concentrate_on_few_categories(tiny_dataset: Path) -> None:
    ev = _pl(tiny_dataset, "events").join(_pl(tiny_dataset, "products"), on="item_id")
    per_user = ev.group_by("user_id", "category_l1").len()
    top = per_user.group_by("user_id").agg(
        (pl.col("len").max() / pl.col("len").sum()).alias("top"), pl.col("len").sum().alias("n")
    )
    n_l1 = ev["category_l1"].n_unique()
    assert n_l1 == SCALES["tiny"].n_l1
    heavy = top.filter(pl.col("n") >= 20)
    assert float(heavy["top"].median()) > 2.0 / n_l1  # type: ignore[arg-type]


def test_long_tail_seasonality_and_cold_start(tiny_dataset: Path) -> None:
    ev = _pl(tiny_dataset, "events")
    counts = np.sort(ev.group_by("item_id").len()["len"].to_numpy())[::-1]
    assert counts[: len(counts) // 10].sum() / counts.sum() > 0.3  # top 10% of products: > 30%
    month = ev["ts"].dt.month()
    assert ((month >= 11).mean() or 0) > 2 / 12 * 1.05  # type: ignore[operator]
    weekday = ev["ts"].dt.weekday()
    assert (weekday == 7).mean() > (weekday == 6).mean()  # type: ignore[operator]
    pr = _pl(tiny_dataset, "products")
    new_items = pr.filter(pl.col("created_at") > ev["ts"].min())["item_id"]
    assert ev["item_id"].is_in(new_items.implode()).sum() > 0  # products launched during the period sell
    us = _pl(tiny_dataset, "users")
    new_users = us.filter(pl.col("signup_at") > ev["ts"].min())["user_id"]
    assert ev["user_id"].is_in(new_users.implode()).sum() > 0


def test_consumables_are_bought_again(tiny_dataset: Path) -> None:
    buys = _pl(tiny_dataset, "events").filter(pl.col("event_type") == "purchase")
    again = buys.group_by("user_id", "item_id").len().filter(pl.col("len") > 1)
    assert again.height > 0
    cats = again.join(_pl(tiny_dataset, "products"), on="item_id")["category_l1"]
    consumable = {"Grocery & Gourmet", "Beauty & Personal Care", "Health & Household", "Pet Supplies", "Baby"}
    assert cats.is_in(list(consumable)).all()  # durables are never bought twice
