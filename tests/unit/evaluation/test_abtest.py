"""The offline A/B test: the ground-truth shopper model (exact identities of the generator's
model), common random numbers, the paired statistics, the replay's counts, and the refusals."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recommndr.bundle import Bundle
from recommndr.data.interactions import load_catalogue
from recommndr.errors import DataNotFoundError, UserInputError
from recommndr.evaluation import abtest as ab
from recommndr.evaluation.paired import Ratio, compare, z_test
from recommndr.evaluation.replay import replay_stats
from recommndr.evaluation.shoppers import Draws, load_shoppers, simulate
from recommndr.loading import load_bundle

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def shoppers(tiny_dataset: Path):  # type: ignore[no-untyped-def]
    return load_shoppers(tiny_dataset)


@pytest.fixture(scope="module")
def tiny_bundle(artifacts: Path) -> Bundle:
    return load_bundle(artifacts, ranker_threads=2)


def test_view_shares_are_the_generators_distribution(shoppers) -> None:  # type: ignore[no-untyped-def]
    # each shopper's chance that one view is each product sums to 1 over the catalogue
    users = np.arange(0, shoppers.user_ids.shape[0], 97)
    everything = np.tile(np.arange(shoppers.n_items), (users.shape[0], 1))
    total = shoppers.view_share(users, everything).sum(axis=1)
    assert np.allclose(total, 1.0)
    # a product of the shopper's first taste leaf beats the same leaf's products for a shopper
    # with no taste there, on average
    u = users[0]
    leaf = shoppers.tastes[u, 0]
    in_leaf = np.flatnonzero(shoppers.item_leaf == leaf)
    others = users[(shoppers.tastes[users] != leaf).all(axis=1)]
    mine = shoppers.attractiveness(np.array([u]), in_leaf[None, :]).mean()
    theirs = shoppers.attractiveness(others, np.tile(in_leaf, (others.shape[0], 1))).mean()
    assert mine > 3 * theirs


def test_funnel_expectations_match_the_simulation(shoppers) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    visits = shoppers.visits(4000, rng)
    lists = rng.integers(-1, shoppers.n_items, (4000, 10))
    f = shoppers.funnel(visits, lists)
    assert (f.click[lists < 0] == 0).all()
    exam = shoppers.model.examination(10)
    assert (np.diff(exam) < 0).all() and exam[0] == 1.0
    e = f.expected()
    sims = [simulate(f, Draws.new(4000, 10, rng)).per_visit() for _ in range(40)]
    for key in ("clicks", "carts"):
        mean = np.mean([s[key].mean() for s in sims])
        sd = np.std([s[key].mean() for s in sims], ddof=1) / math.sqrt(len(sims))
        assert abs(mean - e[key].mean()) < 4 * sd + 1e-9, key


def test_owned_durables_are_never_bought_again(shoppers) -> None:  # type: ignore[no-untyped-def]
    key = shoppers.bought_durable_keys[0]
    user, item = key // shoppers.n_items, key % shoppers.n_items
    f = shoppers.funnel(np.array([user, user]), np.array([[item], [-1]]))
    assert f.buy[0, 0] == 0.0 and shoppers.durable[item]
    other = np.flatnonzero(~shoppers.durable)[0]
    assert shoppers.funnel(np.array([user]), np.array([[other]])).buy[0, 0] > 0.0


def test_common_random_numbers_give_equal_outcomes_for_equal_slots(shoppers) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    visits = shoppers.visits(500, rng)
    a = rng.integers(0, shoppers.n_items, (500, 10))
    b = a.copy()
    b[:, 5:] = rng.integers(0, shoppers.n_items, (500, 5))
    d = Draws.new(500, 10, rng)
    oa, ob = simulate(shoppers.funnel(visits, a), d), simulate(shoppers.funnel(visits, b), d)
    assert (oa.clicks[:, :5] == ob.clicks[:, :5]).all() and (oa.carts[:, :5] == ob.carts[:, :5]).all()


def test_two_stage_beats_popularity_and_a_equals_a(shoppers, tiny_bundle: Bundle) -> None:  # type: ignore[no-untyped-def]
    two, pop = ab.Arm("two_stage", tiny_bundle), ab.Arm("popularity", None, tiny_bundle)
    r = ab.run(shoppers, two, pop, users=3000, seed=0, resamples=300)
    assert set(r["a"]) == set(r["diff"]) == {"ctr", "atc", "cvr", "carts_per_list", "purchases_per_list"}
    assert r["expected"]["a"]["ctr"] > r["expected"]["b"]["ctr"]
    d = r["diff"]["ctr"]
    assert d["ci_low"] <= d["estimate"] <= d["ci_high"] and d["ci_low"] > 0 and d["p_value"] < 0.01
    assert d["estimate"] == pytest.approx(r["a"]["ctr"] - r["b"]["ctr"])
    assert "purchases_per_list" in r["_meta"]["few_events"] or r["_meta"]["totals"]["b"]["purchases"] >= 30
    assert "ctr" not in r["_meta"]["few_events"]
    same = ab.run(shoppers, two, two, users=500, seed=1, resamples=200)
    for dd in same["diff"].values():
        assert dd["estimate"] == dd["ci_low"] == dd["ci_high"] == 0.0 and dd["p_value"] == 1.0


def test_arm_lists_are_what_the_api_ranks(tiny_bundle: Bundle) -> None:
    from recommndr.evaluation.evaluate import two_stage_lists
    from recommndr.ranking.two_stage import popular

    users = np.array([tiny_bundle.user_ids[3], tiny_bundle.user_ids[3], 10**9], dtype=np.int64)
    lists = ab.Arm("a", tiny_bundle).lists(users)
    assert (lists[0] == lists[1]).all()
    assert (lists[2] == two_stage_lists(tiny_bundle, users[2:], 10)[0]).all()
    pop = ab.Arm("p", None, tiny_bundle).lists(users)
    assert (pop == popular(tiny_bundle.popularity, 10)[0][None, :]).all()


def test_paired_z_test_is_the_paired_t_test_for_per_unit_rates() -> None:
    rng = np.random.default_rng(2)
    ya, yb = rng.poisson(1.0, 400).astype(float), rng.poisson(1.1, 400).astype(float)
    ones = np.ones(400)
    d = ya - yb
    z = d.mean() / (d.std(ddof=1) / math.sqrt(400))
    p = z_test({"y": ya, "n": ones}, {"y": yb, "n": ones}, Ratio("y", "n"))
    assert p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))


def test_bootstrap_interval_covers_a_known_difference() -> None:
    rng = np.random.default_rng(3)
    m = {"r": Ratio("y", "n")}
    covered, rejected = 0, 0
    for rep in range(120):
        base = rng.normal(0.0, 1.0, 300)  # a shared per-unit effect: what pairing removes
        a = {"y": base + rng.normal(0.3, 1.0, 300), "n": np.ones(300)}
        b = {"y": base + rng.normal(0.0, 1.0, 300), "n": np.ones(300)}
        d = compare(a, b, m, resamples=300, seed=rep)["r"]
        covered += d.ci_low <= 0.3 <= d.ci_high
        rejected += d.p_value < 0.05
    assert 0.88 <= covered / 120 <= 1.0
    assert rejected / 120 > 0.9  # 0.3 with a paired sd of sqrt(2) over 300 units: power ~0.99


def test_replay_counts_hits_and_recall_by_hand() -> None:
    users = np.array([10, 20, 30], dtype=np.int64)
    lists = np.array([[1, 2, 3], [4, 4, 5], [6, -1, -1]], dtype=np.int64)
    bought = pl.DataFrame({"user_id": [10, 10, 20, 20, 99], "item": [2, 9, 4, 7, 1]})
    s = replay_stats(users, lists, bought, 10)
    assert s["hits"].tolist() == [1.0, 1.0, 0.0]
    assert s["recall"].tolist() == [0.5, 0.5, 0.0]  # user 20's repeated 4 counts once


def test_refusals(tiny_dataset: Path, tmp_path: Path, world_bundle: Bundle) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(tiny_dataset, bare, ignore=shutil.ignore_patterns("ground_truth"))
    with pytest.raises(DataNotFoundError, match="no ground truth"):
        load_shoppers(bare)
    other = tmp_path / "other"
    shutil.copytree(tiny_dataset, other)
    appeal = pl.read_parquet(other / "ground_truth" / "item_appeal.parquet")
    appeal.with_columns(pl.col("item_id") + 100_000).write_parquet(
        other / "ground_truth" / "item_appeal.parquet"
    )
    with pytest.raises(UserInputError, match="does not list the products"):
        load_shoppers(other)
    cat = load_catalogue(tiny_dataset)
    with pytest.raises(UserInputError, match="products are not the data's"):
        ab.check_bundle(world_bundle, cat, np.arange(1, 3000), "--b")
    for n in (0, 99, 1_000_001):
        with pytest.raises(UserInputError, match="--users"):
            ab.check_users(n)
