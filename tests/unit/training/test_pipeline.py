"""What ``train`` serves is fit on every event; its figures come from a fit before the hold-out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recommndr.bundle import Bundle
from recommndr.data.interactions import US_PER_DAY, load_events
from recommndr.evaluation.evaluate import MODELS

pytestmark = pytest.mark.unit


def test_the_served_bundle_knows_every_shopper_and_product(world_bundle: Bundle, plain_dir: Path) -> None:
    events = load_events(plain_dir)
    end = int(events["ts_us"].max()) + 1
    m = world_bundle.manifest
    assert m["cutoff_us"] == m["end_us"] == end  # served: fit on everything
    ev = m["evaluation"]
    assert ev["protocol"] == "temporal" and ev["cutoff_us"] == end - 7 * US_PER_DAY
    assert ev["label_cutoff_us"] == ev["cutoff_us"] - 14 * US_PER_DAY
    assert m["label_cutoff_us"] == end - 14 * US_PER_DAY  # the served ranker learned the last 14 days
    assert set(ev["metrics"]) == set(MODELS) and 0 < ev["metrics"]["two_stage"]["ndcg@10"] <= 1
    # shoppers and products seen only in the hold-out are known to what is served
    late = events.filter(pl.col("ts_us") >= ev["cutoff_us"])
    assert np.isin(late["user_id"].unique().to_numpy(), world_bundle.user_ids).all()
    items = world_bundle.catalogue.index_of(events["item_id"].unique().to_numpy())
    assert world_bundle.als.item_known[items].all()
    users_before = events.filter(pl.col("ts_us") < ev["cutoff_us"])["user_id"].n_unique()
    assert world_bundle.user_ids.shape[0] == events["user_id"].n_unique() >= users_before
