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


@pytest.mark.parametrize("labels", ["temporal", "random"])
def test_a_fit_on_prepared_inputs_is_the_fit_without_them(plain_dir: Path, labels: str) -> None:
    """A search builds what no searched parameter changes once (pipeline.prepare); every fit on
    it must be the fit it would have been: same ranker rows, same factors, same lists."""
    from recommndr.data.interactions import load_catalogue
    from recommndr.evaluation.evaluate import model_lists
    from recommndr.params import TrainConfig
    from recommndr.training.pipeline import fit_models, prepare

    catalogue, events = load_catalogue(plain_dir), load_events(plain_dir)
    end = int(events["ts_us"].max()) + 1 - 7 * US_PER_DAY
    events = events.filter(pl.col("ts_us") < end)
    base = TrainConfig.model_validate(
        {"label_days": 14, "als": {"factors": 16}, "ranker": {"n_estimators": 20}}
    )
    # a second fit on the same prepared inputs with other searched parameters
    other = base.model_copy(update={"als": base.als.model_copy(update={"factors": 8, "alpha": 5.0})})
    prepared = prepare(catalogue, events, end, base, {}, labels=labels)  # type: ignore[arg-type]
    for cfg in (base, other):
        plain = fit_models(catalogue, events, end, cfg, {}, labels=labels, similar=False)  # type: ignore[arg-type]
        fast = fit_models(catalogue, events, end, cfg, {}, labels=labels, similar=False, prepared=prepared)  # type: ignore[arg-type]
        assert fast.rows == plain.rows and fast.users == plain.users
        np.testing.assert_array_equal(fast.bundle.als.item_factors, plain.bundle.als.item_factors)
        np.testing.assert_array_equal(fast.bundle.user_ids, plain.bundle.user_ids)
        users = plain.bundle.user_ids[:40]
        a, b = model_lists(plain.bundle, users, 10), model_lists(fast.bundle, users, 10)
        for name in ("als", "two_stage"):
            assert all(np.array_equal(x, y) for x, y in zip(a[name], b[name], strict=True))


def test_prepared_inputs_for_another_fit_are_refused(plain_dir: Path) -> None:
    from recommndr.data.interactions import load_catalogue
    from recommndr.params import TrainConfig
    from recommndr.training.pipeline import fit_models, prepare

    catalogue, events = load_catalogue(plain_dir), load_events(plain_dir)
    end = int(events["ts_us"].max()) + 1
    cfg = TrainConfig.model_validate(
        {"label_days": 14, "als": {"factors": 8}, "ranker": {"n_estimators": 10}}
    )
    prepared = prepare(catalogue, events, end, cfg, {})
    later_labels = cfg.model_copy(update={"label_days": 10})
    with pytest.raises(ValueError, match="prepared inputs"):
        fit_models(catalogue, events, end, later_labels, {}, similar=False, prepared=prepared)
    with pytest.raises(ValueError, match="prepared inputs"):
        fit_models(catalogue, events, end, cfg, {}, labels="random", similar=False, prepared=prepared)
    with pytest.raises(ValueError, match="prepared inputs"):
        fit_models(catalogue, events, end - US_PER_DAY, cfg, {}, similar=False, prepared=prepared)
