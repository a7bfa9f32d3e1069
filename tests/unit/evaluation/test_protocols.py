"""The evaluation protocols' splits on the seeded world: what each side holds, and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recommndr.data.interactions import US_PER_DAY, load_catalogue, load_events
from recommndr.errors import UserInputError
from recommndr.evaluation.protocols import known_items, random_split, split, temporal_split

pytestmark = pytest.mark.unit


def test_the_random_split_gives_each_user_three_quarters_of_their_products(world_dir: Path) -> None:
    catalogue, events = load_catalogue(world_dir), load_events(world_dir)
    s = random_split(events, catalogue)
    pairs = known_items(events, catalogue).select("user_id", "item").unique()
    train_pairs = known_items(s.train, catalogue).select("user_id", "item").unique()
    # every pair is on exactly one side
    assert train_pairs.join(s.targets, on=["user_id", "item"], how="inner").height == 0
    assert train_pairs.height + s.targets.height == pairs.height
    n = pairs.group_by("user_id").len().sort("user_id")
    n_train = train_pairs.group_by("user_id").len().sort("user_id")
    expect = np.maximum(1, np.floor(0.75 * n["len"].to_numpy() + 0.5))
    assert np.array_equal(n_train["len"].to_numpy(), expect)
    # a training pair keeps all its events (views, carts and purchases alike)
    kept = known_items(events, catalogue).join(train_pairs, on=["user_id", "item"], how="semi")
    assert s.train.height == kept.height
    assert set(s.targets["gain"].unique().to_list()) == {1}  # binary relevance
    assert s.exclude_seen and s.protocol == "random"
    # seeded: the same split twice, another seed another split
    again = random_split(events, catalogue)
    assert again.targets.sort("user_id", "item").equals(s.targets.sort("user_id", "item"))
    other = random_split(events, catalogue, seed=7)
    assert not other.targets.sort("user_id", "item").equals(s.targets.sort("user_id", "item"))


def test_the_temporal_split_cuts_at_the_hold_out(world_dir: Path) -> None:
    catalogue, events = load_catalogue(world_dir), load_events(world_dir)
    s = temporal_split(events, catalogue, holdout_days=7)
    end = int(events["ts_us"].max()) + 1
    assert s.end_us == end - 7 * US_PER_DAY
    assert int(s.train["ts_us"].max()) < s.end_us
    after = events.filter(pl.col("ts_us") >= s.end_us)
    assert s.train.height + after.height == events.height
    # graded: a carted product outranks a viewed one
    assert set(s.targets["gain"].unique().to_list()) <= {1, 2, 3} and s.targets["gain"].max() >= 2
    assert not s.exclude_seen


def test_protocols_refuse_what_they_cannot_split(world_dir: Path) -> None:
    catalogue, events = load_catalogue(world_dir), load_events(world_dir)
    with pytest.raises(UserInputError, match="hold-out"):
        temporal_split(events, catalogue, holdout_days=0)
    with pytest.raises(UserInputError, match="spans less"):
        temporal_split(events, catalogue, holdout_days=400)
    with pytest.raises(UserInputError, match="unknown protocol 'leave_one_out'"):
        split(events, catalogue, "leave_one_out", 7)  # type: ignore[arg-type]
    one_each = events.group_by("user_id").head(1)  # one product per user: nothing to test
    with pytest.raises(UserInputError, match="two products"):
        random_split(one_each, catalogue)
    with pytest.raises(UserInputError, match="no events"):
        random_split(events.head(0), catalogue)
