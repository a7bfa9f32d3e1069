"""Small seeded worlds with known answers, built directly in the schema, shared by the retrieval,
similarity and ranking tests (and the model trained on one of them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pytest

from recommndr.data.interactions import Interactions, build_interactions, load_catalogue, load_events
from recommndr.data.schema import write_dataset

if TYPE_CHECKING:
    from recommndr.bundle import Bundle

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
CATEGORIES = ("Books", "Garden", "Toys", "Coffee")
PER_CATEGORY = 20


def _products(n_cat: int = len(CATEGORIES), new_item_day: int | None = None) -> pa.Table:
    ids, l1, created = [], [], []
    for c in range(n_cat):
        for j in range(PER_CATEGORY):
            ids.append(c * 100 + j + 1)
            l1.append(CATEGORIES[c])
            created.append(T0 - timedelta(days=400))
    if new_item_day is not None:  # one product launched late in category 0
        ids.append(999)
        l1.append(CATEGORIES[0])
        created.append(T0 + timedelta(days=new_item_day))
    n = len(ids)
    return pa.table(
        {
            "item_id": pa.array(ids, pa.int64()),
            "title": [f"product {i}" for i in ids],
            "category_l1": l1,
            "category_l2": [f"{c} sub" for c in l1],
            "category_l3": [f"{c} leaf" for c in l1],
            "brand": ["b"] * n,
            "price": [10.0 + (i % 7) for i in ids],
            "created_at": pa.array(created, TS),
        }
    )


def world(tmp: Path, rng_seed: int = 0, complement: bool = True, new_item: bool = True) -> Path:
    """200 users, each loyal to one category (views, carts, purchases over 60 days); products 1 and 2
    (both in Books) are carted together; product 3 (Books) is very popular on its own; a product
    999 launches on day 50 and sells well in its first days."""
    rng = np.random.default_rng(rng_seed)
    rows: list[tuple[int, int, str, datetime, int]] = []
    session = 0
    for u in range(1, 201):
        cat = (u - 1) % len(CATEGORIES)
        for _ in range(6):
            session += 1
            day = float(rng.uniform(0, 58))
            items = cat * 100 + 1 + rng.choice(PER_CATEGORY, 4, replace=False)
            for j, it in enumerate(items):
                t = T0 + timedelta(days=day, minutes=j)
                rows.append((u, int(it), "view", t, session))
                if rng.random() < 0.3:
                    rows.append((u, int(it), "add_to_cart", t + timedelta(seconds=20), session))
                    rows.append((u, int(it), "purchase", t + timedelta(seconds=200), session))
        if complement and cat == 0:
            for _ in range(3):
                session += 1
                t = T0 + timedelta(days=float(rng.uniform(0, 58)))
                for it in (1, 2):
                    rows.append((u, it, "view", t, session))
                    rows.append((u, it, "add_to_cart", t + timedelta(seconds=30), session))
        if complement:
            session += 1  # product 3: in every user's history, alone
            t = T0 + timedelta(days=float(rng.uniform(0, 58)))
            rows.append((u, 3, "view", t, session))
            rows.append((u, 3, "add_to_cart", t + timedelta(seconds=30), session))
        if new_item and cat == 0 and (u // 4) % 2 == 0:
            session += 1
            t = T0 + timedelta(days=float(rng.uniform(50.5, 58)))
            rows.append((u, 999, "view", t, session))
            rows.append((u, 999, "add_to_cart", t + timedelta(seconds=30), session))
    rows.sort(key=lambda r: r[3])
    events = pa.table(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "item_id": pa.array([r[1] for r in rows], pa.int64()),
            "event_type": [r[2] for r in rows],
            "ts": pa.array([r[3] for r in rows], TS),
            "session_id": pa.array([r[4] for r in rows], pa.int64()),
            "price": [10.0] * len(rows),
            "quantity": pa.array([1] * len(rows), pa.int32()),
        }
    )
    users = pa.table(
        {
            "user_id": pa.array(list(range(1, 201)), pa.int64()),
            "signup_at": pa.array([T0 - timedelta(days=1)] * 200, TS),
            "country": ["US"] * 200,
            "segment": ["standard"] * 200,
        }
    )
    root = tmp / "world"
    write_dataset(root, _products(new_item_day=50 if new_item else None), users, events)
    return root


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="session")
def world_inter(world_dir: Path) -> Interactions:
    catalogue = load_catalogue(world_dir)
    events = load_events(world_dir)
    end = int(events["ts_us"].max()) + 1
    return build_interactions(catalogue, events, end)


@pytest.fixture(scope="session")
def plain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same loyal users without the planted pair, the popular product and the new product:
    every user only ever touches one category."""
    return world(tmp_path_factory.mktemp("plain"), complement=False, new_item=False)


@pytest.fixture(scope="session")
def plain_inter(plain_dir: Path) -> Interactions:
    root = plain_dir
    catalogue = load_catalogue(root)
    events = load_events(root)
    return build_interactions(catalogue, events, int(events["ts_us"].max()) + 1)


@pytest.fixture(scope="session")
def world_bundle(plain_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The two-stage model trained on the loyal-shopper world (read-only)."""
    from recommndr.loading import load_bundle
    from recommndr.params import TrainConfig
    from recommndr.training.pipeline import train

    cfg = TrainConfig.model_validate(
        {
            "holdout_days": 7,
            "label_days": 14,
            "als": {"factors": 16},
            "ranker": {"n_estimators": 40, "min_child_samples": 5},
        }
    )
    out = tmp_path_factory.mktemp("two_stage") / "art"
    train(plain_dir, out, cfg)
    return load_bundle(out)
