"""What an offline comparison can honestly say on data without a ground truth (The Complete
Journey): nobody was shown either arm's list, so there is no click, no CTR and no conversion
caused by a list. What the data does hold is what each shopper bought after a cut-off. A replay
fits both arms before the cut-off and asks, per shopper, whether each arm's top 10 contains a
product they went on to buy (``hit_rate@10``) and how much of it (``recall@10``): a paired
comparison of predictive accuracy on the same shoppers, with the same intervals and test as the
A/B simulation, labelled as a replay. It measures how well a list anticipates purchases, which
is not the same as how many purchases a list would cause (a shopper may buy their usual milk
whatever they are shown)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from recommndr.evaluation.paired import Ratio

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
PURCHASE_GAIN = 3  # protocols.graded_targets: 1 view, 2 cart, 3 purchase
METRICS: dict[str, Ratio] = {
    "hit_rate@10": Ratio("hits", "shoppers"),
    "recall@10": Ratio("recall", "shoppers"),
}


def bought(targets: pl.DataFrame) -> pl.DataFrame:
    """(user_id, item) pairs bought in the held-out period."""
    return targets.filter(pl.col("gain") >= PURCHASE_GAIN).select("user_id", "item")


def replay_stats(users: I64, lists: I64, bought_pairs: pl.DataFrame, n_items: int) -> dict[str, F64]:
    """Per shopper of ``users`` (ids; ``lists``: their top 10, dense, -1 for none): 1 for the
    shopper, whether the list holds a product they bought, and the share of their bought
    products it holds."""
    ids = bought_pairs["user_id"].to_numpy()
    items = bought_pairs["item"].to_numpy().astype(np.int64)
    order = np.argsort(ids, kind="stable")
    ids, items = ids[order], items[order]
    pos = np.searchsorted(users, ids)
    pos = np.minimum(pos, users.shape[0] - 1)
    ok = users[pos] == ids
    keys = np.unique(pos[ok].astype(np.int64) * n_items + items[ok])
    n_bought = np.bincount(pos[ok], minlength=users.shape[0]).astype(np.float64)
    row = np.broadcast_to(np.arange(users.shape[0])[:, None], lists.shape)
    probe = row.astype(np.int64) * n_items + np.maximum(lists, 0)
    if keys.size:
        found = np.minimum(np.searchsorted(keys, probe), keys.shape[0] - 1)
        hit = (lists >= 0) & (keys[found] == probe)
    else:
        hit = np.zeros(lists.shape, dtype=bool)
    # a product repeated in a list counts once: its first place only
    order = np.argsort(lists, axis=1, kind="stable")
    srt = np.take_along_axis(lists, order, axis=1)
    repeat = np.zeros(lists.shape, dtype=bool)
    repeat[:, 1:] = srt[:, 1:] == srt[:, :-1]
    first = np.empty(lists.shape, dtype=bool)
    np.put_along_axis(first, order, ~repeat, axis=1)
    hits = (hit & first).sum(axis=1).astype(np.float64)
    return {
        "shoppers": np.ones(users.shape[0]),
        "hits": (hits > 0).astype(np.float64),
        "recall": np.divide(hits, n_bought, out=np.zeros_like(hits), where=n_bought > 0),
    }
