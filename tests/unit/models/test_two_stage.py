"""The trained two-stage recommender on a world with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recommndr.bundle import Bundle
from recommndr.loading import load_bundle
from recommndr.params import TrainConfig
from recommndr.ranking.two_stage import TwoStageRecommender
from recommndr.retrieval.base import Query
from recommndr.training.pipeline import train

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def bundle(plain_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
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


def _rec(b: Bundle) -> TwoStageRecommender:
    return TwoStageRecommender(b.candidate_generator(), b.features, b.ranker)


def test_user_who_only_buys_in_one_category_gets_it_first(bundle: Bundle) -> None:
    cat = bundle.catalogue
    for user_id in (5, 6, 7, 8):
        u = int(bundle.user_index(np.array([user_id]))[0])
        recent = bundle.recent_items[bundle.recent_indptr[u] : bundle.recent_indptr[u + 1]]
        items, scores = _rec(bundle).recommend([Query(u, recent)], 10)[0]
        assert items.shape[0] == 10 and (np.diff(scores) <= 1e-6).all()
        want = cat.l1[recent[0]]
        assert (cat.l1[items[:5]] == want).all()


def test_new_user_takes_the_cold_start_path(bundle: Bundle) -> None:
    rec = _rec(bundle)
    items, _ = rec.recommend([Query(-1)], 10)[0]
    assert np.array_equal(items, bundle.popularity.retrieve([Query(-1)], 10)[0][0])
    toys = bundle.catalogue.index_of(np.array([305, 306]))  # a new visitor who looked at coffee products
    items, _ = rec.recommend([Query(-1, toys)], 10)[0]
    assert (bundle.catalogue.l1[items[:5]] == bundle.catalogue.l1[toys[0]]).all()


def test_similar_items_never_the_item_itself_and_same_category(bundle: Bundle) -> None:
    for item in range(0, bundle.catalogue.n_items, 9):
        nbr, _, source = bundle.similar.similar(item, 5)
        assert item not in nbr
        if source == "als":
            assert (bundle.catalogue.l1[nbr[:3]] == bundle.catalogue.l1[item]).all()


def test_config_typos_fail_loudly(tmp_path: Path) -> None:
    from recommndr.errors import UserInputError
    from recommndr.params import load_train_config

    p = tmp_path / "params.yaml"
    p.write_text("train:\n  als:\n    factor: 32\n")
    with pytest.raises(UserInputError, match="factor"):
        load_train_config(p)
