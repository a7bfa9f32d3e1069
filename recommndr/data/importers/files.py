"""A shop's own events and catalogue (CSV or Parquet) in the dataset schema.

Required columns: events ``user_id``, ``item_id``, ``event_type``, ``ts``; products ``item_id``,
``title``, ``category_l1``, ``price``; users (optional file) ``user_id``. Everything else in the
schema is optional and filled as documented in the README (sessions by a 30-minute inactivity gap,
event ids from the content, prices from the catalogue, sign-up at the first event, ...).

Every problem (a missing file or column, a value of the wrong type, an unparseable timestamp, an
unknown event type, an event about an unknown product) raises a DataSchemaError naming the file,
the column and a sample row, before anything is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd
import polars as pl

from recommndr.data.schema import EVENT_TYPES, write_dataset
from recommndr.errors import DataNotFoundError, DataSchemaError

log = logging.getLogger(__name__)
SESSION_GAP_US: Final = 30 * 60 * 1_000_000
EVENT_TYPE_ALIASES: Final = {
    "view": "view",
    "detail": "view",
    "pageview": "view",
    "page_view": "view",
    "click": "view",
    "add_to_cart": "add_to_cart",
    "addtocart": "add_to_cart",
    "add-to-cart": "add_to_cart",
    "cart": "add_to_cart",
    "purchase": "purchase",
    "transaction": "purchase",
    "buy": "purchase",
    "order": "purchase",
}
REQUIRED: Final = {
    "events": ("user_id", "item_id", "event_type", "ts"),
    "products": ("item_id", "title", "category_l1", "price"),
    "users": ("user_id",),
}
UNKNOWN: Final = "unknown"


@dataclass(frozen=True)
class FilesImportSummary:
    users: int
    products: int
    events: int
    derived: list[str]
    out: Path


def _read(path: Path, what: str) -> pl.DataFrame:
    if not path.exists():
        raise DataNotFoundError(f"{what} file {path} does not exist")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pl.read_parquet(path)
        if name.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
            sep = "\t" if name.endswith(".tsv") else ","
            return pl.read_csv(path, infer_schema=False, separator=sep)  # all strings: we parse
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataSchemaError(f"{path}: cannot be read as {what} ({exc})") from exc
    raise DataSchemaError(f"{path}: unsupported file type; use .csv, .tsv or .parquet")


class _Table:
    """A source table with its file name, for messages that point at the bad row."""

    def __init__(self, df: pl.DataFrame, path: Path, kind: str) -> None:
        self.df = df.with_row_index("__row")
        self.path = path
        self.kind = kind
        self.csv = path.name.lower().endswith((".csv", ".csv.gz", ".tsv", ".txt"))
        missing = [c for c in REQUIRED[kind] if c not in df.columns]
        if missing:
            raise DataSchemaError(
                f"{path}: missing column(s) {', '.join(missing)} in the {kind} file "
                f"(it has {', '.join(df.columns) or 'no columns'}; required: {', '.join(REQUIRED[kind])})"
            )

    def has(self, col: str) -> bool:
        return col in self.df.columns

    def fail(self, col: str, bad: pl.Series, what: str) -> DataSchemaError:
        rows = self.df.filter(bad)
        first = rows.row(0, named=True)
        line = int(first.pop("__row")) + (2 if self.csv else 1)
        where = f"line {line}" if self.csv else f"row {line}"
        return DataSchemaError(
            f"{self.path}: column '{col}' {what} in {rows.height} row(s); first at {where}: "
            f"{ {k: v for k, v in first.items()} }"
        )

    def parse(self, col: str, dtype: pl.DataType | type[pl.DataType], what: str) -> pl.Series:
        src = self.df[col]
        if src.dtype == pl.String:
            src = src.str.strip_chars()
            src = src.set(src == "", None)
        out = src.cast(dtype, strict=False)
        bad = out.is_null() & src.is_not_null()
        if bad.any():
            raise self.fail(col, bad, f"is not {what}")
        return out

    def timestamps(self, col: str) -> pl.Series:
        """UTC microsecond timestamps from datetimes (naive = UTC), ISO-8601 text, or epoch numbers."""
        src = self.df[col]
        if src.dtype == pl.String and self.csv:
            num = src.str.strip_chars().cast(pl.Int64, strict=False)
            if num.null_count() == src.null_count():
                src = num
        if isinstance(src.dtype, pl.Datetime):
            out = src.dt.cast_time_unit("us")
            out = out.dt.convert_time_zone("UTC") if src.dtype.time_zone else out.dt.replace_time_zone("UTC")
        elif src.dtype.is_integer():
            # Epoch seconds, milliseconds or microseconds, told apart by magnitude per value.
            v = src.cast(pl.Int64)
            scaled = pl.select(
                pl.when(v.abs() < 10**11)
                .then(v * 1_000_000)
                .when(v.abs() < 10**14)
                .then(v * 1_000)
                .otherwise(v)
            ).to_series()
            out = scaled.cast(pl.Datetime("us", "UTC"))
        elif src.dtype == pl.String:
            parsed = pd.to_datetime(src.to_pandas(), utc=True, errors="coerce", format="ISO8601")
            out = pl.Series(col, parsed).cast(pl.Datetime("us", "UTC"))
        else:
            raise DataSchemaError(f"{self.path}: column '{col}' has type {src.dtype}, not a timestamp")
        bad = out.is_null() & src.is_not_null()
        if bad.any():
            raise self.fail(col, bad, "is not a parseable timestamp (use ISO 8601 or epoch seconds)")
        nulls = out.is_null()
        if nulls.any():
            raise self.fail(col, nulls, "is empty")
        return out

    def required_not_null(self, col: str, s: pl.Series) -> None:
        if s.is_null().any():
            raise self.fail(col, s.is_null(), "is empty")


def import_files(events: Path, products: Path, out: Path, users: Path | None = None) -> FilesImportSummary:
    """Read, check and convert the files; write ``out`` only when everything is usable."""
    derived: list[str] = []
    pt = _Table(_read(products, "products"), products, "products")
    prod = _products(pt, derived)
    et = _Table(_read(events, "events"), events, "events")
    ev = _events(et, prod, derived)
    known = ev["item_id"].is_in(prod["item_id"].implode())
    if not known.all():
        raise et.fail("item_id", ~known, f"names a product that is not in {products}")
    first_seen = ev.group_by("item_id").agg(pl.col("ts").min().alias("first_ts"))
    if prod["created_at"].is_null().any():
        derived.append("products.created_at = first event of the product (or the first event overall)")
        prod = (
            prod.join(first_seen, on="item_id", how="left")
            .with_columns(pl.col("created_at").fill_null(pl.col("first_ts")).fill_null(ev["ts"].min()))
            .drop("first_ts")
        )
    usr = _users(users, ev, derived)
    write_dataset(out, prod.to_arrow(), usr.to_arrow(), ev.to_arrow())
    summary = FilesImportSummary(usr.height, prod.height, ev.height, derived, Path(out))
    log.info("imported %s", summary)
    return summary


def _products(t: _Table, derived: list[str]) -> pl.DataFrame:
    item = t.parse("item_id", pl.Int64, "an integer id")
    t.required_not_null("item_id", item)
    dup = item.is_duplicated()
    if dup.any():
        raise t.fail("item_id", dup, "repeats a product id")
    price = t.parse("price", pl.Float64, "a number")
    bad = price.is_null() | (price <= 0)
    if bad.any():
        raise t.fail("price", bad, "is not a positive price")
    cols = {"item_id": item, "title": t.parse("title", pl.String, "text"), "price": price}
    cols["category_l1"] = t.parse("category_l1", pl.String, "text").fill_null(UNKNOWN)
    for lvl, parent in (("category_l2", "category_l1"), ("category_l3", "category_l2")):
        if t.has(lvl):
            cols[lvl] = t.parse(lvl, pl.String, "text").fill_null(cols[parent])
        else:
            derived.append(f"products.{lvl} = {parent}")
            cols[lvl] = cols[parent]
    cols["brand"] = (
        t.parse("brand", pl.String, "text").fill_null(UNKNOWN)
        if t.has("brand")
        else pl.Series([UNKNOWN] * item.len())
    )
    cols["created_at"] = (
        t.timestamps("created_at")
        if t.has("created_at")
        else pl.Series([None] * item.len(), dtype=pl.Datetime("us", "UTC"))
    )
    cols["title"] = cols["title"].fill_null(item.cast(pl.String))
    return pl.DataFrame(
        {
            k: cols[k].alias(k)
            for k in (
                "item_id",
                "title",
                "category_l1",
                "category_l2",
                "category_l3",
                "brand",
                "price",
                "created_at",
            )
        }
    )


def _events(t: _Table, prod: pl.DataFrame, derived: list[str]) -> pl.DataFrame:
    user = t.parse("user_id", pl.Int64, "an integer id")
    t.required_not_null("user_id", user)
    item = t.parse("item_id", pl.Int64, "an integer id")
    t.required_not_null("item_id", item)
    raw_type = t.parse("event_type", pl.String, "text").str.to_lowercase()
    etype = raw_type.replace_strict(EVENT_TYPE_ALIASES, default=None, return_dtype=pl.String)
    bad = etype.is_null()
    if bad.any():
        raise t.fail("event_type", bad, f"is not one of {', '.join(EVENT_TYPES)} (or a known alias)")
    ts = t.timestamps("ts")
    df = pl.DataFrame(
        {"user_id": user, "item_id": item, "event_type": etype, "ts": ts, "__row": t.df["__row"]}
    )
    if t.has("quantity"):
        q = t.parse("quantity", pl.Int32, "an integer").fill_null(1)
        if (q < 1).any():
            raise t.fail("quantity", q < 1, "is below 1")
        df = df.with_columns(q.alias("quantity"))
    else:
        derived.append("events.quantity = 1")
        df = df.with_columns(pl.lit(1, pl.Int32).alias("quantity"))
    if t.has("price"):
        df = df.with_columns(t.parse("price", pl.Float64, "a number").alias("price"))
    else:
        derived.append("events.price = the product's catalogue price")
        df = df.with_columns(pl.lit(None, pl.Float64).alias("price"))
    df = df.join(prod.select("item_id", pl.col("price").alias("__list")), on="item_id", how="left")
    df = df.with_columns(pl.col("price").fill_null(pl.col("__list"))).drop("__list")
    df = df.sort("__row")
    if t.has("session_id"):
        sid = t.df["session_id"].cast(pl.String).str.strip_chars()
        as_int = sid.cast(pl.Int64, strict=False)
        if as_int.null_count() == sid.null_count() and sid.null_count() == 0:
            df = df.with_columns(as_int.alias("session_id"))
        else:
            derived.append("events.session_id = dense number of the given session key")
            df = df.with_columns(sid.fill_null("").rank("dense").cast(pl.Int64).alias("session_id"))
    else:
        derived.append("events.session_id = per user, a new session after 30 minutes without events")
        df = _sessionise(df)
    if t.has("event_id"):
        eid = t.parse("event_id", pl.String, "text")
        t.required_not_null("event_id", eid)
        dup = eid.is_duplicated()
        if dup.any():
            raise t.fail("event_id", dup, "repeats an event id")
        df = df.with_columns(eid.alias("event_id"))
    else:
        derived.append("events.event_id = user-ts-item-type, numbered when repeated")
        base = pl.format("{}-{}-{}-{}", "user_id", pl.col("ts").dt.epoch("us"), "item_id", "event_type")
        df = df.with_columns(base.alias("event_id"))
        df = df.with_columns(
            pl.format("{}-{}", "event_id", pl.int_range(pl.len()).over("event_id")).alias("event_id")
        )
    return df.select(
        "event_id", "user_id", "item_id", "event_type", "ts", "session_id", "price", "quantity"
    ).sort("ts", "event_id")


def _sessionise(df: pl.DataFrame) -> pl.DataFrame:
    df = df.sort("user_id", "ts", "__row")
    gap = pl.col("ts").dt.epoch("us").diff().over("user_id")
    new = (gap.is_null() | (gap > SESSION_GAP_US)).cum_sum().cast(pl.Int64)
    return df.with_columns(new.alias("session_id"))


def _users(path: Path | None, ev: pl.DataFrame, derived: list[str]) -> pl.DataFrame:
    first = ev.group_by("user_id").agg(pl.col("ts").min().alias("first_ts"))
    if path is None:
        derived.append("users = the users of the events, signed up at their first event")
        return first.select(
            "user_id",
            pl.col("first_ts").alias("signup_at"),
            pl.lit(UNKNOWN).alias("country"),
            pl.lit(UNKNOWN).alias("segment"),
        ).sort("user_id")
    t = _Table(_read(path, "users"), path, "users")
    uid = t.parse("user_id", pl.Int64, "an integer id")
    t.required_not_null("user_id", uid)
    if uid.is_duplicated().any():
        raise t.fail("user_id", uid.is_duplicated(), "repeats a user id")
    cols = {"user_id": uid}
    for c in ("country", "segment"):
        cols[c] = (
            t.parse(c, pl.String, "text").fill_null(UNKNOWN) if t.has(c) else pl.Series([UNKNOWN] * uid.len())
        )
    usr = pl.DataFrame({k: v.alias(k) for k, v in cols.items()})
    if t.has("signup_at"):
        usr = usr.with_columns(t.timestamps("signup_at").alias("signup_at"))
    else:
        derived.append("users.signup_at = first event of the user")
        usr = usr.join(first, on="user_id", how="left").rename({"first_ts": "signup_at"})
        usr = usr.with_columns(pl.col("signup_at").fill_null(ev["ts"].min()))
    known = ev["user_id"].is_in(usr["user_id"].implode())
    if not known.all():
        bad_users = ev.filter(~known)
        raise DataSchemaError(
            f"{path}: {bad_users['user_id'].n_unique()} user(s) of the events are missing from the users "
            "file, "
            f"for example user_id {bad_users['user_id'][0]} (event {bad_users['event_id'][0]})"
        )
    return usr.select("user_id", "signup_at", "country", "segment").sort("user_id")
