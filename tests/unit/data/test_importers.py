"""Importing a shop's own files, and the Complete Journey data."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recommndr.data.importers.files import import_files
from recommndr.data.schema import EVENTS_SCHEMA, read_table
from recommndr.errors import DataNotFoundError, DataSchemaError

pytestmark = pytest.mark.unit

PRODUCTS_CSV = """item_id,title,category_l1,category_l2,price,brand
1,Espresso machine,Home,Coffee,199.0,Brewco
2,Coffee beans 1kg,Grocery,Coffee,14.5,
3,Milk frother,Home,Coffee,35,Brewco
"""
EVENTS_CSV = """user_id,item_id,event_type,ts,quantity
10,1,view,2025-03-01T10:00:00Z,
10,1,addtocart,2025-03-01T10:02:00Z,1
10,1,transaction,2025-03-01T10:05:00+00:00,1
10,2,view,2025-03-01T12:00:00Z,
11,3,view,2025-03-01T12:00:00Z,
11,2,purchase,2025-03-02 09:00:00,2
"""


def _write(tmp: Path, events: str = EVENTS_CSV, products: str = PRODUCTS_CSV) -> tuple[Path, Path]:
    e, p = tmp / "events.csv", tmp / "products.csv"
    e.write_text(events)
    p.write_text(products)
    return e, p


def test_good_files_are_converted_with_documented_defaults(tmp_path: Path) -> None:
    e, p = _write(tmp_path)
    s = import_files(e, p, tmp_path / "out")
    assert (s.events, s.products, s.users) == (6, 3, 2)
    ev = pl.from_arrow(read_table(tmp_path / "out", "events"))
    assert isinstance(ev, pl.DataFrame)
    assert read_table(tmp_path / "out", "events").schema == EVENTS_SCHEMA
    assert ev["event_type"].to_list().count("purchase") == 2  # 'transaction' is an alias
    assert ev.filter(pl.col("event_type") == "add_to_cart").height == 1
    # user 10: 10:00-10:05 one session, 12:00 a new one (30-minute gap)
    u10 = ev.filter(pl.col("user_id") == 10).sort("ts")["session_id"].to_list()
    assert u10[0] == u10[1] == u10[2] != u10[3]
    # offsets and plain dates parsed as UTC; prices from the catalogue; quantity default 1
    assert str(ev.filter(pl.col("item_id") == 2, pl.col("user_id") == 11)["ts"][0]).startswith(
        "2025-03-02 09:00:00"
    )
    assert ev.filter(pl.col("item_id") == 2)["price"].to_list() == [14.5, 14.5]
    assert ev.filter(pl.col("event_type") == "view")["quantity"].to_list() == [1, 1, 1]
    pr = pl.from_arrow(read_table(tmp_path / "out", "products"))
    assert isinstance(pr, pl.DataFrame)
    assert pr.filter(pl.col("item_id") == 2)["brand"][0] == "unknown"
    assert pr["category_l3"].to_list() == pr["category_l2"].to_list()
    assert any("session_id" in d for d in s.derived)


def test_epoch_timestamps(tmp_path: Path) -> None:
    e, p = _write(tmp_path, "user_id,item_id,event_type,ts\n1,1,view,1740830400\n1,2,view,1740830460000\n")
    import_files(e, p, tmp_path / "out")
    ts = read_table(tmp_path / "out", "events")["ts"].to_pylist()
    assert [t.isoformat() for t in ts] == ["2025-03-01T12:00:00+00:00", "2025-03-01T12:01:00+00:00"]


def test_parquet_input_with_a_users_file(tmp_path: Path) -> None:
    e, p = _write(tmp_path)
    pl.read_csv(e).write_parquet(tmp_path / "events.parquet")
    (tmp_path / "users.csv").write_text("user_id,country\n10,DE\n11,FR\n")
    s = import_files(tmp_path / "events.parquet", p, tmp_path / "out", tmp_path / "users.csv")
    assert s.users == 2
    us = pl.from_arrow(read_table(tmp_path / "out", "users"))
    assert isinstance(us, pl.DataFrame)
    assert us.sort("user_id")["country"].to_list() == ["DE", "FR"]


@pytest.mark.parametrize(
    ("events", "products", "pattern"),
    [
        (EVENTS_CSV.replace("event_type", "kind"), PRODUCTS_CSV, r"events\.csv: missing column\(s\) event_type"),
        (EVENTS_CSV, PRODUCTS_CSV.replace(",price,", ",cost,"), r"products\.csv: missing column\(s\) price"),
        (EVENTS_CSV.replace("11,3,view", "eleven,3,view"), PRODUCTS_CSV, r"column 'user_id' is not an integer id.*line 6.*eleven"),
        (
            EVENTS_CSV.replace("2025-03-02 09:00:00", "yesterday"),
            PRODUCTS_CSV,
            r"column 'ts' is not a parseable timestamp.*line 7.*yesterday",
        ),
        (EVENTS_CSV.replace("12:00:00Z", "25:99:00Z"), PRODUCTS_CSV, r"column 'ts' is not a parseable timestamp.*line 5"),
        (EVENTS_CSV.replace("10,2,view", "10,2,wishlist"), PRODUCTS_CSV, r"column 'event_type' is not one of.*wishlist"),
        (EVENTS_CSV.replace("11,3,view", "11,42,view"), PRODUCTS_CSV, r"column 'item_id' names a product that is not in"),
        (EVENTS_CSV, PRODUCTS_CSV.replace("35,Brewco", "-3,Brewco"), r"products\.csv: column 'price' is not a positive price"),
        (EVENTS_CSV, PRODUCTS_CSV.replace("3,Milk", "2,Milk"), r"column 'item_id' repeats a product id"),
    ],
    ids=["missing event column", "missing product column", "wrong type", "bad timestamp", "impossible time",
         "unknown event type", "unknown product", "bad price", "duplicate product"],
)  # fmt: skip
def test_bad_input_is_named_and_nothing_is_written(
    tmp_path: Path, events: str, products: str, pattern: str
) -> None:
    e, p = _write(tmp_path, events, products)
    with pytest.raises(DataSchemaError, match=pattern):
        import_files(e, p, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    _, p = _write(tmp_path)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        import_files(tmp_path / "nope.csv", p, tmp_path / "out")
    (tmp_path / "events.xlsx").write_bytes(b"PK")
    with pytest.raises(DataSchemaError, match="unsupported file type"):
        import_files(tmp_path / "events.xlsx", p, tmp_path / "out")


def test_users_file_must_cover_the_events(tmp_path: Path) -> None:
    e, p = _write(tmp_path)
    (tmp_path / "users.csv").write_text("user_id\n10\n")
    with pytest.raises(DataSchemaError, match=r"missing from the users file, for example user_id 11"):
        import_files(e, p, tmp_path / "out", tmp_path / "users.csv")


@pytest.mark.slow
def test_complete_journey_import(tmp_path: Path) -> None:
    from recommndr.data.importers.completejourney import import_completejourney
    from recommndr.data.validate import validate_dataset

    s = import_completejourney(tmp_path / "cj")
    assert s.users == 2469
    assert 1_400_000 < s.events < 1_469_307  # returns and zero-value lines dropped
    assert s.products > 60_000
    ev = read_table(tmp_path / "cj", "events", columns=["event_type", "session_id"])
    assert set(ev["event_type"].unique().to_pylist()) == {"purchase"}
    assert 150_000 < len(ev["session_id"].unique()) <= 155_848
    report = validate_dataset(tmp_path / "cj")
    assert report.success, report.failures
