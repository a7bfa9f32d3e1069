"""One served path: offline evaluation measures what /recommendations serves. For a few hundred
shoppers of the tiny shop (the held-out ones evaluation scores, cold and with history, and others
with history), the products evaluation ranks for ``two_stage`` are, in order, the ones
``ServingModel.recommend`` answers without online features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recommndr.data.interactions import load_events
from recommndr.evaluation.evaluate import KS, ranked_lists, targets_after
from recommndr.loading import load_bundle
from recommndr.serving.model import ServingModel

pytestmark = pytest.mark.unit


def test_evaluation_ranks_what_the_api_serves(artifacts: Path, tiny_dataset: Path) -> None:
    bundle = load_bundle(artifacts, ranker_threads=2)  # as evaluate() loads it
    served = ServingModel.load(artifacts)  # as the API loads it
    t = targets_after(load_events(tiny_dataset), bundle, int(bundle.manifest["cutoff_us"]))
    held_out = t["user_id"].unique().to_numpy()
    others = np.random.default_rng(0).choice(bundle.user_ids, 150, replace=False)
    never_seen = bundle.user_ids.max() + 1 + np.arange(5)
    users = np.unique(np.concatenate([held_out, others, never_seen]))
    cold = bundle.user_index(users) < 0
    assert users.shape[0] >= 300 and cold.sum() >= 20 and (~cold).sum() >= 250

    k = max(KS)
    lists = ranked_lists(bundle, users, k)["two_stage"]
    differ = []
    for u, c, ranked in zip(users.tolist(), cold.tolist(), lists, strict=True):
        recs, was_cold, degraded = served.recommend(u, k)
        assert was_cold == c and degraded is None and len(ranked) == k
        if [r.item_id for r in recs] != bundle.catalogue.item_ids[ranked].tolist():
            differ.append((u, "cold" if c else "with history"))
    assert not differ, f"{len(differ)} of {users.shape[0]} shoppers differ, e.g. {differ[:5]}"
