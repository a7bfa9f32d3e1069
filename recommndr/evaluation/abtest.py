"""The offline A/B test on the synthetic shop: the same simulated visits (``shoppers.py``) are
shown arm a's and arm b's top 10 with common random numbers (the same uniforms per visit and
slot in both arms), so the paired difference carries no noise from the draws where both arms
show the same product in the same place.

An arm is a bundle's ``two_stage`` list, exactly as ``/recommendations`` ranks it for a shopper
without online features (``evaluate.two_stage_lists``), or ``popularity``: the API's popularity
list (``ranking.two_stage.popular``: ``/popular``, the cold-start list and the popularity-only
fallback), the same for every visit.

Rates, defined as the API's per-variant gauges define them (``serving/metrics.variant_rates``),
so an offline figure reads like a live one: ``ctr`` = clicks / lists shown, ``atc`` =
add-to-carts / clicks, ``cvr`` = purchases / clicks; and, because a conditional rate can rise
while the funnel shrinks, ``carts_per_list`` and ``purchases_per_list``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recommndr.bundle import Bundle
from recommndr.data.interactions import Catalogue
from recommndr.errors import UserInputError
from recommndr.evaluation.evaluate import two_stage_lists
from recommndr.evaluation.paired import Ratio, compare, ratio
from recommndr.evaluation.shoppers import Draws, Shoppers, simulate
from recommndr.ranking.two_stage import popular

log = logging.getLogger(__name__)
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
SLOTS = 10
POPULARITY = "popularity"
METRICS: dict[str, Ratio] = {
    "ctr": Ratio("clicks", "lists"),
    "atc": Ratio("carts", "clicks"),
    "cvr": Ratio("purchases", "clicks"),
    "carts_per_list": Ratio("carts", "lists"),
    "purchases_per_list": Ratio("purchases", "lists"),
}
MIN_USERS, MAX_USERS = 100, 1_000_000
FEW_EVENTS = 30  # fewer events than this in either arm: the rate's interval and test are unreliable


@dataclass(frozen=True)
class Arm:
    """A policy: a bundle's two_stage lists, or (``bundle`` None) the popularity list of
    ``popularity_of`` (a bundle: its popularity model)."""

    name: str
    bundle: Bundle | None
    popularity_of: Bundle | None = None

    def lists(self, user_ids: I64, k: int = SLOTS) -> I64:
        """(users, k) dense products, -1 where a list is shorter than ``k``."""
        if self.bundle is not None:
            uniq, inverse = np.unique(user_ids, return_inverse=True)
            return pad(two_stage_lists(self.bundle, uniq, k), k)[inverse]
        assert self.popularity_of is not None
        items = popular(self.popularity_of.popularity, k)[0]
        return np.tile(pad([items], k), (user_ids.shape[0], 1))


def pad(lists: list[I64], k: int) -> I64:
    out = np.full((len(lists), k), -1, dtype=np.int64)
    for i, items in enumerate(lists):
        out[i, : min(k, items.shape[0])] = items[:k]
    return out


def check_users(n: int) -> None:
    if not MIN_USERS <= n <= MAX_USERS:
        raise UserInputError(f"--users must be between {MIN_USERS:,} and {MAX_USERS:,} (got {n:,})")


def check_bundle(bundle: Bundle, catalogue: Catalogue, user_ids: I64, what: str) -> None:
    """A bundle trained on another shop ranks other products for other people: refuse it."""
    if not np.array_equal(bundle.catalogue.item_ids, catalogue.item_ids):
        raise UserInputError(
            f"{what}: the bundle's {bundle.catalogue.n_items:,} products are not the data's "
            f"{catalogue.n_items:,} (trained on another dataset?)"
        )
    known = np.isin(np.asarray(bundle.user_ids, dtype=np.int64), user_ids)
    if not known.all():
        raise UserInputError(
            f"{what}: {int((~known).sum()):,} of the bundle's users are not shoppers of the data "
            "(trained on another dataset?)"
        )


def arm_stats(shoppers: Shoppers, visits: I64, lists: I64, draws: Draws) -> dict[str, F64]:
    """Per visit: lists, clicks, carts and purchases of one arm under the shared draws."""
    return simulate(shoppers.funnel(visits, lists), draws).per_visit()


def expected_stats(shoppers: Shoppers, visits: I64, lists: I64) -> dict[str, F64]:
    """Per visit, the expectations of :func:`arm_stats` (the simulator's own truth)."""
    e = shoppers.funnel(visits, lists).expected()
    return {"lists": np.ones(visits.shape[0])} | e


def run(
    shoppers: Shoppers,
    a: Arm,
    b: Arm,
    users: int = 20_000,
    seed: int = 0,
    resamples: int = 2000,
) -> dict[str, Any]:
    """``users`` visits (drawn in proportion to activity) shown both arms' lists: per arm the
    rates, per rate the paired difference a - b with its 95 % bootstrap interval and p-value, and
    the truth (each rate's expectation over the same visits) beside them."""
    check_users(users)
    rng = np.random.default_rng(seed)
    visits = shoppers.visits(users, rng)
    draws = Draws.new(users, SLOTS, rng)
    ids = shoppers.user_ids[visits]
    log.info("ranking %s visits for arm a (%s) and b (%s)", f"{users:,}", a.name, b.name)
    lists = {"a": a.lists(ids), "b": b.lists(ids)}
    stats = {arm: arm_stats(shoppers, visits, lists[arm], draws) for arm in ("a", "b")}
    truth = {arm: expected_stats(shoppers, visits, lists[arm]) for arm in ("a", "b")}
    diff = compare(stats["a"], stats["b"], METRICS, resamples=resamples, seed=seed)
    same = float((lists["a"] == lists["b"]).all(axis=1).mean())
    # bench_abtest: with a handful of events in an arm the ratio's interval under-covers and the
    # z-test over-rejects (cvr at 1,000 visits): such rates are flagged, not silently reported
    few = sorted(
        k
        for k, m in METRICS.items()
        if min(stats[arm][s].sum() for arm in ("a", "b") for s in (m.numerator, m.denominator)) < FEW_EVENTS
    )
    return {
        "a": {k: ratio(stats["a"], m) for k, m in METRICS.items()},
        "b": {k: ratio(stats["b"], m) for k, m in METRICS.items()},
        "diff": {k: d.as_dict() for k, d in diff.items()},
        "expected": {arm: {k: ratio(truth[arm], m) for k, m in METRICS.items()} for arm in ("a", "b")},
        "_meta": {
            "kind": "simulation",
            "a": a.name,
            "b": b.name,
            "visits": users,
            "distinct_shoppers": int(np.unique(visits).shape[0]),
            "seed": seed,
            "resamples": resamples,
            "slots": SLOTS,
            "position_bias": shoppers.model.position_bias,
            "views_per_session": shoppers.model.views_per_session,
            "identical_lists": same,
            "few_events": few,
            "totals": {arm: {k: float(v.sum()) for k, v in stats[arm].items()} for arm in ("a", "b")},
        },
    }


def interval_plot(result: dict[str, Any], title: str) -> Any:
    """Each rate's difference a - b relative to b's rate, with its 95 % interval (a matplotlib
    figure; the caller logs and closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["diff"])
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(names) + 1.5))
    for y, name in enumerate(names):
        d, base = result["diff"][name], result["b"][name]
        scale = 100.0 / base if base else 0.0
        est, lo, hi = d["estimate"] * scale, d["ci_low"] * scale, d["ci_high"] * scale
        ax.errorbar([est], [y], xerr=[[est - lo], [hi - est]], fmt="o", capsize=4)
        ax.annotate(f"p={d['p_value']:.2g}", (hi, y), xytext=(6, -3), textcoords="offset points", fontsize=8)
    ax.axvline(0.0, color="grey", lw=1)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("a - b, % of b (95 % interval)")
    ax.set_title(title)
    fig.tight_layout()
    return fig
