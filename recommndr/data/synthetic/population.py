"""The synthetic shoppers: sign-ups over the period (cold-start users), heavy-tailed activity,
tastes concentrated on a few leaf categories, a price tier and a propensity to buy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from recommndr.data.synthetic import params as cfg
from recommndr.data.synthetic.catalogue import Catalogue
from recommndr.data.synthetic.sampling import sample_segments
from recommndr.data.synthetic.seasonality import daily_intensity

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass
class Population:
    table: pa.Table
    first_day: I64  # first day of the period the user can shop (sign-up day, or 0)
    last_day: I64  # day after the user's last possible session (churn), at most N_DAYS
    activity: F64  # relative number of sessions
    buyer: F64  # propensity to add to cart and check out (mean ~1)
    tier: I64  # index into cfg.PRICE_TIERS
    tastes: I64  # (n_users, 3) leaf indices
    taste_w: F64  # (n_users, 3) weights, rows sum to 1


def build_population(scale: cfg.Scale, cat: Catalogue, rng: np.random.Generator) -> Population:
    n = scale.n_users
    # Sign-ups: before the period uniformly; during it following the square root of the shopping
    # intensity (somewhat more sign-ups in busy weeks).
    pre = rng.random(n) < cfg.SHARE_PRE_PERIOD_USERS
    day_cdf = np.cumsum(np.sqrt(daily_intensity()))
    day_cdf /= day_cdf[-1]
    in_period = np.searchsorted(day_cdf, rng.random(n))
    signup_day = np.where(pre, -rng.integers(1, cfg.USER_HISTORY_DAYS, n), in_period)
    signup_sec = rng.integers(0, 86_400, n)
    order = np.argsort(signup_day * 86_400 + signup_sec, kind="stable")  # user ids follow sign-up
    signup_day, signup_sec = signup_day[order], signup_sec[order]

    member = rng.random(n) < cfg.SHARE_MEMBERS
    activity = rng.lognormal(-0.5 * cfg.ACTIVITY_SIGMA**2, cfg.ACTIVITY_SIGMA, n)
    activity *= np.where(member, cfg.MEMBER_ACTIVITY, 1.0)
    buyer = rng.lognormal(-0.5 * cfg.BUYER_SIGMA**2, cfg.BUYER_SIGMA, n) * np.where(member, 1.3, 1.0)
    tier = np.searchsorted(np.cumsum(cfg.PRICE_TIER_SHARES), rng.random(n) * 0.999999)
    tastes = _tastes(n, cat, rng)
    taste_w = rng.gamma(np.array(cfg.TASTE_SHAPES)[None, :], size=(n, 3))
    taste_w /= taste_w.sum(axis=1, keepdims=True)
    country = pa.array(cfg.COUNTRIES).take(
        pa.array(np.searchsorted(np.cumsum(cfg.COUNTRY_SHARES), rng.random(n) * 0.999999))
    )
    segment = pa.array(np.where(member, "member", "standard"))
    signup_at = (
        cfg.PERIOD_START
        + signup_day.astype("timedelta64[D]").astype("timedelta64[us]")
        + signup_sec.astype("timedelta64[s]").astype("timedelta64[us]")
    )
    table = pa.table(
        {
            "user_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "signup_at": pa.array(signup_at, type=pa.timestamp("us", tz="UTC")),
            "country": country,
            "segment": segment,
        }
    )
    # A user who signs up during the period shops from the next day on.
    first_day = np.minimum(np.where(signup_day >= 0, signup_day + 1, 0), cfg.N_DAYS - 1).astype(np.int64)
    # Churn: every user stops shopping after an exponential lifetime; users who signed up before
    # the period may already be well into theirs. This balances the growth from new sign-ups.
    life = rng.exponential(np.where(pre, cfg.CHURN_MEAN_DAYS_EXISTING, cfg.CHURN_MEAN_DAYS_NEW))
    last_day = np.clip(first_day + 1 + life.astype(np.int64), first_day + 1, cfg.N_DAYS).astype(np.int64)
    return Population(table, first_day, last_day, activity, buyer, tier, tastes, taste_w)


def _tastes(n: int, cat: Catalogue, rng: np.random.Generator) -> I64:
    """Three taste leaves per user: the first by leaf demand, the others often in the same
    top-level category as the first (tastes concentrate on a few categories)."""
    order = np.argsort(cat.leaf_l1, kind="stable")  # leaves are already grouped by l1
    appeal = cat.leaf_appeal[order]
    cdf = np.cumsum(appeal)
    n_l1 = int(cat.leaf_l1.max()) + 1
    l1_lo = np.searchsorted(cat.leaf_l1[order], np.arange(n_l1), side="left")
    l1_hi = np.searchsorted(cat.leaf_l1[order], np.arange(n_l1), side="right")
    n_leaves = appeal.shape[0]
    zeros, full = np.zeros(n, dtype=np.int64), np.full(n, n_leaves, dtype=np.int64)
    first = sample_segments(cdf, zeros, full, rng)
    out = np.empty((n, 3), dtype=np.int64)
    out[:, 0] = first
    first_l1 = cat.leaf_l1[order][first]
    for k in (1, 2):
        same = rng.random(n) < cfg.TASTE_SAME_L1
        lo = np.where(same, l1_lo[first_l1], 0)
        hi = np.where(same, l1_hi[first_l1], n_leaves)
        out[:, k] = sample_segments(cdf, lo, hi, rng)
    return np.asarray(order[out], dtype=np.int64)
