from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recommndr.data.profile import gini, profile, top_share
from recommndr.data.schema import write_dataset

pytestmark = pytest.mark.unit
T0 = datetime(2025, 3, 3, 12, tzinfo=UTC)  # a Monday


def test_gini_and_top_share_known_answers() -> None:
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)
    assert top_share(np.array([50, 30, 10, 10]), 0.25) == pytest.approx(0.5)
    assert top_share(np.array([1] * 200), 0.01) == pytest.approx(0.01)


def _write(root: Path) -> None:
    # two sessions: s1 views a and b, carts a, buys a; s2 views b, carts b, abandons.
    rows = [
        ("1-0", 1, 10, "view", 0, 1),
        ("1-1", 1, 11, "view", 60, 1),
        ("1-2", 1, 10, "add_to_cart", 70, 1),
        ("1-3", 1, 10, "purchase", 200, 1),
        ("2-0", 2, 11, "view", 86_400, 2),
        ("2-1", 2, 11, "add_to_cart", 86_460, 2),
    ]
    events = pa.table(
        {
            "event_id": [r[0] for r in rows],
            "user_id": [r[1] for r in rows],
            "item_id": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
            "ts": pa.array([T0 + timedelta(seconds=r[4]) for r in rows], pa.timestamp("us", tz="UTC")),
            "session_id": [r[5] for r in rows],
            "price": [9.99] * len(rows),
            "quantity": pa.array([1] * len(rows), pa.int32()),
        }
    )
    products = pa.table(
        {
            "item_id": [10, 11, 12],
            "title": ["a", "b", "c"],
            "category_l1": ["x"] * 3,
            "category_l2": ["y"] * 3,
            "category_l3": ["z"] * 3,
            "brand": ["q"] * 3,
            "price": [9.99] * 3,
            "created_at": pa.array([T0 - timedelta(days=9)] * 3, pa.timestamp("us", tz="UTC")),
        }
    )
    users = pa.table(
        {
            "user_id": [1, 2, 3],
            "signup_at": pa.array([T0 - timedelta(days=1)] * 3, pa.timestamp("us", tz="UTC")),
            "country": ["US"] * 3,
            "segment": ["standard"] * 3,
        }
    )
    write_dataset(root, products, users, events)


def test_profile_of_a_known_dataset(tmp_path: Path) -> None:
    _write(tmp_path)
    p = profile(tmp_path)
    assert p["events"] == 6 and p["sessions"] == 2
    assert p["view_to_cart"] == pytest.approx(2 / 3)
    assert p["cart_to_purchase"] == pytest.approx(0.5)
    assert p["cart_abandonment"] == pytest.approx(0.5)
    assert p["session_conversion"] == pytest.approx(0.5)
    assert p["basket_lines_mean"] == pytest.approx(1.0)
    assert p["active_users"] == pytest.approx(2 / 3)
    assert p["products_with_events"] == pytest.approx(2 / 3)
    assert p["weekday_share"]["Mon"] == pytest.approx(4 / 6)
    assert p["weekday_share"]["Tue"] == pytest.approx(2 / 6)
    assert p["month_share"]["Mar"] == pytest.approx(1.0)
    assert p["repeat_purchase_share"] == pytest.approx(0.0)
