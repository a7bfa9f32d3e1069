"""The ranking features: the ONE definition used by training, evaluation and serving.

``build_feature_tables`` summarises the events before a cut-off into compact arrays (per product,
per user, per user x category, per user x product); ``compute_features`` turns (user, product,
candidate signals) pairs into the feature matrix with vectorised gathers and binary searches, so
the same code scores 2 million training pairs or one request's 300 candidates.

Saved (``FeatureTables.save``), the large tables take the narrowest type that holds them exactly,
checked when written: the user x product counts the narrowest unsigned integer (uint8 at full
scale), the user x category keys the narrowest signed one (int32), the user x product keys 4
bytes each (``SplitKeys``: they pass int32 at full scale), and instead of each pair's
last event time (int64 microseconds) its ``user_item_days_since_log`` value, the float32 that
``compute_features`` would compute from it. ``compute_features`` gives the same bits from the
fitted tables and from the saved ones (it casts what it gathers before computing with it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from recommndr.arrays import load_arrays, narrowest_int, save_arrays
from recommndr.data.interactions import US_PER_DAY, Interactions

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]

FEATURES: tuple[str, ...] = (
    "als_score",
    "als_rank_log",
    "copurchase_score",
    "popularity_score",
    "from_als",
    "from_copurchase",
    "from_popularity",
    "item_events_1d_log",
    "item_events_7d_log",
    "item_events_30d_log",
    "item_trend",
    "item_conversion",
    "item_log_price",
    "item_age_days_log",
    "item_popularity_now_log",
    "item_repeatable",
    "user_events_log",
    "user_purchases_log",
    "user_days_since_last_log",
    "price_vs_user",
    "user_affinity_l1",
    "user_affinity_l2",
    "user_affinity_l3",
    "user_item_views_log",
    "user_item_carts_log",
    "user_item_purchases_log",
    "user_item_days_since_log",
)
NEVER_DAYS = 1000.0


class SplitKeys:
    """Sorted non-negative int64 keys in 4 bytes a key: their low 32 bits (``low``, uint32) and,
    for each value of the high bits, where its keys start (``starts``; keys with high bits h are
    ``low[starts[h]:starts[h + 1]]``). The user x product keys (user * n_items + item) reach 6.4e10
    at full scale, past int32, with 15 values of the high bits: half the memory of int64, and a
    lookup is a binary search in the one or two runs a request's keys fall in."""

    def __init__(self, low: npt.NDArray[np.uint32], starts: I64) -> None:
        if (
            low.dtype != np.uint32
            or starts.ndim != 1
            or starts.shape[0] < 1
            or int(starts[-1]) != low.shape[0]
        ):
            raise ValueError(f"split keys do not match: {low.shape} {low.dtype}, starts {starts.shape}")
        self.low = low
        self.starts = starts

    @classmethod
    def split(cls, keys: I64) -> SplitKeys:
        if keys.size and (int(keys[0]) < 0 or bool(np.any(np.diff(keys) <= 0))):
            raise ValueError("split keys must be distinct, sorted and non-negative")
        high = keys >> 32
        n_high = int(high[-1]) + 1 if keys.size else 0
        starts = np.searchsorted(high, np.arange(n_high + 1), side="left").astype(np.int64)
        return cls((keys & 0xFFFFFFFF).astype(np.uint32), starts)

    @property
    def shape(self) -> tuple[int]:
        return (int(self.low.shape[0]),)

    def __len__(self) -> int:
        return int(self.low.shape[0])

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> I64:
        """The int64 keys (a copy)."""
        out: I64 = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, where: Any) -> Any:
        """The int64 keys at ``where`` (a position, a slice or an index array), as an array would."""
        positions = np.arange(self.low.shape[0], dtype=np.int64)[where]
        high = np.searchsorted(self.starts, positions, side="right") - 1
        return (high << 32) | self.low[where].astype(np.int64)

    def searchsorted(
        self, v: npt.ArrayLike, side: Literal["left", "right"] = "left", sorter: None = None
    ) -> Any:
        """Where ``v`` would go in the int64 keys (what ``np.searchsorted(keys, v)`` calls)."""
        q = np.asarray(v, dtype=np.int64)
        flat = q.reshape(-1)
        out = np.zeros(flat.shape[0], dtype=np.int64)
        high = flat >> 32
        n_high = self.starts.shape[0] - 1
        out[high >= n_high] = self.low.shape[0]
        inside = (high >= 0) & (high < n_high)
        for h in np.unique(high[inside]).tolist():
            sel = np.flatnonzero(inside & (high == h))
            s, e = int(self.starts[h]), int(self.starts[h + 1])
            low = (flat[sel] & 0xFFFFFFFF).astype(np.uint32)
            out[sel] = s + np.searchsorted(self.low[s:e], low, side=side)
        return out.reshape(q.shape) if q.ndim else int(out[0])

    def find(self, q: I64) -> tuple[I64, npt.NDArray[np.bool_]]:
        """For each of ``q``: a position in the keys (that of the key equal to it, if any) and
        whether it is there."""
        pos = np.zeros(q.shape[0], dtype=np.int64)
        hit = np.zeros(q.shape[0], dtype=bool)
        if q.shape[0] == 0:
            return pos, hit
        high = q >> 32
        low = (q & 0xFFFFFFFF).astype(np.uint32)
        first, last = int(high.min()), int(high.max())
        if first == last:  # a request: one user's keys, one run of high bits
            if first < 0 or first >= self.starts.shape[0] - 1:
                return pos, hit
            s, e = int(self.starts[first]), int(self.starts[first + 1])
            if e == s:
                return pos, hit
            p = s + np.minimum(np.searchsorted(self.low[s:e], low), e - s - 1)
            return p.astype(np.int64), self.low[p] == low
        valid = (q >= 0) & (high < self.starts.shape[0] - 1)
        for h in np.unique(high[valid]).tolist():
            sel = np.flatnonzero(valid & (high == h))
            s, e = int(self.starts[h]), int(self.starts[h + 1])
            if e == s:
                continue
            p = np.minimum(np.searchsorted(self.low[s:e], low[sel]), e - s - 1)
            pos[sel] = s + p
            hit[sel] = self.low[s + p] == low[sel]
        return pos, hit


Keys = I64 | SplitKeys


@dataclass
class FeatureTables:
    cutoff_us: int
    n_items: int
    n_categories: npt.NDArray[np.int64]  # categories at levels 1, 2, 3 (the key base of uc1..uc3)
    item_l1: npt.NDArray[np.int32]
    item_l2: npt.NDArray[np.int32]
    item_l3: npt.NDArray[np.int32]
    item_events_1d: F32
    item_events_7d: F32
    item_events_30d: F32
    item_conversion: F32
    item_log_price: F32
    item_age_days: F32
    item_popularity_now: F32
    item_repeatable: F32
    user_events: F32
    user_purchases: F32
    user_days_since_last: F32
    user_mean_log_price: F32
    user_has_price: npt.NDArray[np.bool_]
    uc1_keys: I64
    uc1_share: F32
    uc2_keys: I64
    uc2_share: F32
    uc3_keys: I64
    uc3_share: F32
    ui_keys: Keys  # sorted user * n_items + item; SplitKeys once saved
    ui_views: F32
    ui_carts: F32
    ui_purchases: F32
    ui_last_us: I64 | None  # None in saved tables, which keep ``ui_days_since_log`` instead
    ui_days_since: F32 | None = None  # ``user_item_days_since_log`` per pair, as saved

    @cached_property
    def ui_days_since_log(self) -> F32:
        """The ``user_item_days_since_log`` feature of every user x product pair (float32, as
        ``compute_features`` writes it)."""
        if self.ui_days_since is not None:
            return self.ui_days_since
        if self.ui_last_us is None:
            raise ValueError("feature tables without ui_last_us nor ui_days_since")
        last = self.ui_last_us.astype(np.float64)
        days = np.where(last >= 0, (self.cutoff_us - last) / US_PER_DAY, NEVER_DAYS)
        out: F32 = np.log1p(days).astype(np.float32)
        return out

    def user_items(
        self, user: int, *, viewed: bool = False, carted: bool = False, purchased: bool = False
    ) -> I64:
        """Dense products ``user`` had before the cut-off in any of the states asked: ``viewed``
        any event (a product carted or bought was seen too), ``carted`` an add to cart,
        ``purchased`` a purchase. A binary search into the user x product table, then the user's
        own rows only (what a request excludes)."""
        if user < 0 or not (viewed or carted or purchased):
            return np.zeros(0, np.int64)
        lo, hi = user_range(self.ui_keys, user, self.n_items)
        items: I64 = self.ui_keys[lo:hi] - user * self.n_items
        if viewed:
            return items
        keep = np.zeros(hi - lo, dtype=bool)
        if carted:
            keep |= self.ui_carts[lo:hi] > 0
        if purchased:
            keep |= self.ui_purchases[lo:hi] > 0
        return items[keep]

    @cached_property
    def item_trend(self) -> F32:
        """Last week's daily events against the month's (the ``item_trend`` feature; /trending)."""
        trend: F32 = ((self.item_events_7d / 7.0 + 0.1) / (self.item_events_30d / 30.0 + 0.1)).astype(
            np.float32
        )
        return trend

    @cached_property
    def item_block(self) -> F32:
        """The item-only feature columns (``ITEM_COLS``) for every product, computed once."""
        cols = [
            np.log1p(self.item_events_1d),
            np.log1p(self.item_events_7d),
            np.log1p(self.item_events_30d),
            self.item_trend,
            self.item_conversion,
            self.item_log_price,
            np.log1p(self.item_age_days),
            np.log1p(self.item_popularity_now),
            self.item_repeatable,
        ]
        block = np.empty((self.n_items, len(cols)), dtype=np.float32)
        for j, c in enumerate(cols):
            block[:, j] = c
        return block

    def save(self, path: Path) -> None:
        """The tables to ``path`` (.npz, mapped in place when loaded), the large ones narrowed
        (see the module's docstring); fails (``ArtifactError``) on a value the type cannot hold."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("ui_last_us", "ui_days_since"):
                continue
            value = getattr(self, f.name)
            value = value if isinstance(value, SplitKeys) else np.asarray(value)
            if f.name in UI_COUNTS:
                value = narrowest_int(value, f"{path}: {f.name}", signed=False)
            elif f.name in UC_KEYS:
                value = narrowest_int(value, f"{path}: {f.name}")
            elif f.name == "ui_keys":
                keys = self.ui_keys if isinstance(self.ui_keys, SplitKeys) else SplitKeys.split(self.ui_keys)
                out["ui_keys_low"], out["ui_keys_starts"] = keys.low, keys.starts
                continue
            out[f.name] = value
        out["ui_days_since_log"] = self.ui_days_since_log
        save_arrays(path, out)

    @classmethod
    def load(cls, path: Path) -> FeatureTables:
        """What :meth:`save` wrote, or what versions before it wrote (``ui_last_us``, float32
        counts, int64 keys), arrays mapped from the file where it allows (the narrow types stay
        narrow: ``compute_features`` reads either)."""
        z = load_arrays(path)
        skip = ("ui_last_us", "ui_days_since", "ui_keys")
        kw: dict[str, Any] = {f.name: z[f.name] for f in fields(cls) if f.name not in skip}
        kw["ui_keys"] = (
            SplitKeys(z["ui_keys_low"], z["ui_keys_starts"]) if "ui_keys_low" in z else z["ui_keys"]
        )
        kw["ui_last_us"] = z.get("ui_last_us")
        kw["ui_days_since"] = z.get("ui_days_since_log")
        if kw["ui_last_us"] is None and kw["ui_days_since"] is None:
            raise KeyError("ui_days_since_log")
        kw["cutoff_us"] = int(kw["cutoff_us"])
        kw["n_categories"] = np.asarray(kw["n_categories"], dtype=np.int64)
        kw["n_items"] = int(kw["n_items"])
        return cls(**kw)


UI_COUNTS = ("ui_views", "ui_carts", "ui_purchases")
UC_KEYS = ("uc1_keys", "uc2_keys", "uc3_keys")


def user_range(keys: I64 | SplitKeys, user: int, n_items: int) -> tuple[int, int]:
    """Where ``user``'s rows are in ``keys``, sorted keys ``user * n_items + item``."""
    lo, hi = np.searchsorted(keys, [user * n_items, (user + 1) * n_items])
    return int(lo), int(hi)


def _share_table(users: I64, cats: npt.NDArray[np.int32], n_cats: int) -> tuple[I64, F32]:
    key = users * n_cats + cats
    uniq, counts = np.unique(key, return_counts=True)
    totals = np.bincount(uniq // n_cats, weights=counts)
    return uniq, (counts / totals[uniq // n_cats]).astype(np.float32)


def _lookup(
    keys: npt.NDArray[np.integer[Any]], values: npt.NDArray[np.generic], q: I64, default: float
) -> npt.NDArray[np.float64]:
    pos, hit = _find(keys, q)
    if pos is None:
        return np.full(q.shape[0], default)
    return np.where(hit, values[pos].astype(np.float64), default)


def build_feature_tables(
    inter: Interactions, popularity_now: F32, repeatable_l3: npt.NDArray[np.bool_]
) -> FeatureTables:
    cat = inter.catalogue
    n_items, n_users = cat.n_items, inter.n_users
    age = inter.age_days()
    items = inter.item.astype(np.int64)
    users = inter.user.astype(np.int64)

    def item_count(mask: npt.NDArray[np.bool_]) -> F32:
        return np.bincount(items[mask], minlength=n_items).astype(np.float32)

    views = item_count(inter.etype == 0)
    buys = item_count(inter.etype == 2)
    log_price = np.log(np.maximum(cat.price, 0.01)).astype(np.float32)
    ev_price = log_price[items]
    n_ev = np.bincount(users, minlength=n_users).astype(np.float32)
    last = np.zeros(n_users, dtype=np.int64)
    if users.size:
        np.maximum.at(last, users, inter.ts)
    price_w = np.where(inter.etype >= 1, 3.0, 1.0)  # what users cart and buy says more about budget
    sum_p = np.bincount(users, weights=ev_price * price_w, minlength=n_users)
    sum_w = np.bincount(users, weights=price_w, minlength=n_users)
    n_cats = np.array([len(cat.l1_names), len(cat.l2_names), len(cat.l3_names)], dtype=np.int64)
    uc1 = _share_table(users, cat.l1[items], int(n_cats[0]))
    uc2 = _share_table(users, cat.l2[items], int(n_cats[1]))
    uc3 = _share_table(users, cat.l3[items], int(n_cats[2]))
    # user x product: counts per event type and the last time (events are in time order, so the
    # last event of each run of a stable sort by key is the latest)
    ui = users * n_items + items
    order = np.argsort(ui, kind="stable")
    ui_sorted = ui[order]
    uniq, start = np.unique(ui_sorted, return_index=True)
    end = np.append(start[1:], ui_sorted.shape[0])
    seg = np.repeat(np.arange(uniq.shape[0]), end - start)
    et = inter.etype[order]
    ui_counts = [np.bincount(seg[et == k], minlength=uniq.shape[0]).astype(np.float32) for k in range(3)]
    ui_last = inter.ts[order][end - 1] if uniq.size else np.zeros(0, np.int64)
    return FeatureTables(
        cutoff_us=inter.cutoff_us,
        n_items=n_items,
        n_categories=n_cats,
        item_l1=cat.l1,
        item_l2=cat.l2,
        item_l3=cat.l3,
        item_events_1d=item_count(age <= 1),
        item_events_7d=item_count(age <= 7),
        item_events_30d=item_count(age <= 30),
        item_conversion=((buys + 0.05) / (views + 10.0)).astype(np.float32),
        item_log_price=log_price,
        item_age_days=np.maximum((inter.cutoff_us - cat.created_us) / US_PER_DAY, 0).astype(np.float32),
        item_popularity_now=popularity_now.astype(np.float32),
        item_repeatable=repeatable_l3[cat.l3].astype(np.float32),
        user_events=n_ev,
        user_purchases=np.bincount(users[inter.etype == 2], minlength=n_users).astype(np.float32),
        user_days_since_last=((inter.cutoff_us - last) / US_PER_DAY).astype(np.float32),
        user_mean_log_price=(sum_p / np.maximum(sum_w, 1e-9)).astype(np.float32),
        user_has_price=sum_w > 0,
        uc1_keys=uc1[0],
        uc1_share=uc1[1],
        uc2_keys=uc2[0],
        uc2_share=uc2[1],
        uc3_keys=uc3[0],
        uc3_share=uc3[1],
        ui_keys=uniq,
        ui_views=ui_counts[0],
        ui_carts=ui_counts[1],
        ui_purchases=ui_counts[2],
        ui_last_us=ui_last,
    )


def compute_features(
    t: FeatureTables,
    user: I64,
    item: I64,
    als_score: F32,
    als_rank: F32,
    cop_score: F32,
    pop_score: F32,
    sources: npt.NDArray[np.uint8],
) -> F32:
    """Feature matrix (n_pairs x len(FEATURES)), float32. ``user`` may be -1 (unknown user)."""
    n = item.shape[0]
    known = user >= 0
    u = np.where(known, user, 0)
    out = np.empty((n, len(FEATURES)), dtype=np.float32)
    head = [
        als_score,
        np.log1p(als_rank),
        cop_score,
        pop_score,
        (sources & 1) > 0,
        (sources & 2) > 0,
        (sources & 4) > 0,
    ]
    for j, c in enumerate(head):
        out[:, j] = c
    out[:, ITEM_COLS] = t.item_block[item]  # the item-only columns, precomputed once per table
    cols = [
        np.where(known, np.log1p(t.user_events[u]), 0.0),
        np.where(known, np.log1p(t.user_purchases[u]), 0.0),
        np.where(known, np.log1p(t.user_days_since_last[u]), np.log1p(NEVER_DAYS)),
        np.where(known & t.user_has_price[u], t.item_log_price[item] - t.user_mean_log_price[u], 0.0),
        _lookup(t.uc1_keys, t.uc1_share, np.where(known, u * t.n_categories[0] + t.item_l1[item], -1), 0.0),
        _lookup(t.uc2_keys, t.uc2_share, np.where(known, u * t.n_categories[1] + t.item_l2[item], -1), 0.0),
        _lookup(t.uc3_keys, t.uc3_share, np.where(known, u * t.n_categories[2] + t.item_l3[item], -1), 0.0),
    ]
    ui = np.where(known, u * t.n_items + item, -1)
    pos, hit = _find(t.ui_keys, ui)  # one search for the four user x item columns

    def ui_value(values: npt.NDArray[np.generic], default: float) -> npt.NDArray[np.float64]:
        # gathered first, then float64: the same values whether the table is float32 or a narrow
        # integer type (a ufunc on uint8 would compute in float16)
        if pos is None:
            return np.full(n, default)
        return np.where(hit, values[pos].astype(np.float64), default)

    cols += [
        np.log1p(ui_value(t.ui_views, 0.0)),
        np.log1p(ui_value(t.ui_carts, 0.0)),
        np.log1p(ui_value(t.ui_purchases, 0.0)),
        ui_value(t.ui_days_since_log, float(np.log1p(NEVER_DAYS))),
    ]
    for j, c in enumerate(cols, start=ITEM_COLS.stop):
        out[:, j] = c
    return out


ITEM_COLS = slice(FEATURES.index("item_events_1d_log"), FEATURES.index("item_repeatable") + 1)


def _find(keys: npt.NDArray[np.integer[Any]] | SplitKeys, q: I64) -> tuple[I64 | None, npt.NDArray[np.bool_]]:
    """Where each of ``q`` is in the sorted ``keys`` (any integer type) and whether it is there."""
    if keys.shape[0] == 0:
        return None, np.zeros(q.shape[0], dtype=bool)
    if isinstance(keys, SplitKeys):
        return keys.find(q)
    probe = q
    if keys.dtype != q.dtype:  # search in the keys' own type: never a converted copy of the keys
        info = np.iinfo(keys.dtype)
        if q.shape[0] and (int(q.min()) < info.min or int(q.max()) > info.max):
            probe = np.clip(q, info.min, info.max)  # a clipped probe finds no equal key
        probe = probe.astype(keys.dtype)
    pos = np.minimum(np.searchsorted(keys, probe), keys.shape[0] - 1)
    return pos, (keys[pos] == q) & (q >= 0)
