"""Interaction weights: event type and age, the one definition every model uses."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recommndr.data.interactions import Interactions
from recommndr.params import EventWeights


def event_weights(
    inter: Interactions, weights: EventWeights, half_life_days: float
) -> npt.NDArray[np.float32]:
    """Weight of each event: by type (view < add to cart < purchase), halved every half-life."""
    by_type = np.array([weights.view, weights.add_to_cart, weights.purchase], dtype=np.float64)
    w = by_type[inter.etype] * np.exp2(-inter.age_days() / half_life_days)
    return np.asarray(w, dtype=np.float32)
