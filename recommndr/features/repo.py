"""The Feast repository: ``feature_store.yaml`` for the SQLite (default) or Redis online store,
``apply``, and pushing users' records through Feast (the path the streaming job takes)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import polars as pl
import yaml

from recommndr.errors import UserInputError
from recommndr.features.online import UserRealtime
from recommndr.features.schema import FIELDS, JOIN_KEY, PROJECT, PUSH_SOURCE, RECENT_MAX

log = logging.getLogger(__name__)


def redis_connection_string(url: str) -> str:
    """``redis://[:password@]host:port/db`` -> Feast's ``host:port,db=N[,password=...]``."""
    u = urlparse(url)
    if u.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis:// URL: {url!r}")
    parts = [f"{u.hostname or '127.0.0.1'}:{u.port or 6379}", f"db={(u.path or '/0').strip('/') or 0}"]
    if u.password:
        parts.append(f"password={u.password}")
    if u.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def write_repo(repo: Path, online: str, sqlite_path: Path, redis_url: str) -> Path:
    """Write ``feature_store.yaml`` (and the offline batch file's folder) into ``repo``."""
    repo.mkdir(parents=True, exist_ok=True)
    store: dict[str, Any]
    if online == "redis":
        store = {"type": "redis", "connection_string": redis_connection_string(redis_url)}
    else:
        store = {"type": "sqlite", "path": str(Path(sqlite_path).resolve())}
    cfg = {
        "project": PROJECT,
        "provider": "local",
        "registry": {"registry_type": "file", "path": str((repo / "registry.db").resolve())},
        "online_store": store,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return repo


def apply(repo: Path) -> Any:
    """Register the definitions (``feast apply``) and return the ``FeatureStore``."""
    from feast import FeatureStore

    from recommndr.features.definitions import definitions

    offline = repo / "offline" / "user_realtime.parquet"
    offline.parent.mkdir(parents=True, exist_ok=True)
    if not offline.exists():
        records_frame({}, 0).to_parquet(offline)
    fs = FeatureStore(repo_path=str(repo))
    fs.apply(definitions(offline.resolve()))
    return fs


def records_frame(records: dict[int, UserRealtime], ts_us: int) -> pd.DataFrame:
    """Users' records as the push source's frame (one row per user)."""
    ts = pd.Timestamp(ts_us, unit="us", tz="UTC")
    frame = pd.DataFrame(
        {
            JOIN_KEY: pd.Series(list(records), dtype="int64"),
            **{n: [getattr(r, n) for r in records.values()] for n in FIELDS},
            "event_ts": pd.Series([ts] * len(records), dtype="datetime64[us, UTC]"),
        }
    )
    for n, kind in FIELDS.items():
        if kind == "int64":
            frame[n] = frame[n].astype("int64")
    return frame


def push(fs: Any, records: dict[int, UserRealtime], ts_us: int) -> int:
    """Write users' records to the online store through Feast's push source."""
    from feast.data_source import PushMode

    if records:
        fs.push(PUSH_SOURCE, records_frame(records, ts_us), to=PushMode.ONLINE)
    return len(records)


def records_from_events(events: pl.DataFrame) -> tuple[dict[int, UserRealtime], int]:
    """Users' records from events (columns ``user_id``, ``item_id``, ``event_type``, ``ts_us``),
    vectorised: the same fold as the API's (newest first, distinct, at most RECENT_MAX)."""
    if events.height == 0:
        return {}, 0
    newest = events.sort("ts_us", descending=True)
    recent = newest.group_by("user_id", maintain_order=True).agg(
        pl.col("item_id").unique(maintain_order=True).head(RECENT_MAX).alias("recent_items"),
        pl.col("item_id").filter(pl.col("event_type") == "purchase").unique(maintain_order=True)
        .head(RECENT_MAX).alias("purchased_items"),
        pl.col("ts_us").max().alias("last_event_us"),
        pl.len().alias("events"),
    )  # fmt: skip
    records = {
        int(r["user_id"]): UserRealtime(
            list(r["recent_items"]), list(r["purchased_items"]), int(r["last_event_us"]), int(r["events"])
        )
        for r in recent.iter_rows(named=True)
    }
    return records, int(events["ts_us"].max())  # type: ignore[arg-type]


def read_events(path: Path) -> pl.DataFrame:
    """The API's JSON-lines event log (a file or a folder of ``events-*.jsonl``) or an events
    Parquet table, as ``user_id, item_id, event_type, ts_us``."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if path.is_dir() and not files:
        files = sorted(path.glob("*.parquet"))
    if not files:
        raise UserInputError(f"{path}: no event files (*.jsonl or *.parquet)")
    frames = []
    for f in files:
        if f.suffix == ".jsonl":
            df = pl.read_ndjson(f, schema_overrides={"ts": pl.String}).select(
                "user_id", "item_id", "event_type", pl.col("ts").str.to_datetime(time_zone="UTC").alias("ts")
            )
        elif f.suffix == ".parquet":
            df = pl.read_parquet(f, columns=["user_id", "item_id", "event_type", "ts"])
        else:
            raise UserInputError(f"{f}: not a .jsonl or .parquet file")
        frames.append(
            df.select(
                pl.col("user_id").cast(pl.Int64),
                pl.col("item_id").cast(pl.Int64),
                pl.col("event_type").cast(pl.String),
                pl.col("ts").dt.epoch("us").alias("ts_us"),
            )
        )
    return pl.concat(frames)
