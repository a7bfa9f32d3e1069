"""Great Expectations 1.x suites for the three tables, and a report of what failed.

Each table gets its own suite: schema and types, non-null keys, unique ids, value ranges, the
event-type set, timestamps in range. Cross-table rules (every event's user and product known, no
event before its product's launch) and the funnel (views >= add-to-carts >= purchases on nearly
every day) run as expectations on columns and a daily table derived here, so that one report
covers them all with counts and sample rows.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recommndr.data.schema import EVENT_TYPES, SCHEMAS, read_table

log = logging.getLogger(__name__)
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
ID_COLUMN = {"products": "item_id", "users": "user_id", "events": "event_id", "funnel": "day"}
FUNNEL_MOSTLY = 0.95
SAMPLE_ROWS = 5
PANDAS_TYPES = {
    pa.int64(): ["int64", "Int64"],
    pa.int32(): ["int32", "Int32", "int64", "Int64"],
    pa.float64(): ["float64", "Float64"],
    pa.string(): ["StringDtype"],
}


@dataclass
class Failure:
    table: str
    expectation: str
    column: str | None
    unexpected_count: int | None
    unexpected_percent: float | None
    detail: str
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ValidationReport:
    dataset: str
    success: bool
    evaluated: int
    failures: list[Failure]
    row_counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _frame(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas with strings as pyarrow-backed strings (compact, fast unique/isin)."""
    text = pd.StringDtype("pyarrow")
    mapping = {pa.string(): text, pa.large_string(): text, pa.string_view(): text}
    df: pd.DataFrame = table.to_pandas(types_mapper=mapping.get, self_destruct=True)
    return df


def _derived_event_checks(events: pa.Table, products: pa.Table, users: pa.Table) -> dict[str, np.ndarray]:
    """Cross-table booleans: user known, product known, event not before the product's launch."""
    user_known = pc.is_in(events["user_id"], value_set=users["user_id"]).to_numpy(zero_copy_only=False)
    item_pos = pc.index_in(events["item_id"], value_set=products["item_id"])
    item_known = pc.is_valid(item_pos).to_numpy(zero_copy_only=False)
    created = products["created_at"].take(pc.fill_null(item_pos, 0))
    after = pc.greater_equal(events["ts"], created).to_numpy(zero_copy_only=False)
    after = np.where(item_known, np.nan_to_num(after.astype(float), nan=1.0) > 0, True)
    return {"user_is_known": user_known, "item_is_known": item_known, "ts_not_before_launch": after}


def _funnel_frame(events: pa.Table) -> pd.DataFrame:
    days = pc.floor_temporal(events["ts"], unit="day")
    df = pd.DataFrame(
        {
            "day": days.to_numpy(zero_copy_only=False),
            "event_type": events["event_type"].to_numpy(zero_copy_only=False),
        }
    )
    counts = df.groupby(["day", "event_type"]).size().unstack(fill_value=0)
    for t in EVENT_TYPES:
        if t not in counts.columns:
            counts[t] = 0
    out = counts[list(EVENT_TYPES)].reset_index()
    out["day"] = out["day"].astype(str)
    return out


def validate_dataset(root: Path) -> ValidationReport:
    """Run every suite on the dataset at ``root``; never raises for bad data, only reports it."""
    # Arrow-backed strings: compact, and what the type expectations name as StringDtype.
    with pd.option_context("mode.string_storage", "pyarrow"):
        return _validate(root)


def _validate(root: Path) -> ValidationReport:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GE fingerprints every in-memory batch below this size by hashing all its rows (35 s of 60 on
    # 10M events); the fingerprint only labels the batch, so skip it.
    pandas_execution_engine.HASH_THRESHOLD = 0

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("recommndr")
    tables = {name: read_table(root, name) for name in ("products", "users", "events")}
    now = datetime.now(UTC) + timedelta(days=1)
    derived: dict[str, np.ndarray] = {}
    funnel = None
    ev, pr, us = tables["events"], tables["products"], tables["users"]
    can_cross = all(
        c in t.column_names
        for t, c in (
            (ev, "user_id"),
            (ev, "item_id"),
            (ev, "ts"),
            (pr, "item_id"),
            (pr, "created_at"),
            (us, "user_id"),
        )
    )
    if can_cross:
        derived = _derived_event_checks(ev, pr, us)
    if "event_type" in ev.column_names and "ts" in ev.column_names:
        funnel = _funnel_frame(ev)
    row_counts = {name: t.num_rows for name, t in tables.items()}

    failures: list[Failure] = []
    evaluated = 0
    frames: list[tuple[str, pd.DataFrame, list[Any]]] = []
    for name in ("products", "users", "events"):
        table = tables.pop(name)
        present = set(table.column_names)
        df = _frame(table)
        del table
        exps = _suite(gx, name, present, now)
        if name == "events":
            for col, values in derived.items():
                df[col] = values
                exps.append(gx.expectations.ExpectColumnValuesToBeInSet(column=col, value_set=[True]))
        frames.append((name, df, exps))
    if funnel is not None and int(funnel["view"].sum() + funnel["add_to_cart"].sum()) > 0:
        frames.append(
            (
                "funnel",
                funnel,
                [
                    gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
                        column_A="view", column_B="add_to_cart", or_equal=True, mostly=FUNNEL_MOSTLY
                    ),
                    gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
                        column_A="add_to_cart", column_B="purchase", or_equal=True, mostly=FUNNEL_MOSTLY
                    ),
                ],
            )
        )
    for name, df, exps in frames:
        asset = source.add_dataframe_asset(name=name)
        batch = asset.add_batch_definition_whole_dataframe(f"{name}-all").get_batch(
            batch_parameters={"dataframe": df}
        )
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"{name}_suite", expectations=exps))
        id_col = ID_COLUMN[name] if ID_COLUMN[name] in df.columns else None
        fmt: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_ROWS}
        if id_col:
            fmt["unexpected_index_column_names"] = [id_col]
        result = batch.validate(suite, result_format=fmt)
        evaluated += len(result.results)
        failures += [_failure(name, r) for r in result.results if not r.success]
        log.info(
            "%s: %d expectations, %d failed",
            name,
            len(result.results),
            sum(not r.success for r in result.results),
        )
    return ValidationReport(str(root), not failures, evaluated, failures, row_counts)


def _suite(gx: Any, name: str, present: set[str], now: datetime) -> list[Any]:
    ex = gx.expectations
    schema = SCHEMAS[name]
    exps: list[Any] = [ex.ExpectColumnToExist(column=f.name) for f in schema]
    for f in schema:
        if f.name not in present:
            continue
        if pa.types.is_timestamp(f.type):
            exps.append(ex.ExpectColumnValuesToNotBeNull(column=f.name))
            exps.append(ex.ExpectColumnValuesToBeBetween(column=f.name, min_value=EARLIEST, max_value=now))
        else:
            exps.append(ex.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=PANDAS_TYPES[f.type]))
    key = ID_COLUMN[name]
    keys = {
        "products": ["item_id", "title", "category_l1", "price"],
        "users": ["user_id"],
        "events": ["event_id", "user_id", "item_id", "event_type", "session_id", "price", "quantity"],
    }[name]
    exps += [ex.ExpectColumnValuesToNotBeNull(column=c) for c in keys if c in present]
    if key in present:
        exps.append(ex.ExpectColumnValuesToBeUnique(column=key))
    if "price" in present:
        exps.append(ex.ExpectColumnValuesToBeBetween(column="price", min_value=0, strict_min=True))
    if name == "events":
        if "quantity" in present:
            exps.append(ex.ExpectColumnValuesToBeBetween(column="quantity", min_value=1))
        if "event_type" in present:
            exps.append(ex.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)))
    return exps


def _failure(table: str, r: Any) -> Failure:
    cfg = r.expectation_config
    kwargs = dict(cfg.kwargs)
    column = kwargs.get("column") or (
        f"{kwargs.get('column_A')} vs {kwargs.get('column_B')}" if "column_A" in kwargs else None
    )
    res = dict(r.result or {})
    samples = [_plain(s) for s in res.get("partial_unexpected_index_list") or []][:SAMPLE_ROWS]
    if not samples and res.get("partial_unexpected_list"):
        samples = [{"value": _plain_value(v)} for v in res["partial_unexpected_list"][:SAMPLE_ROWS]]
    if r.exception_info and r.exception_info.get("raised_exception"):
        detail = str(r.exception_info.get("exception_message"))
    elif cfg.type == "expect_column_to_exist":
        detail = f"column '{column}' is missing"
    elif "observed_value" in res:
        detail = f"observed {res['observed_value']}"
    else:
        bounds = {
            k: _plain_value(v)
            for k, v in kwargs.items()
            if k in ("min_value", "max_value", "value_set", "type_list", "mostly")
        }
        detail = ", ".join(f"{k}={v}" for k, v in bounds.items())
    return Failure(
        table, cfg.type, column, res.get("unexpected_count"), res.get("unexpected_percent"), detail, samples
    )


def _plain_value(v: Any) -> Any:
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, (pd.Timestamp, datetime)):
        return v.isoformat()
    if isinstance(v, float) and np.isnan(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_plain_value(x) for x in v][:10]
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)


def _plain(d: Any) -> dict[str, Any]:
    return {str(k): _plain_value(v) for k, v in dict(d).items()}
