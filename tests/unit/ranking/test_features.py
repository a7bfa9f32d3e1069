"""The shared ranking features: the same in a batch and one by one, and after a save and load (whose
tables are narrowed: the same bits from them)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from recommndr.data.interactions import Interactions
from recommndr.errors import ArtifactError
from recommndr.params import TrainConfig
from recommndr.ranking.features import (
    FEATURES,
    FeatureTables,
    SplitKeys,
    build_feature_tables,
    compute_features,
)
from recommndr.retrieval.popularity import PopularityRetriever

pytestmark = pytest.mark.unit


def test_features_are_the_same_in_batch_and_one_by_one(world_inter: Interactions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig()
    pop = PopularityRetriever.fit(world_inter, cfg.weights, cfg.popularity)
    tables = build_feature_tables(world_inter, pop.pop, np.zeros(len(world_inter.catalogue.l3_names), bool))
    rng = np.random.default_rng(0)
    n = 400
    user = rng.integers(-1, world_inter.n_users, n)
    item = rng.integers(0, world_inter.catalogue.n_items, n)
    sig = [rng.random(n).astype(np.float32) for _ in range(4)]
    src = rng.integers(0, 8, n).astype(np.uint8)
    batch = compute_features(tables, user, item, *sig, src)
    assert batch.shape == (n, len(FEATURES)) and batch.dtype == np.float32
    assert np.isfinite(batch).all()
    one = np.vstack(
        [
            compute_features(
                tables, user[i : i + 1], item[i : i + 1], *(s[i : i + 1] for s in sig), src[i : i + 1]
            )
            for i in range(0, n, 37)
        ]
    )
    assert np.array_equal(one, batch[::37])
    tables.save(tmp_path / "t.npz")
    again = compute_features(FeatureTables.load(tmp_path / "t.npz"), user, item, *sig, src)
    assert np.array_equal(again, batch)
    # a user's own history shows in the user x product features
    u = int(world_inter.user[0])
    it = int(world_inter.item[0])
    f = compute_features(
        tables,
        np.array([u]),
        np.array([it]),
        *(np.zeros(1, np.float32) for _ in range(4)),
        np.zeros(1, np.uint8),
    )
    assert f[0, FEATURES.index("user_item_views_log")] > 0
    assert f[0, FEATURES.index("user_affinity_l1")] > 0


def test_a_users_products_in_each_state_come_from_the_tables(world_inter: Interactions) -> None:
    """What ``exclude=viewed|carted|purchased`` takes from the model: the events before the cut-off."""
    cfg = TrainConfig()
    pop = PopularityRetriever.fit(world_inter, cfg.weights, cfg.popularity)
    tables = build_feature_tables(world_inter, pop.pop, np.zeros(len(world_inter.catalogue.l3_names), bool))
    differ = 0
    for u in (0, 1, 2, 7, 100, world_inter.n_users - 1):
        mine = world_inter.user == u

        def had(*types: int, mine: npt.NDArray[np.bool_] = mine) -> list[int]:
            return sorted(set(world_inter.item[mine & np.isin(world_inter.etype, types)].tolist()))

        assert sorted(tables.user_items(u, viewed=True).tolist()) == had(0, 1, 2)
        assert sorted(tables.user_items(u, carted=True).tolist()) == had(1)
        assert sorted(tables.user_items(u, purchased=True).tolist()) == had(2)
        assert sorted(tables.user_items(u, carted=True, purchased=True).tolist()) == had(1, 2)
        assert sorted(tables.user_items(u, viewed=True, carted=True).tolist()) == had(0, 1, 2)
        assert tables.user_items(u).size == 0
        differ += had(1) != had(2)
    assert differ, "the world has carts that were not bought (product 3)"
    assert tables.user_items(-1, viewed=True).size == 0


def test_exclusions_give_a_users_bought_durables(world_inter: Interactions) -> None:
    from recommndr.ranking.candidates import Exclusions

    n = world_inter.catalogue.n_items
    keys = np.array([0 * n + 4, 0 * n + 9, 2 * n + 1, 5 * n + 0, 5 * n + n - 1], dtype=np.int64)
    ex = Exclusions(keys, n, np.zeros(1, bool))
    assert ex.items_of(0).tolist() == [4, 9] and ex.items_of(2).tolist() == [1]
    assert ex.items_of(5).tolist() == [0, n - 1] and ex.items_of(1).size == 0 and ex.items_of(-1).size == 0


def test_saved_tables_are_narrow_and_give_the_same_features(world_inter: Interactions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig()
    pop = PopularityRetriever.fit(world_inter, cfg.weights, cfg.popularity)
    tables = build_feature_tables(world_inter, pop.pop, np.zeros(len(world_inter.catalogue.l3_names), bool))
    tables.save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as z:
        assert z["ui_views"].dtype == np.uint8 and z["uc3_keys"].dtype.itemsize < 8
        assert "ui_last_us" not in z.files and z["ui_days_since_log"].dtype == np.float32
    loaded = FeatureTables.load(tmp_path / "t.npz")
    assert loaded.ui_last_us is None and isinstance(loaded.ui_keys, SplitKeys)
    np.testing.assert_array_equal(np.asarray(loaded.ui_keys), tables.ui_keys)
    np.testing.assert_array_equal(loaded.ui_days_since_log, tables.ui_days_since_log)
    # a count that is not a whole number cannot be narrowed: refused, not rounded
    tables.ui_carts = tables.ui_carts + np.float32(0.5)
    with pytest.raises(ArtifactError, match=r"ui_carts: .* do not fit uint8 exactly"):
        tables.save(tmp_path / "bad.npz")


def test_split_keys_find_what_a_search_over_int64_keys_finds() -> None:
    rng = np.random.default_rng(5)
    keys = np.unique(rng.integers(0, 5 * 2**32, 20_000))  # past int32, several runs of high bits
    keys = np.concatenate([[0], keys[keys > 0], [2**32 - 1, 2**32, 3 * 2**32]])
    keys = np.unique(keys)
    split = SplitKeys.split(keys)
    assert split.low.dtype == np.uint32 and len(split) == keys.shape[0]
    np.testing.assert_array_equal(np.asarray(split), keys)
    q = np.concatenate([keys[::7], rng.integers(-5, 6 * 2**32, 5000), [-1, 2**40]])
    pos, hit = split.find(q)
    ref = np.minimum(np.searchsorted(keys, q), keys.shape[0] - 1)
    want = (keys[ref] == q) & (q >= 0)
    np.testing.assert_array_equal(hit, want)
    np.testing.assert_array_equal(pos[hit], ref[want])
    assert ((pos >= 0) & (pos < keys.shape[0])).all()
    # and it reads as the int64 array: slices, positions, np.searchsorted
    np.testing.assert_array_equal(split[100:200], keys[100:200])
    np.testing.assert_array_equal(split[[0, 5, -1]], keys[[0, 5, -1]])
    assert split[7] == keys[7]
    for side in ("left", "right"):
        np.testing.assert_array_equal(
            np.searchsorted(split, q, side=side), np.searchsorted(keys, q, side=side)
        )
    assert np.searchsorted(split, int(keys[9])) == 9
    with pytest.raises(ValueError, match="sorted"):
        SplitKeys.split(np.array([3, 2], np.int64))
