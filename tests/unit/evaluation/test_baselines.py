"""The baselines on seeded worlds with known answers, and the beyond-accuracy metrics on hand
computed lists."""

from __future__ import annotations

import numpy as np
import pytest

from recommndr.data.interactions import Interactions
from recommndr.evaluation import baselines
from recommndr.params import EventWeights
from recommndr.ranking.candidates import Exclusions

pytestmark = pytest.mark.unit


def test_global_popularity_counts_shoppers_not_events(world_inter: Interactions) -> None:
    pop = baselines.global_popularity(world_inter)
    item3 = int(world_inter.catalogue.index_of(np.array([3]))[0])
    # product 3 is in every one of the 200 users' histories (viewed and carted: still one shopper each)
    assert pop[item3] == world_inter.n_users == 200
    assert pop.max() == pop[item3]


def test_seen_products_are_never_recommended(world_inter: Interactions) -> None:
    excl = Exclusions.fit(world_inter, all_seen=True)
    users = np.arange(0, 40, dtype=np.int64)
    lists = baselines.static_lists(baselines.global_popularity(world_inter), users, 10, excl)
    cooc = baselines.Cooccurrence.fit(world_inter)
    sar = baselines.sar_lists(world_inter, cooc, EventWeights(), users, 10, excl)
    for u, a, b in zip(users, lists, sar, strict=True):
        seen = set(world_inter.item[world_inter.user == u].tolist())
        assert len(a) == 10 and not seen & set(a.tolist())
        assert not seen & set(b.tolist())


def test_sar_recommends_within_the_shoppers_category(plain_inter: Interactions) -> None:
    # every user of the plain world only ever touches one category: co-occurrence keeps them there
    none = Exclusions(np.zeros(0, np.int64), plain_inter.catalogue.n_items, np.zeros(1, bool))
    users = np.arange(plain_inter.n_users, dtype=np.int64)
    cooc = baselines.Cooccurrence.fit(plain_inter)
    lists = baselines.sar_lists(plain_inter, cooc, EventWeights(), users, 10, none)
    cat = plain_inter.catalogue.l1
    own = np.array([cat[plain_inter.item[plain_inter.user == u][0]] for u in users])
    assert all(len(r) == 10 and (cat[r] == own[u]).all() for u, r in zip(users, lists, strict=True))


def test_plain_als_learns_the_categories(plain_inter: Interactions) -> None:
    uf, itf = baselines.fit_plain_als(plain_inter, seed=0, threads=1)
    assert uf.shape == (plain_inter.n_users, 100) and itf.shape[1] == 100
    none = Exclusions(np.zeros(0, np.int64), plain_inter.catalogue.n_items, np.zeros(1, bool))
    users = np.arange(plain_inter.n_users, dtype=np.int64)
    lists = baselines.factor_lists(uf, itf, users, 5, none)
    cat = plain_inter.catalogue.l1
    own = np.array([cat[plain_inter.item[plain_inter.user == u][0]] for u in users])
    assert np.mean([np.mean(cat[r] == own[u]) for u, r in zip(users, lists, strict=True)]) > 0.95
    # a user without a row gets nothing
    assert baselines.factor_lists(uf, itf, np.array([-1]), 5, none)[0].size == 0


def test_novelty_is_the_self_information_of_what_is_recommended() -> None:
    item_users = np.array([8.0, 4.0, 1.0, 0.0], np.float32)  # of 8 shoppers
    lists = [np.array([0, 1]), np.array([2, 3])]
    # -log2(8/8), -log2(4/8), -log2(1/8), and a product nobody had counts as had by one
    assert baselines.novelty(lists, item_users, 8) == pytest.approx((0 + 1 + 3 + 3) / 4)
    assert baselines.novelty([], item_users, 8) == 0.0


def test_diversity_is_one_minus_the_mean_pairwise_cosine(world_inter: Interactions) -> None:
    cooc = baselines.Cooccurrence.fit(world_inter)
    a, b, c = (int(world_inter.catalogue.index_of(np.array([i]))[0]) for i in (1, 2, 301))
    cab = float(cooc.counts[a, b])
    cos_ab = cab / np.sqrt(cooc.diag[a] * cooc.diag[b])
    assert cab > 0 and float(cooc.counts[a, c]) == 0.0  # 1 and 2 share shoppers, 1 and 301 none
    assert baselines.diversity([np.array([a, b])], cooc) == pytest.approx(1 - cos_ab, rel=1e-6)
    assert baselines.diversity([np.array([a, c])], cooc) == pytest.approx(1.0)
    # averaged over lists; a list of one product has no pair and is left out
    two = baselines.diversity([np.array([a, b]), np.array([a, c]), np.array([a])], cooc)
    assert two == pytest.approx(((1 - cos_ab) + 1.0) / 2, rel=1e-6)
