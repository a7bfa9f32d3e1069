"""Unseen products get factors from their attributes, near the products they resemble."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from recommndr.data.interactions import build_interactions, load_catalogue, load_events
from recommndr.params import ALSConfig, EventWeights
from recommndr.retrieval.als import ALSRetriever
from recommndr.retrieval.cold import attribute_factors, attribute_matrix

pytestmark = pytest.mark.unit


def test_a_product_nobody_touched_lands_among_its_category(world_dir: Path) -> None:
    from tests.unit.conftest import T0

    catalogue, events = load_catalogue(world_dir), load_events(world_dir)
    cut = int((T0 + timedelta(days=50)).timestamp() * 1_000_000)  # product 999 launches on day 50
    inter = build_interactions(catalogue, events, cut)
    als = ALSRetriever.fit(inter, EventWeights(), ALSConfig(factors=16), seed=0)
    new = int(catalogue.index_of(np.array([999]))[0])
    assert not als.item_known[new] and als.item_known.sum() == catalogue.n_items - 1
    f = als.item_factors / np.linalg.norm(als.item_factors, axis=1, keepdims=True)
    sim = f[als.item_known] @ f[new]
    same = catalogue.l1[als.item_known] == catalogue.l1[new]  # Books
    assert sim[same].mean() > 0.5 and sim[same].mean() > sim[~same].max()
    # a Books shopper's factors score it above every other category's products
    u = int(inter.user_index(np.array([1]))[0])  # user 1 is loyal to Books
    s = als.item_factors @ als.user_factors[u]
    assert s[new] > s[als.item_known & (catalogue.l1 != catalogue.l1[new])].max()


def test_known_products_keep_their_factors_and_attributes_are_one_hot(world_dir: Path) -> None:
    catalogue = load_catalogue(world_dir)
    x = attribute_matrix(catalogue)
    assert np.array_equal(
        np.asarray(x.sum(axis=1)).ravel(), np.full(catalogue.n_items, 5.0)
    )  # l1, l2, l3, band, bias
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(catalogue.n_items, 8)).astype(np.float32)
    known = np.ones(catalogue.n_items, bool)
    known[:3] = False
    out = attribute_factors(catalogue, factors, known)
    assert np.array_equal(out[known], factors[known]) and not np.array_equal(out[~known], factors[~known])
    assert attribute_factors(catalogue, factors, np.ones(catalogue.n_items, bool)) is factors
