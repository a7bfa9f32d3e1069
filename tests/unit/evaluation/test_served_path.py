"""One served path: offline evaluation measures what /recommendations serves. For a few hundred
shoppers of the tiny shop (known ones, and ids the model has never seen), the products evaluation
ranks for ``two_stage`` are, in order, the ones ``ServingModel.recommend`` answers without online
features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recommndr.evaluation.evaluate import KS, model_lists
from recommndr.loading import load_bundle
from recommndr.serving.model import ServingModel

pytestmark = pytest.mark.unit


def test_evaluation_ranks_what_the_api_serves(artifacts: Path) -> None:
    bundle = load_bundle(artifacts, ranker_threads=2)  # as evaluate() loads it
    served = ServingModel.load(artifacts)  # as the API loads it
    known = np.random.default_rng(0).choice(bundle.user_ids, 400, replace=False)
    never_seen = bundle.user_ids.max() + 1 + np.arange(25)
    users = np.unique(np.concatenate([known, never_seen]))
    cold = bundle.user_index(users) < 0
    assert users.shape[0] >= 300 and cold.sum() >= 20 and (~cold).sum() >= 250

    k = max(KS)
    lists = model_lists(bundle, users, k)["two_stage"]
    reordered, differ = [], []
    for u, c, ranked in zip(users.tolist(), cold.tolist(), lists, strict=True):
        recs, was_cold, degraded = served.recommend(u, k)
        assert was_cold == c and degraded is None and len(ranked) == k
        api, offline = [r.item_id for r in recs], bundle.catalogue.item_ids[ranked].tolist()
        if api != offline:
            # a batch's ALS scores come from one matrix product, a request's from a vector
            # product: float32 rounding may swap two candidates whose ALS scores tie, which moves
            # a few places of the list, never which products are in it
            (reordered if set(api) == set(offline) else differ).append((u, "cold" if c else "with history"))
    assert not differ, f"{len(differ)} of {users.shape[0]} shoppers get other products, e.g. {differ[:5]}"
    assert len(reordered) <= users.shape[0] // 100, f"{len(reordered)} lists reordered: {reordered[:5]}"
