"""Statistics that show how realistic a dataset is, for any dataset in the schema, so that
synthetic and real data can be compared side by side (``recommndr data profile A B``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from recommndr.data.schema import table_path

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
COLD_TAIL = 0.1  # users/items first seen in the last 10% of the time span are "cold"


def _scan(root: Path, name: str) -> pl.LazyFrame:
    path = table_path(root, name)
    return pl.scan_parquet(path / "**/*.parquet" if path.is_dir() else path)


def gini(counts: npt.NDArray[np.int64]) -> float:
    """Gini coefficient of a count vector (0: all equal, 1: all on one)."""
    c = np.sort(counts.astype(np.float64))
    n = c.shape[0]
    if n == 0 or c.sum() == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float((2.0 * (i * c).sum()) / (n * c.sum()) - (n + 1.0) / n)


def top_share(counts: npt.NDArray[np.int64], fraction: float) -> float:
    c = np.sort(counts)[::-1]
    k = max(1, int(np.ceil(c.shape[0] * fraction)))
    return float(c[:k].sum() / max(c.sum(), 1))


def _num(value: Any) -> float:
    """A polars scalar statistic as a float (None, for an empty column, as 0)."""
    return 0.0 if value is None else float(value)


def _q(s: pl.Series, q: float) -> float:
    v = s.quantile(q, interpolation="nearest")
    return float(v) if v is not None else 0.0


def profile(root: Path) -> dict[str, Any]:
    """Compute the realism profile of the dataset at ``root``."""
    ev = _scan(root, "events").select(
        "user_id", "item_id", "event_type", "ts", "session_id", "price", "quantity"
    )
    ev_df = ev.with_columns(pl.col("event_type").cast(pl.Categorical)).collect()
    n_products = _scan(root, "products").select(pl.len()).collect().item()
    n_users = _scan(root, "users").select(pl.len()).collect().item()
    out: dict[str, Any] = {
        "users": n_users,
        "products": n_products,
        "events": ev_df.height,
        "sessions": ev_df["session_id"].n_unique(),
    }
    types = ev_df.group_by("event_type").len()
    tc = {str(r[0]): int(r[1]) for r in types.iter_rows()}
    views, carts, buys = tc.get("view", 0), tc.get("add_to_cart", 0), tc.get("purchase", 0)
    out["share_view"] = views / max(ev_df.height, 1)
    out["share_add_to_cart"] = carts / max(ev_df.height, 1)
    out["share_purchase"] = buys / max(ev_df.height, 1)

    item_counts = ev_df.group_by("item_id").len()["len"].to_numpy()
    out["products_with_events"] = item_counts.shape[0] / max(n_products, 1)
    out["top1pct_product_share"] = top_share(item_counts, 0.01)
    out["top10pct_product_share"] = top_share(item_counts, 0.10)
    out["gini_products"] = gini(item_counts)
    pur = ev_df.filter(pl.col("event_type") == "purchase")
    pc_counts = pur.group_by("item_id").len()["len"].to_numpy()
    out["gini_products_purchases"] = gini(pc_counts)

    sess = ev_df.group_by("session_id").agg(
        pl.len().alias("n"),
        (pl.col("event_type") == "add_to_cart").any().alias("cart"),
        (pl.col("event_type") == "purchase").any().alias("buy"),
        (pl.col("event_type") == "purchase").sum().alias("lines"),
    )
    out["view_to_cart"] = carts / views if views else None
    out["cart_to_purchase"] = buys / carts if carts else None
    out["session_conversion"] = _num(sess["buy"].mean())
    carted = sess.filter(pl.col("cart"))
    out["cart_abandonment"] = 1.0 - _num(carted["buy"].mean()) if carted.height else None
    out["events_per_session_mean"] = _num(sess["n"].mean())
    out["events_per_session_median"] = _q(sess["n"], 0.5)
    per_user = ev_df.group_by("user_id").agg(pl.len().alias("n"), pl.col("session_id").n_unique().alias("s"))
    out["active_users"] = per_user.height / max(n_users, 1)
    out["events_per_user_mean"] = _num(per_user["n"].mean())
    out["events_per_user_median"] = _q(per_user["n"], 0.5)
    out["events_per_user_p99"] = _q(per_user["n"], 0.99)
    out["sessions_per_user_mean"] = _num(per_user["s"].mean())
    baskets = sess.filter(pl.col("buy"))
    out["basket_lines_mean"] = _num(baskets["lines"].mean()) if baskets.height else None
    out["basket_lines_median"] = _q(baskets["lines"], 0.5) if baskets.height else None
    out["repeat_purchase_share"] = _repeat_share(pur)

    ts = ev_df["ts"]
    t0, t1 = ts.min(), ts.max()
    out["first_event"] = str(t0)
    out["last_event"] = str(t1)
    wd = ev_df.select(pl.col("ts").dt.weekday().alias("d")).group_by("d").len().sort("d")
    wd_share = dict(zip(wd["d"].to_list(), (wd["len"] / ev_df.height).to_list(), strict=True))
    out["weekday_share"] = {WEEKDAYS[d - 1]: wd_share.get(d, 0.0) for d in range(1, 8)}
    mo = ev_df.select(pl.col("ts").dt.month().alias("m")).group_by("m").len().sort("m")
    mo_share = dict(zip(mo["m"].to_list(), (mo["len"] / ev_df.height).to_list(), strict=True))
    out["month_share"] = {MONTHS[m - 1]: mo_share.get(m, 0.0) for m in range(1, 13)}
    out["nov_dec_share"] = out["month_share"]["Nov"] + out["month_share"]["Dec"]

    assert t0 is not None and t1 is not None
    cut = t0 + (t1 - t0) * (1 - COLD_TAIL)  # type: ignore[operator]
    first_user = ev_df.group_by("user_id").agg(pl.col("ts").min().alias("t"))
    first_item = ev_df.group_by("item_id").agg(pl.col("ts").min().alias("t"))
    out["cold_users_share"] = _num((first_user["t"] >= cut).mean())
    out["cold_products_share"] = _num((first_item["t"] >= cut).mean())
    tail = ev_df.filter(pl.col("ts") >= cut)
    cold_items = first_item.filter(pl.col("t") >= cut)["item_id"]
    out["tail_events_on_cold_products"] = (
        _num(tail["item_id"].is_in(cold_items.implode()).mean()) if tail.height else 0.0
    )
    out["price_median"] = _num(ev_df["price"].median())
    out["quantity_median_purchases"] = _q(pur["quantity"], 0.5) if pur.height else None
    out["quantity_p99_purchases"] = _q(pur["quantity"], 0.99) if pur.height else None
    return out


def _repeat_share(pur: pl.DataFrame) -> float | None:
    """Share of purchases of a product the user had bought before."""
    if pur.height == 0:
        return None
    firsts = pur.group_by("user_id", "item_id").len()
    return float(1.0 - firsts.height / pur.height)


ROWS: tuple[tuple[str, str, str], ...] = (
    ("users", "users", "{:,}"),
    ("products", "products", "{:,}"),
    ("events", "events", "{:,}"),
    ("sessions", "sessions (baskets)", "{:,}"),
    ("share_view", "views / events", "{:.1%}"),
    ("share_add_to_cart", "add-to-carts / events", "{:.1%}"),
    ("share_purchase", "purchases / events", "{:.1%}"),
    ("top1pct_product_share", "events on top 1% of products", "{:.1%}"),
    ("top10pct_product_share", "events on top 10% of products", "{:.1%}"),
    ("gini_products", "Gini of product popularity", "{:.3f}"),
    ("gini_products_purchases", "Gini of product purchases", "{:.3f}"),
    ("products_with_events", "products with any event", "{:.1%}"),
    ("view_to_cart", "add-to-cart per view", "{:.2%}"),
    ("cart_to_purchase", "purchase per add-to-cart", "{:.1%}"),
    ("cart_abandonment", "sessions with a cart but no purchase", "{:.1%}"),
    ("session_conversion", "sessions with a purchase", "{:.1%}"),
    ("events_per_session_mean", "events per session (mean)", "{:.2f}"),
    ("events_per_session_median", "events per session (median)", "{:.0f}"),
    ("events_per_user_mean", "events per user (mean)", "{:.1f}"),
    ("events_per_user_median", "events per user (median)", "{:.0f}"),
    ("events_per_user_p99", "events per user (p99)", "{:.0f}"),
    ("sessions_per_user_mean", "sessions per user (mean)", "{:.2f}"),
    ("active_users", "users with any event", "{:.1%}"),
    ("basket_lines_mean", "purchase lines per basket (mean)", "{:.2f}"),
    ("basket_lines_median", "purchase lines per basket (median)", "{:.0f}"),
    ("repeat_purchase_share", "purchases of a product bought before", "{:.1%}"),
    ("quantity_median_purchases", "quantity per purchase line (median)", "{:.0f}"),
    ("quantity_p99_purchases", "quantity per purchase line (p99)", "{:.0f}"),
    ("nov_dec_share", "events in Nov + Dec", "{:.1%}"),
    ("cold_users_share", "users first seen in the last 10% of time", "{:.1%}"),
    ("cold_products_share", "products first seen in the last 10% of time", "{:.1%}"),
    ("tail_events_on_cold_products", "last-10% events on those products", "{:.1%}"),
    ("price_median", "median price paid", "{:.2f}"),
)


def format_value(value: Any, fmt: str) -> str:
    if value is None:
        return "n/a"
    return fmt.format(value)


def shape_rows(profiles: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Weekday and month shares as rows (relative to a flat shape: 1.00 = average)."""
    rows: list[tuple[str, list[str]]] = []
    for key, labels, flat in (("weekday_share", WEEKDAYS, 1 / 7), ("month_share", MONTHS, 1 / 12)):
        for lab in labels:
            rows.append((f"{lab} (x average)", [f"{p[key][lab] / flat:.2f}" for p in profiles]))
    return rows
