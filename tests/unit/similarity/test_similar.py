"""Similar items of the model trained on the loyal-shopper world."""

from __future__ import annotations

import pytest

from recommndr.bundle import Bundle

pytestmark = pytest.mark.unit


def test_similar_items_never_the_item_itself_and_same_category(world_bundle: Bundle) -> None:
    for item in range(0, world_bundle.catalogue.n_items, 9):
        nbr, _, source = world_bundle.similar.similar(item, 5)
        assert item not in nbr
        if source == "als":
            assert (world_bundle.catalogue.l1[nbr[:3]] == world_bundle.catalogue.l1[item]).all()
