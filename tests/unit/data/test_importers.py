"""Importing a shop's own files, the Complete Journey data and MovieLens 100K."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recommndr.data.importers.files import import_files
from recommndr.data.schema import EVENTS_SCHEMA, read_table
from recommndr.errors import DataNotFoundError, DataSchemaError, UserInputError

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


# MovieLens 100K (recommndr/data/importers/movielens.py): a hand-made input in RecBole's atomic
# format (the real rows are not copied here: GroupLens' terms forbid redistributing them).
ML_RATINGS = """user_id:token\titem_id:token\trating:float\ttimestamp:float
1\t10\t5\t1000000000
1\t11\t3\t1000000060
1\t12\t4\t1000007260
2\t10\t1\t1000086400
2\t14\t2\t1000086500
"""
ML_ITEMS = """item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq
10\tToy Story\t1995\tAnimation Children's Comedy
11\tLand Before Time III (1994)\tV\tAnimation Children's
12\tCasablanca\t1942\tDrama Romance War
13\tNever Rated\t1997\tDrama
14\tunkonwn\tunkonwn\tunknown
"""
ML_USERS = """user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token
1\t24\tM\ttechnician\t85711
2\t53\tF\tother\tT8H1N
"""


def _movielens_source(tmp: Path, ratings: str = ML_RATINGS) -> Path:
    src = tmp / "ml-100k"
    src.mkdir()
    for name, text in (("inter", ratings), ("item", ML_ITEMS), ("user", ML_USERS)):
        (src / f"ml-100k.{name}").write_text(text)
    return src


def _recbole_installed() -> bool:
    from importlib import metadata

    try:
        metadata.distribution("recbole")
    except metadata.PackageNotFoundError:
        return False
    return True


def test_movielens_mapping_on_a_known_input(tmp_path: Path) -> None:
    from recommndr.data.importers.movielens import import_movielens

    s = import_movielens(tmp_path / "out", source=_movielens_source(tmp_path))
    # 5 ratings: every one a view, >= 4 stars a cart too (10 by user 1, 12), 5 stars a purchase (10 by user 1)
    assert (s.users, s.products, s.events) == (2, 4, 8)
    assert (s.views, s.add_to_carts, s.purchases) == (5, 2, 1)
    ev = pl.from_arrow(read_table(tmp_path / "out", "events"))
    assert isinstance(ev, pl.DataFrame)
    assert read_table(tmp_path / "out", "events").schema == EVENTS_SCHEMA
    assert ev["event_id"].n_unique() == ev.height
    u1 = ev.filter(pl.col("user_id") == 1, pl.col("item_id") == 10).sort("ts")
    assert u1["event_type"].to_list() == ["view", "add_to_cart", "purchase"]
    assert [t.timestamp() for t in u1["ts"].to_list()] == [1_000_000_000, 1_000_000_001, 1_000_000_002]
    assert ev.filter(pl.col("item_id") == 11)["event_type"].to_list() == ["view"]  # 3 stars
    # sessions: user 1's first two ratings a minute apart share one; two hours later a new one
    sessions = {(r["user_id"], r["item_id"]): r["session_id"] for r in ev.iter_rows(named=True)}
    assert sessions[(1, 10)] == sessions[(1, 11)] != sessions[(1, 12)]
    assert sessions[(2, 10)] == sessions[(2, 14)] not in {sessions[(1, 10)], sessions[(1, 12)]}
    assert set(ev["quantity"].to_list()) == {1}

    pr = pl.from_arrow(read_table(tmp_path / "out", "products"))
    assert isinstance(pr, pl.DataFrame)
    rows = {r["item_id"]: r for r in pr.iter_rows(named=True)}
    assert set(rows) == {10, 11, 12, 14}  # never rated: left out
    assert rows[10]["title"] == "Toy Story (1995)"
    assert (rows[10]["category_l1"], rows[10]["category_l2"], rows[10]["category_l3"]) == (
        "Animation",
        "Children's",
        "1990s",
    )
    assert rows[11]["title"] == "Land Before Time III (1994)"  # the year from the title
    assert (rows[11]["brand"], rows[11]["price"]) == ("1994", 14.99)
    assert (rows[12]["category_l1"], rows[12]["category_l3"], rows[12]["price"]) == ("Drama", "1940s", 7.99)
    assert (rows[14]["title"], rows[14]["category_l1"], rows[14]["category_l2"]) == (
        "Movie 14",
        "unknown",
        "unknown",
    )
    assert rows[10]["price"] == 14.99 and rows[14]["price"] == 7.99
    assert ev.filter(pl.col("item_id") == 10)["price"].to_list() == [14.99] * 4
    assert rows[10]["created_at"].timestamp() == 1_000_000_000  # its first rating

    us = pl.from_arrow(read_table(tmp_path / "out", "users"))
    assert isinstance(us, pl.DataFrame)
    assert [(r["country"], r["segment"]) for r in us.sort("user_id").iter_rows(named=True)] == [
        ("US", "age 18-24"),
        ("CA", "age 45-54"),
    ]
    assert us.sort("user_id")["signup_at"][1].timestamp() == 1_000_086_400


def test_movielens_price_bands() -> None:
    from recommndr.data.importers.movielens import to_schema

    years = [1979, 1980, 1992, 1993, 1996, 1997, 1998]
    items = pl.DataFrame(
        {
            "item_id": [str(i) for i in range(len(years))],
            "movie_title": [f"M{i}" for i in range(len(years))],
            "release_year": [str(y) for y in years],
            "class": ["Drama"] * len(years),
        }
    )
    ratings = pl.DataFrame(
        {"user_id": "1", "item_id": items["item_id"], "rating": "3", "timestamp": "900000000"}
    )
    users = pl.DataFrame({"user_id": ["1"], "age": ["30"], "zip_code": ["00000"]})
    products, _, _ = to_schema({"ratings": ratings, "items": items, "users": users})
    assert products.sort("item_id")["price"].to_list() == [7.99, 9.99, 9.99, 14.99, 14.99, 19.99, 19.99]


def test_movielens_missing_package_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib import metadata

    from recommndr.data.importers import movielens

    def absent(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    with pytest.raises(UserInputError, match=r"'recbole' package .* pip install --no-deps recbole==1\.2\.1"):
        movielens.import_movielens(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_movielens_missing_file_or_bad_row_is_named(tmp_path: Path) -> None:
    from recommndr.data.importers.movielens import import_movielens

    src = _movielens_source(tmp_path)
    (src / "ml-100k.user").unlink()
    with pytest.raises(DataNotFoundError, match=r"ml-100k\.user does not exist"):
        import_movielens(tmp_path / "out", source=src)
    (tmp_path / "b").mkdir()
    bad = _movielens_source(tmp_path / "b", ML_RATINGS + "3\tx\t4\t1000000000\n")
    with pytest.raises(DataSchemaError, match=r"ml-100k\.inter: 1 rating.*line 7.*'x'"):
        import_movielens(tmp_path / "out", source=bad)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_movielens_import_of_the_packaged_data(tmp_path: Path) -> None:
    if not _recbole_installed():
        pytest.skip(
            "the 'recbole' package (MovieLens 100K's files) is not installed: pip install --no-deps recbole==1.2.1"
        )
    from recommndr.data.importers.movielens import import_movielens
    from recommndr.data.validate import validate_dataset

    s = import_movielens(tmp_path / "ml")
    assert (s.users, s.products, s.views) == (943, 1682, 100_000)
    assert (s.add_to_carts, s.purchases) == (55_375, 21_201)  # 34,174 4-star + 21,201 5-star ratings
    assert (s.first.date().isoformat(), s.last.date().isoformat()) == ("1997-09-20", "1998-04-22")
    ev = read_table(tmp_path / "ml", "events", columns=["event_id"])
    assert len(ev["event_id"].unique()) == s.events == 176_576
    report = validate_dataset(tmp_path / "ml")
    assert report.success, report.failures
