"""Great Expectations suites: a valid dataset passes; each kind of corruption is caught and named."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from recommndr.data.schema import read_table
from recommndr.data.validate import validate_dataset

pytestmark = pytest.mark.unit

Corruption = Callable[[pl.DataFrame], pl.DataFrame]


def _corrupt(root: Path, name: str, fn: Corruption) -> None:
    df = pl.from_arrow(read_table(root, name))
    assert isinstance(df, pl.DataFrame)
    pq.write_table(fn(df).to_arrow(), root / f"{name}.parquet")


def _first_rows(n: int, expr: pl.Expr, value: object) -> Corruption:
    col = expr.meta.output_name()
    return lambda df: df.with_columns(
        pl.when(pl.int_range(pl.len()) < n)
        .then(value if isinstance(value, pl.Expr) else pl.lit(value))
        .otherwise(expr)
        .cast(df.schema[col])
        .alias(col)
    )


def test_valid_dataset_passes(tiny_dataset: Path) -> None:
    report = validate_dataset(tiny_dataset)
    assert report.success, report.failures
    assert report.evaluated >= 60
    assert report.row_counts == {"products": 600, "users": 2000, "events": 40_000}


CASES: list[tuple[str, str, Corruption, str, str | None, int | None]] = [
    (
        "duplicate event ids",
        "events",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) == 1)
            .then(pl.lit(df["event_id"][0]))
            .otherwise(pl.col("event_id"))
            .alias("event_id")
        ),
        "expect_column_values_to_be_unique",
        "event_id",
        2,
    ),
    (
        "duplicate item ids",
        "products",
        lambda df: df.with_columns(
            pl.when(pl.int_range(pl.len()) < 3)
            .then(pl.lit(df["item_id"][5]))
            .otherwise(pl.col("item_id"))
            .alias("item_id")
        ),
        "expect_column_values_to_be_unique",
        "item_id",
        4,
    ),
    (
        "null user ids",
        "events",
        _first_rows(4, pl.col("user_id"), None),
        "expect_column_values_to_not_be_null",
        "user_id",
        4,
    ),
    (
        "zero price",
        "products",
        _first_rows(3, pl.col("price"), 0.0),
        "expect_column_values_to_be_between",
        "price",
        3,
    ),
    (
        "negative event price",
        "events",
        _first_rows(2, pl.col("price"), -1.0),
        "expect_column_values_to_be_between",
        "price",
        2,
    ),
    (
        "zero quantity",
        "events",
        _first_rows(5, pl.col("quantity"), pl.lit(0, pl.Int32)),
        "expect_column_values_to_be_between",
        "quantity",
        5,
    ),
    (
        "unknown event type",
        "events",
        _first_rows(6, pl.col("event_type"), "wishlist"),
        "expect_column_values_to_be_in_set",
        "event_type",
        6,
    ),
    (
        "timestamps in the future",
        "events",
        _first_rows(3, pl.col("ts"), pl.lit(datetime(2099, 1, 1, tzinfo=UTC)).dt.cast_time_unit("us")),
        "expect_column_values_to_be_between",
        "ts",
        3,
    ),
    (
        "unknown user",
        "events",
        _first_rows(7, pl.col("user_id"), pl.lit(99_999_999, pl.Int64)),
        "expect_column_values_to_be_in_set",
        "user_is_known",
        7,
    ),
    (
        "unknown product",
        "events",
        _first_rows(8, pl.col("item_id"), pl.lit(99_999_999, pl.Int64)),
        "expect_column_values_to_be_in_set",
        "item_is_known",
        8,
    ),
    (
        "event before its product's launch",
        "events",
        _first_rows(2, pl.col("ts"), pl.lit(datetime(1995, 6, 1, tzinfo=UTC)).dt.cast_time_unit("us")),
        "expect_column_values_to_be_in_set",
        "ts_not_before_launch",
        None,
    ),
    (
        "missing column",
        "products",
        lambda df: df.drop("brand"),
        "expect_column_to_exist",
        "brand",
        None,
    ),
    (
        "wrong type",
        "products",
        lambda df: df.with_columns(pl.col("price").cast(pl.String)),
        "expect_column_values_to_be_in_type_list",
        "price",
        None,
    ),
    (
        "funnel inverted: views relabelled as purchases",
        "events",
        lambda df: df.with_columns(
            pl.when(pl.col("event_type") == "view")
            .then(pl.lit("purchase"))
            .otherwise(pl.col("event_type"))
            .alias("event_type")
        ),
        "expect_column_pair_values_a_to_be_greater_than_b",
        "add_to_cart vs purchase",
        None,
    ),
]


@pytest.mark.parametrize(
    ("what", "table", "corrupt", "expectation", "column", "count"), CASES, ids=[c[0] for c in CASES]
)
def test_corruption_is_caught(
    tiny_copy: Path,
    what: str,
    table: str,
    corrupt: Corruption,
    expectation: str,
    column: str | None,
    count: int | None,
) -> None:
    _corrupt(tiny_copy, table, corrupt)
    report = validate_dataset(tiny_copy)
    assert not report.success, what
    hits = [
        f
        for f in report.failures
        if f.table in (table, "funnel") and f.expectation == expectation and f.column == column
    ]
    assert hits, [(f.table, f.expectation, f.column) for f in report.failures]
    if count is not None:
        assert hits[0].unexpected_count == count
        assert hits[0].samples, "a failure names sample rows"
