"""Simulated shoppers for the offline A/B test, from the synthetic shop's hidden ground truth
(``DIR/ground_truth/``, written by ``data.synthetic.generator._write_ground_truth``).

A shopper visits, is shown a list of 10 products and, slot by slot, independently:

- **clicks** with probability ``examination(rank) x attractiveness(user, product)`` (the
  position-based click model). ``examination(rank) = rank ** -position_bias`` (``position_bias``
  1 by default: the examination curve Joachims, Swaminathan and Schnabel simulate in "Unbiased
  learning-to-rank with biased feedback", WSDM 2017). ``attractiveness = 1 - (1 - p) ** V``: the
  chance that the product is among the ``V`` products the generator's shopper views in a session
  (``V``: the generator's expected views per session, ~3.9), where ``p`` is the generator's chance
  that one view of that shopper is that product: a session about one of their three taste leaves
  (by the taste weights) or, with ``EXPLORE``, another leaf, then a product of the leaf in
  proportion to its appeal and how the shopper's price tier reacts to its price. A product whose
  planted complement the shopper carted in the data's last ``COMPLEMENT_DAYS`` is viewed after it
  as the generator's shoppers view a complement after a cart (``COMPLEMENT_VIEW``);
- **adds to cart** a clicked product with the generator's per-view rate:
  ``CART_RATE x buyer propensity x product conversion`` (at most 0.9);
- **buys**: the visit checks out with the generator's rate ``CHECKOUT x sqrt(buyer)`` (at most 0.95,
  one draw per visit), and a carted product is then bought with ``CART_ITEM_PURCHASED`` — never a
  durable product the shopper already bought (the generator never sells one twice).

Approximations, stated: appeal is the product's mean weekly appeal (no season or launch week);
the chance of a session outside the tastes puts each leaf in proportion to its products' summed
appeal (the generator's leaf demand and season are not in the ground truth); a product's
standardised log price is computed from the catalogue's (rounded) prices.

Every quantity is an array over (visits, slots): one gather per table, no loop over shoppers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from recommndr.data.interactions import US_PER_DAY, Catalogue, load_catalogue, load_events
from recommndr.data.schema import GROUND_TRUTH_DIR, read_table
from recommndr.data.synthetic import params as gen
from recommndr.data.synthetic.catalogue import L1_TABLE
from recommndr.errors import DataNotFoundError, UserInputError

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
GROUND_TRUTH_TABLES = ("user_tastes", "item_appeal", "complements")
COMPLEMENT_DAYS = 7  # a cart this recent makes its complement attractive
CART, PURCHASE = 1, 2  # load_events' etype codes (schema.EVENT_TYPES order)


def expected_views_per_session() -> float:
    """The generator's mean product views per session (``sessions.simulate_sessions``): a bounce
    views 1; the others ``2 + floor(lognormal)``, at most ``MAX_VIEWS``."""
    mu, sigma = gen.VIEWS_LOG_MEAN, gen.VIEWS_LOG_SIGMA
    tail = sum(
        0.5 * math.erfc((math.log(j) - mu) / (sigma * math.sqrt(2.0))) for j in range(1, gen.MAX_VIEWS - 1)
    )
    return gen.BOUNCE * 1.0 + (1.0 - gen.BOUNCE) * (2.0 + tail)


@dataclass(frozen=True)
class ClickModel:
    """The position bias and the views a session has (the attractiveness curve)."""

    position_bias: float = 1.0
    views_per_session: float = expected_views_per_session()

    def examination(self, slots: int) -> F64:
        return np.asarray(np.arange(1, slots + 1, dtype=np.float64) ** -self.position_bias)


@dataclass(frozen=True)
class Funnel:
    """Per visit and slot: P(click), P(cart | click), P(bought | carted and checked out); per
    visit: P(checkout | a cart). An empty slot (item -1) has probability 0."""

    click: F64
    cart: F64
    buy: F64
    checkout: F64

    def expected(self) -> dict[str, F64]:
        """Expected clicks, carts and purchases per visit (the sums over slots)."""
        clicks = self.click
        carts = clicks * self.cart
        purchases = carts * self.buy * self.checkout[:, None]
        return {"clicks": clicks.sum(axis=1), "carts": carts.sum(axis=1), "purchases": purchases.sum(axis=1)}


@dataclass(frozen=True)
class Draws:
    """Common random numbers: the same uniforms for every arm, per visit and slot (click, cart,
    item bought) and per visit (checkout)."""

    click: F64
    cart: F64
    buy: F64
    checkout: F64

    @classmethod
    def new(cls, visits: int, slots: int, rng: np.random.Generator) -> Draws:
        u = rng.random((3, visits, slots))
        return cls(u[0], u[1], u[2], rng.random(visits))


@dataclass(frozen=True)
class Outcome:
    """What each visit did, slot by slot (booleans)."""

    clicks: B
    carts: B
    purchases: B

    def per_visit(self) -> dict[str, F64]:
        return {
            "lists": np.ones(self.clicks.shape[0]),
            "clicks": self.clicks.sum(axis=1).astype(np.float64),
            "carts": self.carts.sum(axis=1).astype(np.float64),
            "purchases": self.purchases.sum(axis=1).astype(np.float64),
        }


def simulate(f: Funnel, d: Draws) -> Outcome:
    """One visit's clicks, carts and purchases from its funnel and its uniforms."""
    clicks = d.click < f.click
    carts = clicks & (d.cart < f.cart)
    purchases = carts & (d.checkout < f.checkout)[:, None] & (d.buy < f.buy)
    return Outcome(clicks, carts, purchases)


def _keys(user: I64, item: I64, n_items: int) -> I64:
    return np.asarray(user.astype(np.int64) * n_items + item, dtype=np.int64)


def _member(sorted_keys: I64, keys: I64) -> B:
    if sorted_keys.shape[0] == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.shape[0] - 1)
    return np.asarray(sorted_keys[pos] == keys)


@dataclass(frozen=True)
class Shoppers:
    """The ground truth as arrays: users by position in ``user_ids`` (sorted), products by the
    catalogue's dense index."""

    user_ids: I64
    activity: F64
    buyer: F64
    tier: I64
    tastes: I64  # (users, 3) leaf (l3) codes
    taste_w: F64  # (users, 3)
    item_leaf: I64
    leaf_share: F64  # (tiers, items): a product's share of its leaf's views for each price tier
    explore_leaf: F64  # (leaves,): a session outside the tastes picks this leaf
    conversion: F64
    durable: B
    complement_keys: I64  # sorted user x product keys: a complement of a recent cart
    bought_durable_keys: I64  # sorted user x product keys: a durable the user bought
    model: ClickModel = ClickModel()

    @property
    def n_items(self) -> int:
        return int(self.item_leaf.shape[0])

    def positions(self, user_ids: I64) -> I64:
        """Positions of ``user_ids``; an id outside the ground truth is an error."""
        pos = np.searchsorted(self.user_ids, user_ids)
        pos = np.minimum(pos, self.user_ids.shape[0] - 1)
        bad = self.user_ids[pos] != user_ids
        if bad.any():
            raise UserInputError(f"user {int(user_ids[bad][0])} is not in the ground truth")
        return np.asarray(pos, dtype=np.int64)

    def view_share(self, users: I64, items: I64) -> F64:
        """The generator's chance that one product view of each user (positions, shape (n,)) is
        each product of ``items`` (dense, shape (n, k); -1 is an empty slot, share 0)."""
        it = np.maximum(items, 0)
        leaf = self.item_leaf[it]
        taste = (self.tastes[users][:, None, :] == leaf[:, :, None]) * self.taste_w[users][:, None, :]
        leaf_p = (1.0 - gen.EXPLORE) * taste.sum(axis=2) + gen.EXPLORE * self.explore_leaf[leaf]
        share = leaf_p * self.leaf_share[self.tier[users][:, None], it]
        return np.asarray(np.where(items >= 0, share, 0.0))

    def attractiveness(self, users: I64, items: I64) -> F64:
        p = self.view_share(users, items)
        a = 1.0 - (1.0 - p) ** self.model.views_per_session
        complement = _member(self.complement_keys, _keys(users[:, None], items, self.n_items))
        a = np.where(complement & (items >= 0), 1.0 - (1.0 - a) * (1.0 - gen.COMPLEMENT_VIEW), a)
        return np.asarray(a)

    def funnel(self, users: I64, lists: I64) -> Funnel:
        """The probabilities of every step for visits by ``users`` (positions) shown ``lists``
        (dense products, (n, k), -1 for an empty slot)."""
        empty = lists < 0
        it = np.maximum(lists, 0)
        click = self.model.examination(lists.shape[1])[None, :] * self.attractiveness(users, lists)
        buyer = self.buyer[users]
        cart = np.minimum(gen.CART_RATE * buyer[:, None] * self.conversion[it], 0.9)
        owned = self.durable[it] & _member(self.bought_durable_keys, _keys(users[:, None], it, self.n_items))
        buy = np.where(owned, 0.0, gen.CART_ITEM_PURCHASED)
        checkout = np.minimum(gen.CHECKOUT * np.sqrt(buyer), 0.95)
        return Funnel(
            np.where(empty, 0.0, click), np.where(empty, 0.0, cart), np.where(empty, 0.0, buy), checkout
        )

    def visits(self, n: int, rng: np.random.Generator) -> I64:
        """``n`` visits (user positions), drawn with replacement in proportion to activity: the
        traffic the shop would see."""
        cdf = np.cumsum(self.activity)
        return np.asarray(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), dtype=np.int64)


def has_ground_truth(data: Path) -> bool:
    root = Path(data) / GROUND_TRUTH_DIR
    return root.is_dir() and all(
        (root / f"{t}.parquet").exists() or (root / t).is_dir() for t in GROUND_TRUTH_TABLES
    )


def load_shoppers(
    data: Path, catalogue: Catalogue | None = None, model: ClickModel | None = None
) -> Shoppers:
    """The ground truth of the synthetic shop in ``data``, against its catalogue (or the one
    given, which must be the data's). A folder without ground truth, or one that does not match
    its products, is refused by name."""
    data = Path(data)
    if not has_ground_truth(data):
        raise DataNotFoundError(
            f"{data} has no ground truth ({data / GROUND_TRUTH_DIR}/ with {', '.join(GROUND_TRUTH_TABLES)}): "
            "only `recommndr data generate` writes one"
        )
    cat = catalogue or load_catalogue(data)
    root = data / GROUND_TRUTH_DIR
    ut = pl.from_arrow(read_table(root, "user_tastes"))
    ia = pl.from_arrow(read_table(root, "item_appeal"))
    comp = pl.from_arrow(read_table(root, "complements"))
    assert isinstance(ut, pl.DataFrame) and isinstance(ia, pl.DataFrame) and isinstance(comp, pl.DataFrame)
    ut, ia = ut.sort("user_id"), ia.sort("item_id")
    if not np.array_equal(ia["item_id"].to_numpy(), cat.item_ids):
        raise UserInputError(
            f"{root}: item_appeal does not list the products of {data} (another shop's truth?)"
        )

    leaf_code = {name: i for i, name in enumerate(cat.l3_names)}
    tastes = np.empty((ut.height, 3), dtype=np.int64)
    for k in range(3):
        names = ut[f"taste_{k + 1}"].to_list()
        missing = [n for n in set(names) if n not in leaf_code]
        if missing:
            raise UserInputError(f"{root}: taste category {missing[0]!r} is not a category of {data}")
        tastes[:, k] = np.array([leaf_code[n] for n in names], dtype=np.int64)
    taste_w = np.column_stack([ut[f"taste_{k + 1}_weight"].to_numpy() for k in range(3)]).astype(np.float64)
    tier_of = {t: i for i, t in enumerate(gen.PRICE_TIERS)}
    tiers = ut["price_tier"].to_list()
    if not set(tiers) <= tier_of.keys():
        raise UserInputError(f"{root}: unknown price tier in {sorted(set(tiers) - tier_of.keys())}")
    tier = np.array([tier_of[t] for t in tiers], dtype=np.int64)

    leaf = cat.l3.astype(np.int64)
    n_leaves = len(cat.l3_names)
    appeal = ia["appeal"].to_numpy().astype(np.float64)
    log_p = np.log(cat.price.astype(np.float64))
    counts = np.maximum(np.bincount(leaf, minlength=n_leaves), 1)
    mean = np.bincount(leaf, log_p, n_leaves) / counts
    sd = np.sqrt(np.bincount(leaf, (log_p - mean[leaf]) ** 2, n_leaves) / counts) + 1e-6
    price_z = (log_p - mean[leaf]) / sd[leaf]
    weight = appeal[None, :] * np.exp(np.array(gen.PRICE_TIER_SLOPE)[:, None] * price_z[None, :])
    leaf_total = np.stack([np.bincount(leaf, w, n_leaves) for w in weight])
    leaf_share = weight / np.maximum(leaf_total[:, leaf], 1e-300)
    explore_leaf = np.bincount(leaf, appeal, n_leaves).astype(np.float64)
    explore_leaf = explore_leaf / explore_leaf.sum()

    cycle = {row[0]: row[3] for row in L1_TABLE}
    unknown = [n for n in cat.l1_names if n not in cycle]
    if unknown:
        raise UserInputError(f"{data}: category {unknown[0]!r} is not one the generator makes")
    durable = np.array([cycle[n] == 0 for n in cat.l1_names], dtype=bool)[cat.l1]

    user_ids = ut["user_id"].to_numpy().astype(np.int64)
    complement = np.full(cat.n_items, -1, dtype=np.int64)
    src, dst = cat.index_of(comp["item_id"].to_numpy()), cat.index_of(comp["complement_item_id"].to_numpy())
    ok = (src >= 0) & (dst >= 0)
    complement[src[ok]] = dst[ok]
    model = model or ClickModel()
    shoppers = Shoppers(
        user_ids=user_ids,
        activity=ut["activity"].to_numpy().astype(np.float64),
        buyer=ut["buyer"].to_numpy().astype(np.float64),
        tier=tier,
        tastes=tastes,
        taste_w=taste_w,
        item_leaf=leaf,
        leaf_share=leaf_share,
        explore_leaf=explore_leaf,
        conversion=ia["conversion"].to_numpy().astype(np.float64),
        durable=durable,
        complement_keys=np.zeros(0, np.int64),
        bought_durable_keys=np.zeros(0, np.int64),
        model=model,
    )
    return _with_history(shoppers, data, cat, complement)


def _with_history(s: Shoppers, data: Path, cat: Catalogue, complement: I64) -> Shoppers:
    """The shoppers' state from the data: durables they bought, complements of recent carts."""
    ev = load_events(data).filter(pl.col("etype") >= CART)
    if ev.height == 0:
        return s
    end = int(ev["ts_us"].to_numpy().max()) + 1
    item = cat.index_of(ev["item_id"].to_numpy())
    user = np.searchsorted(s.user_ids, ev["user_id"].to_numpy())
    user = np.minimum(user, s.user_ids.shape[0] - 1)
    known = (item >= 0) & (s.user_ids[user] == ev["user_id"].to_numpy())
    etype, ts = ev["etype"].to_numpy(), ev["ts_us"].to_numpy()
    bought = known & (etype == PURCHASE)
    bought &= s.durable[np.maximum(item, 0)]
    recent = known & (etype == CART) & (ts >= end - COMPLEMENT_DAYS * US_PER_DAY)
    recent &= complement[np.maximum(item, 0)] >= 0
    comp_keys = np.unique(_keys(user[recent], complement[item[recent]], s.n_items))
    bought_keys = np.unique(_keys(user[bought], item[bought], s.n_items))
    return replace(s, complement_keys=comp_keys, bought_durable_keys=bought_keys)
