"""Scales and calibration constants of the synthetic shop.

Every constant that shapes behaviour lives here, next to the figure it is calibrated to; the
package docstring (``recommndr.data.synthetic``) lists the targets and their sources.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERIOD_START = np.datetime64("2025-01-01T00:00:00", "us")
N_DAYS = 365
N_WEEKS = (N_DAYS + 6) // 7
US_PER_DAY = 86_400_000_000
US_PER_SECOND = 1_000_000


@dataclass(frozen=True)
class Scale:
    """Sizes of one scale: the catalogue tree, the catalogue, the population and the event count."""

    name: str
    n_users: int
    n_items: int
    n_events: int
    n_l1: int  # top-level categories used (of the 12 in the taxonomy)
    n_l2: int  # second-level categories per top-level one (of 6)
    n_l3: int  # leaves per second-level category (of 6)
    n_brands: int  # brands per top-level category


SCALES: dict[str, Scale] = {
    "tiny": Scale("tiny", 2_000, 600, 40_000, 4, 3, 3, 6),
    "small": Scale("small", 20_000, 5_000, 400_000, 8, 4, 4, 15),
    "full": Scale("full", 1_000_000, 100_000, 10_000_000, 12, 6, 6, 40),
}

# --- catalogue -------------------------------------------------------------------------------
SHARE_PRE_PERIOD_ITEMS = 0.72  # products launched before the period; the rest arrive during it
CATALOGUE_HISTORY_DAYS = 3 * 365  # pre-period launches are spread over the three years before
ITEM_POPULARITY_SIGMA = 1.75  # log-normal spread of a product's base appeal (long tail)
LEAF_POPULARITY_SIGMA = 0.6  # spread of appeal between leaf categories
LAUNCH_BOOST = 2.5  # a new product's extra appeal at launch ...
LAUNCH_DECAY_DAYS = 35.0  # ... decaying with this time constant
AGE_HALF_LIFE_DAYS = 540.0  # old products slowly lose appeal
SHARE_TRENDING = 0.04  # products that get a temporary trend bump during the period
TREND_PEAK_SIGMA = 1.0  # log-normal height of the bump (median e^1.2 ~ 3.3x)
TREND_PEAK_MEAN = 1.2
TREND_WIDTH_DAYS = (7.0, 28.0)
SHARE_ITEMS_WITH_COMPLEMENT = 0.7  # products in a complemented category that have a planted complement

# --- users -------------------------------------------------------------------------------------
SHARE_PRE_PERIOD_USERS = 0.72  # users who signed up before the period; the rest sign up during it
USER_HISTORY_DAYS = 2 * 365
CHURN_MEAN_DAYS_EXISTING = 900.0  # mean remaining lifetime of users who signed up before the period
CHURN_MEAN_DAYS_NEW = 500.0  # mean lifetime of users who sign up during it
SHARE_MEMBERS = 0.18  # loyalty members ('member' segment) ...
MEMBER_ACTIVITY = 2.5  # ... are this much more active
ACTIVITY_SIGMA = 0.9  # log-normal spread of user activity (heavy tail of sessions per user)
TASTE_SHAPES = (2.0, 1.0, 0.6)  # gamma shapes of the weights on a user's three taste leaves
TASTE_SAME_L1 = 0.55  # chance a 2nd/3rd taste leaf is in the same top-level category as the 1st
PRICE_TIERS = ("budget", "mainstream", "premium")
PRICE_TIER_SHARES = (0.35, 0.45, 0.20)
PRICE_TIER_SLOPE = (-0.9, 0.0, 0.7)  # appeal multiplier exp(slope * standardised log price)
COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "PL", "SE", "CA")
COUNTRY_SHARES = (0.34, 0.14, 0.12, 0.09, 0.07, 0.07, 0.05, 0.05, 0.03, 0.04)

# --- sessions and funnel -------------------------------------------------------------------------
EXPLORE = 0.12  # a session about a category outside the user's tastes ...
EXPLORE_HOLIDAY = 0.30  # ... more often in the gift season
BOUNCE = 0.42  # single-page sessions
VIEWS_LOG_MEAN = 1.15  # non-bounce sessions view 2 + floor(lognormal) products
VIEWS_LOG_SIGMA = 0.85
MAX_VIEWS = 60
SECONDARY_LEAF = 0.2  # a view in the user's other taste categories rather than the session's
REVIEW = 0.12  # a view that returns to the previous product
CART_RATE = 0.035  # add-to-cart per product view (before user and product factors)
BUYER_SIGMA = 0.7  # spread of users' propensity to buy
ITEM_CONVERSION_SIGMA = 0.35
COMPLEMENT_VIEW = 0.45  # after carting a product with a complement, the complement is viewed ...
COMPLEMENT_CART = 0.65  # ... and carted
CHECKOUT = 0.24  # sessions with a cart that check out (Baymard: ~70% of carts abandoned)
CART_ITEM_PURCHASED = 0.9  # items left in a checked-out cart are bought
REPEAT_PURCHASE = 0.45  # a consumable is bought again after its cycle
REPEAT_ROUNDS = 3
VIEW_GAP_MEDIAN_S = 38.0
CART_GAP_MEDIAN_S = 12.0
CHECKOUT_GAP_MEDIAN_S = 150.0
OVERGENERATE = 1.04  # sessions drawn in excess, then trimmed to the exact event count
