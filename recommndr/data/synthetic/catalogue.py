"""The synthetic catalogue: a three-level category tree, brands, log-normal prices per category,
launch dates spread over the period, base appeal with a long tail, launch boosts and trends, and
planted complementary products."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from recommndr.data.synthetic import params as cfg
from recommndr.data.synthetic.seasonality import category_season

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

# name, median price, log-sd of price, consumable repeat cycle in days (0: durable),
# gift-season demand, summer demand, share of demand
L1_TABLE: tuple[tuple[str, float, float, float, float, float, float], ...] = (
    ("Electronics", 140.0, 0.95, 0, 1.7, 1.0, 0.12),
    ("Home & Kitchen", 42.0, 0.85, 0, 1.4, 1.0, 0.11),
    ("Grocery & Gourmet", 7.5, 0.55, 21, 1.15, 1.0, 0.10),
    ("Beauty & Personal Care", 16.0, 0.6, 45, 1.35, 1.0, 0.09),
    ("Clothing & Shoes", 34.0, 0.6, 0, 1.3, 1.1, 0.12),
    ("Sports & Outdoors", 38.0, 0.9, 0, 1.15, 1.5, 0.07),
    ("Toys & Games", 24.0, 0.7, 0, 2.4, 1.0, 0.07),
    ("Health & Household", 12.0, 0.6, 35, 1.05, 1.0, 0.08),
    ("Books & Media", 14.0, 0.5, 0, 1.5, 1.0, 0.06),
    ("Garden & DIY", 36.0, 0.95, 0, 1.05, 1.6, 0.06),
    ("Pet Supplies", 19.0, 0.7, 30, 1.1, 1.0, 0.06),
    ("Baby", 22.0, 0.7, 25, 1.2, 1.0, 0.06),
)
L2_NAMES: tuple[tuple[str, ...], ...] = (
    (
        "Phones & Accessories",
        "Computers & Tablets",
        "Audio & Headphones",
        "TV & Home Cinema",
        "Cameras & Photo",
        "Smart Home",
    ),
    ("Coffee & Tea Makers", "Cookware", "Small Appliances", "Bedding", "Home Decor", "Storage"),
    ("Coffee & Tea", "Snacks", "Beverages", "Breakfast & Cereal", "Pantry Staples", "Sweets"),
    ("Skin Care", "Hair Care", "Shaving & Grooming", "Makeup", "Fragrance", "Bath & Body"),
    (
        "Women's Clothing",
        "Shoes",
        "Men's Clothing",
        "Bags & Luggage",
        "Jewellery & Watches",
        "Kids' Clothing",
    ),
    ("Cycling", "Fitness Equipment", "Camping & Hiking", "Running", "Team Sports", "Water Sports"),
    (
        "Building Sets",
        "Board Games & Puzzles",
        "Dolls & Figures",
        "Outdoor Play",
        "Arts & Crafts",
        "Toddler Toys",
    ),
    (
        "Cleaning Supplies",
        "Laundry",
        "Vitamins & Supplements",
        "Oral Care",
        "Medicine Cabinet",
        "Paper & Plastic",
    ),
    ("Fiction", "Non-fiction", "Children's Books", "Music", "Movies & TV", "Video Games"),
    ("Power Tools", "Hand Tools", "Gardening", "Outdoor Furniture", "Lighting", "Plumbing & Electrical"),
    ("Dog Food", "Cat Food", "Pet Toys", "Pet Care", "Aquarium", "Small Animals"),
    ("Nappies & Wipes", "Baby Food", "Feeding", "Strollers & Car Seats", "Nursery", "Baby Care"),
)
L3_PREFIXES = ("Everyday", "Premium", "Eco", "Compact", "Family", "Pro")
# Planted complements between second-level categories: (l1, l2) -> (l1, l2). A product in the
# source category gets one product of the target category that is bought with it.
COMPLEMENTS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    ((0, 0), (0, 2)),  # phones -> headphones
    ((0, 1), (0, 0)),  # computers -> phone accessories (chargers, cables)
    ((0, 3), (0, 2)),  # TVs -> audio
    ((0, 4), (0, 1)),  # cameras -> computers (storage)
    ((1, 0), (2, 0)),  # coffee makers -> coffee
    ((1, 1), (1, 2)),  # cookware -> small appliances
    ((1, 3), (1, 4)),  # bedding -> decor
    ((2, 3), (2, 2)),  # cereal -> beverages
    ((2, 1), (2, 2)),  # snacks -> beverages
    ((3, 2), (3, 0)),  # shaving -> skin care
    ((3, 1), (3, 5)),  # hair care -> bath & body
    ((4, 0), (4, 4)),  # women's clothing -> jewellery
    ((4, 2), (4, 1)),  # men's clothing -> shoes
    ((5, 0), (5, 3)),  # cycling -> running
    ((5, 2), (5, 5)),  # camping -> water sports
    ((6, 0), (6, 1)),  # building sets -> board games
    ((7, 1), (7, 0)),  # laundry -> cleaning
    ((8, 3), (8, 4)),  # music -> movies
    ((9, 0), (9, 1)),  # power tools -> hand tools
    ((10, 0), (10, 2)),  # dog food -> pet toys
    ((11, 0), (11, 5)),  # nappies -> baby care
)
BRAND_HEADS = (
    "Nor",
    "Vel",
    "Ka",
    "Lu",
    "Zen",
    "Ora",
    "Bri",
    "Tor",
    "Mi",
    "Sol",
    "Ari",
    "Qui",
    "Fen",
    "Dax",
    "Ely",
    "Hal",
    "Ivo",
    "Jun",
    "Mar",
    "Pax",
    "Rho",
    "Sev",
    "Tam",
    "Ul",
    "Var",
    "Wen",
    "Yor",
    "Zar",
)
BRAND_TAILS = (
    "vik",
    "ra",
    "mo",
    "tek",
    "lia",
    "nova",
    "ton",
    "ix",
    "era",
    "lux",
    "sen",
    "dor",
    "ana",
    "bel",
    "co",
    "dyn",
    "ex",
    "gard",
)


@dataclass
class Catalogue:
    """Products (ordered by launch; ``item_id = index + 1``) and what drives their demand."""

    table: pa.Table
    leaf: I64  # leaf category index per product
    leaf_l1: I64  # top-level category per leaf
    leaf_names: list[tuple[str, str, str]]
    leaf_appeal: F64  # relative demand for each leaf
    launch_day: I64  # day index of launch relative to the period start (negative: before)
    price: F64
    price_z: F64  # standardised log price within the leaf
    weekly_appeal: F64  # (N_WEEKS, n_items): base appeal x lifecycle x trend, 0 before launch
    complement: I64  # index of the planted complement product, -1 when none
    l1_season: F64  # (N_WEEKS, n_l1)
    repeat_cycle_days: F64  # per product; 0 for durables


def _leaves(scale: cfg.Scale) -> tuple[list[tuple[int, int, int]], list[tuple[str, str, str]]]:
    idx, names = [], []
    for a in range(scale.n_l1):
        for b in range(scale.n_l2):
            for c in range(scale.n_l3):
                l2 = L2_NAMES[a][b]
                idx.append((a, b, c))
                names.append((L1_TABLE[a][0], l2, f"{L3_PREFIXES[c]} {l2}"))
    return idx, names


def _brand_names(rng: np.random.Generator, n_l1: int, per_l1: int) -> list[list[str]]:
    combos = [h + t for h in BRAND_HEADS for t in BRAND_TAILS]
    if n_l1 * per_l1 > len(combos):
        raise ValueError(f"{n_l1 * per_l1} brands asked for, only {len(combos)} names")
    picked = rng.choice(len(combos), size=min(len(combos), n_l1 * per_l1), replace=False)
    names = [combos[i] for i in picked]
    return [names[a * per_l1 : (a + 1) * per_l1] for a in range(n_l1)]


def build_catalogue(scale: cfg.Scale, rng: np.random.Generator) -> Catalogue:
    leaf_idx, leaf_names = _leaves(scale)
    n_leaves, n = len(leaf_idx), scale.n_items
    leaf_l1 = np.array([a for a, _, _ in leaf_idx], dtype=np.int64)
    l1_share = np.array([row[6] for row in L1_TABLE[: scale.n_l1]])
    leaf_appeal = rng.lognormal(0.0, cfg.LEAF_POPULARITY_SIGMA, n_leaves) * l1_share[leaf_l1]
    leaf_appeal /= leaf_appeal.sum()

    # Products per leaf: proportional to a noisy version of the leaf's demand, at least 3.
    size_w = leaf_appeal * rng.lognormal(0.0, 0.3, n_leaves)
    counts = 3 + rng.multinomial(n - 3 * n_leaves, size_w / size_w.sum())
    leaf = np.repeat(np.arange(n_leaves), counts)
    first_in_leaf = np.concatenate([[0], np.cumsum(counts)[:-1]])

    # Launch days: most before the period, the rest arriving during it; the first product of
    # every leaf is old so that no category is empty at the start.
    pre = rng.random(n) < cfg.SHARE_PRE_PERIOD_ITEMS
    launch = np.where(
        pre,
        -rng.integers(1, cfg.CATALOGUE_HISTORY_DAYS, n),
        rng.integers(0, cfg.N_DAYS - 7, n),
    )
    launch[first_in_leaf] = -rng.integers(30, cfg.CATALOGUE_HISTORY_DAYS, n_leaves)

    # Brands: a Zipf-like share within each top-level category, and a price premium per brand.
    brands = _brand_names(rng, scale.n_l1, scale.n_brands)
    brand_rank_w = 1.0 / np.arange(1, scale.n_brands + 1) ** 0.9
    cdf = np.cumsum(brand_rank_w / brand_rank_w.sum())
    brand_of = np.minimum(np.searchsorted(cdf, rng.random(n)), scale.n_brands - 1)
    brand_premium = rng.lognormal(0.0, 0.25, (scale.n_l1, scale.n_brands))
    l1_of = leaf_l1[leaf]

    # Prices: log-normal per leaf around the top-level category's median, times the brand premium.
    med = np.array([row[1] for row in L1_TABLE[: scale.n_l1]])
    sig = np.array([row[2] for row in L1_TABLE[: scale.n_l1]])
    leaf_mult = rng.lognormal(0.0, 0.35, n_leaves)
    log_p = (
        np.log(med[l1_of] * leaf_mult[leaf] * brand_premium[l1_of, brand_of])
        + rng.standard_normal(n) * sig[l1_of]
    )
    raw = np.exp(log_p)
    price = np.where(raw >= 5.0, np.floor(raw) + 0.99, np.maximum(np.round(raw, 2), 0.49))
    leaf_mean = np.bincount(leaf, log_p, n_leaves) / counts
    leaf_sd = np.sqrt(np.bincount(leaf, (log_p - leaf_mean[leaf]) ** 2, n_leaves) / counts) + 1e-6
    price_z = (log_p - leaf_mean[leaf]) / leaf_sd[leaf]

    # Appeal: a long-tailed base, better-known brands a little more appealing.
    base = rng.lognormal(0.0, cfg.ITEM_POPULARITY_SIGMA, n) * (brand_rank_w[brand_of] ** 0.35)
    weekly = _weekly_appeal(base, launch, rng)

    # Sort products by launch so that item ids follow the order they were added to the shop.
    order = np.argsort(launch, kind="stable")
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    leaf, launch, price, price_z, brand_of, l1_of = (
        leaf[order],
        launch[order],
        price[order],
        price_z[order],
        brand_of[order],
        l1_of[order],
    )
    base, weekly = base[order], weekly[:, order]

    complement = _plant_complements(scale, leaf, base, rng)
    cycle = np.array([row[3] for row in L1_TABLE[: scale.n_l1]], dtype=np.float64)[l1_of]
    cycle = cycle * rng.lognormal(0.0, 0.2, n) * (cycle > 0)
    l1_season = category_season(
        np.array([row[4] for row in L1_TABLE[: scale.n_l1]]),
        np.array([row[5] for row in L1_TABLE[: scale.n_l1]]),
    )
    table = _products_table(leaf, leaf_names, brands, brand_of, l1_of, price, launch, rng)
    return Catalogue(
        table=table,
        leaf=leaf,
        leaf_l1=leaf_l1,
        leaf_names=leaf_names,
        leaf_appeal=leaf_appeal,
        launch_day=launch,
        price=price,
        price_z=price_z,
        weekly_appeal=weekly,
        complement=complement,
        l1_season=l1_season,
        repeat_cycle_days=cycle,
    )


def _weekly_appeal(base: F64, launch: I64, rng: np.random.Generator) -> F64:
    """Appeal of each product in each week: zero until the week after launch, a launch boost that
    decays, slow ageing, and for a few products a temporary trend bump (trending products)."""
    n = int(base.shape[0])
    week_start = (np.arange(cfg.N_WEEKS) * 7.0)[:, None]
    age = week_start + 3.5 - launch[None, :]
    alive = week_start > launch[None, :]  # only from the first whole week after launch
    life = (1.0 + cfg.LAUNCH_BOOST * np.exp(-np.clip(age, 0, None) / cfg.LAUNCH_DECAY_DAYS)) * np.exp2(
        -np.clip(age, 0, None) / cfg.AGE_HALF_LIFE_DAYS
    )
    trending = rng.random(n) < cfg.SHARE_TRENDING
    centre: F64 = rng.uniform(0.0, float(cfg.N_DAYS), size=n)
    width = rng.uniform(cfg.TREND_WIDTH_DAYS[0], cfg.TREND_WIDTH_DAYS[1], n)
    height: F64 = rng.lognormal(cfg.TREND_PEAK_MEAN, cfg.TREND_PEAK_SIGMA, size=n) * trending
    bump = 1.0 + height[None, :] * np.exp(-0.5 * ((week_start + 3.5 - centre[None, :]) / width) ** 2)
    return np.asarray(np.where(alive, base[None, :] * life * bump, 0.0), dtype=np.float64)


def _plant_complements(scale: cfg.Scale, leaf: I64, base: F64, rng: np.random.Generator) -> I64:
    """For products in a complemented category, one product of the complementary leaf (same
    third-level position), drawn by appeal; -1 elsewhere."""
    n = leaf.shape[0]
    complement = np.full(n, -1, dtype=np.int64)
    per_l2 = scale.n_l3
    per_l1 = scale.n_l2 * per_l2
    for (a, b), (c, d) in COMPLEMENTS:
        if max(a, c) >= scale.n_l1 or max(b, d) >= scale.n_l2:
            continue
        for k in range(scale.n_l3):
            src_leaf, dst_leaf = a * per_l1 + b * per_l2 + k, c * per_l1 + d * per_l2 + k
            src = np.flatnonzero(leaf == src_leaf)
            dst = np.flatnonzero(leaf == dst_leaf)
            if src.size == 0 or dst.size == 0:
                continue
            has = src[rng.random(src.size) < cfg.SHARE_ITEMS_WITH_COMPLEMENT]
            w = base[dst] / base[dst].sum()
            complement[has] = dst[rng.choice(dst.size, size=has.size, p=w)]
    return complement


def _products_table(
    leaf: I64,
    leaf_names: list[tuple[str, str, str]],
    brands: list[list[str]],
    brand_of: I64,
    l1_of: I64,
    price: F64,
    launch: I64,
    rng: np.random.Generator,
) -> pa.Table:
    n = leaf.shape[0]
    flat_brands = [b for per in brands for b in per]
    brand_idx = l1_of * len(brands[0]) + brand_of
    l1 = pa.array([t[0] for t in leaf_names]).take(pa.array(leaf))
    l2 = pa.array([t[1] for t in leaf_names]).take(pa.array(leaf))
    l3 = pa.array([t[2] for t in leaf_names]).take(pa.array(leaf))
    brand = pa.array(flat_brands).take(pa.array(brand_idx))
    model = pc.cast(pa.array(rng.integers(100, 9999, n)), pa.string())
    title = pc.binary_join_element_wise(brand, l3, pa.scalar("model"), model, " ")
    created = (
        cfg.PERIOD_START
        + launch.astype("timedelta64[D]").astype("timedelta64[us]")
        + rng.integers(8 * 3600, 20 * 3600, n).astype("timedelta64[s]").astype("timedelta64[us]")
    )
    return pa.table(
        {
            "item_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "title": title,
            "category_l1": l1,
            "category_l2": l2,
            "category_l3": l3,
            "brand": brand,
            "price": pa.array(price),
            "created_at": pa.array(created, type=pa.timestamp("us", tz="UTC")),
        }
    )
