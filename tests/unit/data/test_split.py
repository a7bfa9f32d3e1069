from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from recommndr.data.split import SplitConfig, split_dataset, temporal_split
from recommndr.errors import UserInputError

pytestmark = pytest.mark.unit
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _events(days: int = 60) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [d % 3 for d in range(days)],
            "item_id": list(range(days)),
            "ts": [T0 + timedelta(days=d) for d in range(days)],
        }
    )


def test_time_split_is_ordered_and_complete() -> None:
    ev = _events()
    parts = temporal_split(ev, SplitConfig(valid_days=10, test_days=7))
    assert sum(p.height for p in parts.values()) == ev.height
    assert parts["train"]["ts"].max() < parts["valid"]["ts"].min()  # type: ignore[operator]
    assert parts["valid"]["ts"].max() < parts["test"]["ts"].min()  # type: ignore[operator]
    assert parts["test"].height == 7 and parts["valid"].height == 10


def test_user_last_moves_each_users_last_training_events() -> None:
    parts = temporal_split(
        _events(), SplitConfig(valid_days=10, test_days=7, mode="user_last", holdout_last_n=2)
    )
    assert parts["valid"].height == 10 + 3 * 2
    last_train = parts["train"].group_by("user_id").agg(pl.col("ts").max())
    moved = parts["valid"].group_by("user_id").agg(pl.col("ts").min())
    j = last_train.join(moved, on="user_id")
    assert (j["ts"] < j["ts_right"]).all()


def test_too_short_data_is_refused() -> None:
    with pytest.raises(UserInputError, match="too short"):
        temporal_split(_events(10), SplitConfig(valid_days=7, test_days=7))


def test_split_dataset_writes_parts(tiny_dataset: Path, tmp_path: Path) -> None:
    counts = split_dataset(tiny_dataset, tmp_path, SplitConfig())
    meta = json.loads((tmp_path / "split.json").read_text())
    assert meta["rows"] == counts
    assert sum(counts.values()) == 40_000
    assert all((tmp_path / f"{p}.parquet").exists() for p in ("train", "valid", "test"))
