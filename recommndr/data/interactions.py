"""Dense, columnar views of a dataset up to a cut-off, shared by every model and the features.

Products keep the catalogue's order of ``item_id`` (dense index = position); users are those with
an event before the cut-off. Event types are coded 0 view, 1 add to cart, 2 purchase.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from recommndr.arrays import load_arrays, save_arrays
from recommndr.data.schema import EVENT_TYPES, read_table

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F32 = npt.NDArray[np.float32]
US_PER_DAY = 86_400_000_000


def positions(sorted_ids: npt.NDArray[np.integer[Any]], ids: I64) -> I64:
    """Index of each of ``ids`` in the sorted array ``sorted_ids``; -1 where absent.

    ``sorted_ids`` may be of a narrower integer type (a saved bundle's int32 user ids): the search
    runs in its type, never on a converted copy of it."""
    if sorted_ids.shape[0] == 0:
        return np.full(ids.shape[0], -1, dtype=np.int64)
    probe = ids
    if sorted_ids.dtype != ids.dtype and sorted_ids.dtype.kind in "iu":
        info = np.iinfo(sorted_ids.dtype)
        if ids.shape[0] and (int(ids.min()) < info.min or int(ids.max()) > info.max):
            probe = np.clip(ids, info.min, info.max)  # a clipped probe matches nothing
        probe = probe.astype(sorted_ids.dtype)
    pos = np.minimum(np.searchsorted(sorted_ids, probe), sorted_ids.shape[0] - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1).astype(np.int64)


@dataclass
class Catalogue:
    item_ids: I64  # sorted
    l1: I32
    l2: I32
    l3: I32
    l1_names: list[str]
    l2_names: list[str]
    l3_names: list[str]
    price: F32
    created_us: I64

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    def index_of(self, item_ids: I64) -> I64:
        """Dense indices of ``item_ids``; -1 for unknown products."""
        return positions(self.item_ids, item_ids)

    def category_names(self) -> dict[str, list[str]]:
        """The names of the category codes, level by level (kept in a bundle's manifest)."""
        return {"l1": self.l1_names, "l2": self.l2_names, "l3": self.l3_names}

    def save(self, path: Path) -> None:
        """The arrays to ``path`` (.npz); the names go to the manifest (:meth:`category_names`)."""
        save_arrays(path, {"item_ids": self.item_ids, "l1": self.l1, "l2": self.l2, "l3": self.l3,
                           "price": self.price, "created_us": self.created_us})  # fmt: skip

    @classmethod
    def load(cls, path: Path, names: dict[str, list[str]]) -> Catalogue:
        """What :meth:`save` wrote, with the category names of :meth:`category_names`."""
        z = load_arrays(path)
        return cls(
            item_ids=z["item_ids"], l1=z["l1"], l2=z["l2"], l3=z["l3"],
            l1_names=names["l1"], l2_names=names["l2"], l3_names=names["l3"],
            price=z["price"], created_us=z["created_us"],
        )  # fmt: skip


@dataclass
class Interactions:
    """Events up to ``cutoff_us`` (exclusive), sorted by time."""

    catalogue: Catalogue
    cutoff_us: int
    user_ids: I64  # sorted; dense user index = position
    user: I32
    item: I32
    etype: npt.NDArray[np.int8]
    ts: I64
    session: I64

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    def user_index(self, user_ids: I64) -> I64:
        """Dense indices of ``user_ids``; -1 for users without events before the cut-off."""
        return positions(self.user_ids, user_ids)

    def age_days(self) -> npt.NDArray[np.float64]:
        return np.asarray((self.cutoff_us - self.ts) / US_PER_DAY, dtype=np.float64)


def _codes(col: pl.Series) -> tuple[I32, list[str]]:
    names = sorted(set(col.fill_null("").to_list()))
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[v] for v in col.fill_null("").to_list()], dtype=np.int32), names


def load_catalogue(root: Path) -> Catalogue:
    df = pl.from_arrow(read_table(root, "products"))
    assert isinstance(df, pl.DataFrame)
    df = df.sort("item_id")
    l1, l1n = _codes(df["category_l1"])
    l2, l2n = _codes(df["category_l1"] + " > " + df["category_l2"])
    l3, l3n = _codes(df["category_l1"] + " > " + df["category_l2"] + " > " + df["category_l3"])
    return Catalogue(
        item_ids=df["item_id"].to_numpy().astype(np.int64),
        l1=l1,
        l2=l2,
        l3=l3,
        l1_names=l1n,
        l2_names=l2n,
        l3_names=l3n,
        price=df["price"].to_numpy().astype(np.float32),
        created_us=df["created_at"].dt.epoch("us").to_numpy().astype(np.int64),
    )


def load_events(root: Path) -> pl.DataFrame:
    """Events as a polars frame with int ``etype`` and int64 ``ts_us``, sorted by time."""
    table = read_table(root, "events", columns=["user_id", "item_id", "event_type", "ts", "session_id"])
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    codes = {t: i for i, t in enumerate(EVENT_TYPES)}
    return df.select(
        "user_id",
        "item_id",
        pl.col("event_type").cast(pl.String).replace_strict(codes, return_dtype=pl.Int8).alias("etype"),
        pl.col("ts").dt.epoch("us").alias("ts_us"),
        "session_id",
    ).sort("ts_us", maintain_order=True)


def build_interactions(
    catalogue: Catalogue, events: pl.DataFrame, cutoff_us: int, start_us: int | None = None
) -> Interactions:
    """The events in ``[start_us, cutoff_us)`` about known products, in dense form."""
    ev = events.filter(pl.col("ts_us") < cutoff_us)
    if start_us is not None:
        ev = ev.filter(pl.col("ts_us") >= start_us)
    item = catalogue.index_of(ev["item_id"].to_numpy())
    keep = item >= 0
    users = ev["user_id"].to_numpy()[keep]
    user_ids, user = np.unique(users, return_inverse=True)
    return Interactions(
        catalogue=catalogue,
        cutoff_us=int(cutoff_us),
        user_ids=user_ids.astype(np.int64),
        user=user.astype(np.int32),
        item=item[keep].astype(np.int32),
        etype=ev["etype"].to_numpy()[keep].astype(np.int8),
        ts=ev["ts_us"].to_numpy()[keep].astype(np.int64),
        session=ev["session_id"].to_numpy()[keep].astype(np.int64),
    )


def to_arrow_ids(x: I64) -> pa.Array:
    return pa.array(x, type=pa.int64())
