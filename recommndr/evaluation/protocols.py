"""Evaluation protocols: how a dataset's events are cut into what the models learn from and what
they are scored on. One definition, used by ``recommndr evaluate``, ``recommndr train`` (its
hold-out figures) and ``recommndr tune`` (its validation split, carved from the training part).

- ``temporal``: everything before the last ``holdout_days`` is training; the products each user
  viewed (gain 1), carted (2) or bought (3) afterwards are the targets. A shop's question: "what will
  they do next?" Products the user had before stay eligible (groceries are bought again).
- ``random``: Microsoft Recommenders' protocol — each user's distinct products are split at random,
  75 % to training and 25 % to test (seed 42), relevance is binary and every product the user has in
  training is removed from the lists, so figures compare with the tables those libraries publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from recommndr.data.interactions import US_PER_DAY, Catalogue
from recommndr.errors import UserInputError

Protocol = Literal["temporal", "random"]
PROTOCOLS: tuple[Protocol, ...] = ("temporal", "random")
RANDOM_TRAIN_SHARE = 0.75
RANDOM_SEED = 42


@dataclass(frozen=True)
class Split:
    """``train``: the events the models learn from (load_events' columns); ``targets``: per (user_id,
    dense item) the gain to score against; ``exclude_seen``: lists must leave out every product the
    user has in ``train``; ``end_us``: the end of the training period (exclusive)."""

    protocol: Protocol
    train: pl.DataFrame
    targets: pl.DataFrame
    exclude_seen: bool
    end_us: int


def span_us(events: pl.DataFrame) -> tuple[int, int]:
    """The first event's time and the end of the last one's microsecond (exclusive)."""
    ts = events["ts_us"].to_numpy()
    return int(ts.min()), int(ts.max()) + 1


def known_items(events: pl.DataFrame, catalogue: Catalogue) -> pl.DataFrame:
    """The events with the dense index ``item`` of their product; unknown products dropped."""
    item = catalogue.index_of(events["item_id"].to_numpy())
    return events.with_columns(pl.Series("item", item)).filter(pl.col("item") >= 0)


def graded_targets(events: pl.DataFrame, catalogue: Catalogue) -> pl.DataFrame:
    """Per (user_id, item) of ``events``: the best event type as gain 1 (view) .. 3 (purchase) —
    the one definition of "what the shopper did next" (the ranker's labels use it too)."""
    return (
        known_items(events, catalogue)
        .group_by("user_id", "item")
        .agg((pl.col("etype").max() + 1).alias("gain"))
    )


def temporal_split(events: pl.DataFrame, catalogue: Catalogue, holdout_days: int) -> Split:
    if events.height == 0:
        raise UserInputError("the dataset has no events")
    if holdout_days <= 0:
        raise UserInputError("the temporal protocol needs a hold-out: train.holdout_days must be > 0")
    start, end = span_us(events)
    cut = end - holdout_days * US_PER_DAY
    if cut <= start:
        raise UserInputError(f"the data spans less than the {holdout_days}-day hold-out")
    train = events.filter(pl.col("ts_us") < cut)
    targets = graded_targets(events.filter(pl.col("ts_us") >= cut), catalogue)
    return Split("temporal", train, targets, exclude_seen=False, end_us=cut)


def random_pairs(
    events: pl.DataFrame, catalogue: Catalogue, share: float = RANDOM_TRAIN_SHARE, seed: int = RANDOM_SEED
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each user's distinct known products split at random: ``round(share * n)`` (at least one) to
    training, the rest to test. Returns the training events (every event of a training pair, in
    time order) and the test pairs (user_id, item)."""
    ev = known_items(events, catalogue)
    pairs = ev.select("user_id", "item").unique().sort("user_id", "item")
    rng = np.random.default_rng(seed)
    pairs = pairs.with_columns(pl.Series("r", rng.random(pairs.height))).sort("user_id", "r")
    n = pairs.group_by("user_id", maintain_order=True).len()
    n_train = np.maximum(1, np.floor(share * n["len"].to_numpy() + 0.5)).astype(np.int64)
    rank = pairs.with_columns(pl.int_range(pl.len()).over("user_id").alias("rank"))
    limit = pl.DataFrame({"user_id": n["user_id"], "n_train": n_train})
    rank = rank.join(limit, on="user_id")
    is_train = rank["rank"].to_numpy() < rank["n_train"].to_numpy()
    train_pairs = rank.filter(pl.Series(is_train)).select("user_id", "item")
    test_pairs = rank.filter(pl.Series(~is_train)).select("user_id", "item")
    train = (
        ev.join(train_pairs, on=["user_id", "item"], how="semi")
        .drop("item")
        .sort("ts_us", maintain_order=True)
    )
    return train, test_pairs


def random_split(events: pl.DataFrame, catalogue: Catalogue, seed: int = RANDOM_SEED) -> Split:
    if events.height == 0:
        raise UserInputError("the dataset has no events")
    train, test = random_pairs(events, catalogue, RANDOM_TRAIN_SHARE, seed)
    if test.height == 0:
        raise UserInputError("no user has two products: the random protocol has nothing to test")
    targets = test.with_columns(pl.lit(1, dtype=pl.Int8).alias("gain"))
    return Split("random", train, targets, exclude_seen=True, end_us=span_us(events)[1])


def split(events: pl.DataFrame, catalogue: Catalogue, protocol: Protocol, holdout_days: int) -> Split:
    """The protocol's split of ``events``; for tuning, call it again on ``split.train`` (the
    validation split is carved from the training part, never from the test part)."""
    if protocol == "temporal":
        return temporal_split(events, catalogue, holdout_days)
    if protocol == "random":
        return random_split(events, catalogue)
    raise UserInputError(f"unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")
