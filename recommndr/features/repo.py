"""The Feast repository: ``feature_store.yaml`` for the SQLite (default) or Redis online store,
``apply``, and pushing users' records through Feast (the path the streaming job takes)."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import orjson
import pandas as pd
import polars as pl
import yaml

from recommndr.data.schema import EVENT_TYPES
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
        pl.col("item_id").filter(pl.col("event_type") == "add_to_cart").unique(maintain_order=True)
        .head(RECENT_MAX).alias("carted_items"),
    )  # fmt: skip
    records = {
        int(r["user_id"]): UserRealtime(
            recent_items=list(r["recent_items"]),
            purchased_items=list(r["purchased_items"]),
            last_event_us=int(r["last_event_us"]),
            events=int(r["events"]),
            carted_items=list(r["carted_items"]),
        )
        for r in recent.iter_rows(named=True)
    }
    return records, int(events["ts_us"].max())  # type: ignore[arg-type]


@dataclass(frozen=True)
class EventsRead:
    """Events read from the API's log (or a Parquet table), and how many lines were skipped."""

    events: pl.DataFrame  # user_id, item_id, event_type, ts_us
    skipped: int  # lines that were not an event: malformed JSON, a missing or invalid field
    files: int


_JSONL_SCHEMA: Final = {"user_id": pl.Int64, "item_id": pl.Int64, "event_type": pl.String, "ts": pl.String}
_API_TS: Final = "%Y-%m-%dT%H:%M:%S%.f%:z"  # what the API writes (datetime.isoformat, UTC)
_CHUNK_BYTES: Final = 4 << 20  # a damaged file is re-read in chunks (~16k lines); a failing one line by line


def _ndjson(source: Path | bytes) -> pl.DataFrame:
    """Parse JSON lines; a wrong type, a line that is not an object or lacks a field becomes a
    null (counted by the caller); malformed JSON raises ``PolarsError``."""
    return pl.read_ndjson(
        io.BytesIO(source) if isinstance(source, bytes) else source, schema=_JSONL_SCHEMA, ignore_errors=True
    )


def _lines_one_by_one(chunk: bytes) -> tuple[list[pl.DataFrame], int]:
    """The chunk's well-formed lines (a Python loop, only over a chunk that failed to parse)."""
    good, bad = [], 0
    for line in chunk.split(b"\n"):
        if not line.strip():
            continue
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += 1
        else:
            good.append(line)
    try:
        return [_ndjson(b"\n".join(good))], bad
    except pl.exceptions.PolarsError:  # polars refuses a line orjson accepted: find it
        frames = []
        for line in good:
            try:
                frames.append(_ndjson(line))
            except pl.exceptions.PolarsError:
                bad += 1
        return frames, bad


def _parse_ts(ts: pl.Series) -> pl.Series:
    """ISO-8601 strings as UTC datetimes (null when unparseable): the API's own format first
    (~25x faster than polars' format inference), inference only for the strings it misses."""
    parsed = ts.str.to_datetime(_API_TS, time_zone="UTC", strict=False)
    missed = parsed.is_null() & ts.is_not_null()
    if missed.any():
        idx = missed.arg_true()
        parsed = parsed.scatter(idx, ts.gather(idx).str.to_datetime(time_zone="UTC", strict=False))
    return parsed


def _read_jsonl(path: Path) -> tuple[pl.DataFrame, int]:
    """One JSON-lines file as ``user_id, item_id, event_type, ts`` (ts a string) and the number of
    malformed lines skipped. A healthy file is parsed in one call; a damaged one (a torn line) in
    chunks of lines, and only a chunk that fails, line by line."""
    try:
        return _ndjson(path), 0
    except pl.exceptions.PolarsError:
        pass
    data = path.read_bytes()
    frames, bad, start = [], 0, 0
    while start < len(data):
        nl = data.find(b"\n", start + _CHUNK_BYTES - 1)  # chunks end at a line's end
        cut = len(data) if nl < 0 else nl + 1
        chunk, start = data[start:cut], cut
        try:
            frames.append(_ndjson(chunk))
        except pl.exceptions.PolarsError:
            good, n = _lines_one_by_one(chunk)
            frames.extend(good)
            bad += n
    return (pl.concat(frames) if frames else _ndjson(b"")), bad


def read_event_log(path: Path) -> EventsRead:
    """The API's JSON-lines event log (a file or a folder of ``events-*.jsonl``) or an events
    Parquet table, as ``user_id, item_id, event_type, ts_us``. A line that is not an event
    (malformed JSON such as a line torn by a crash, a missing or invalid field, an unknown event
    type) is skipped and counted, with a warning, never failing the whole file."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if path.is_dir() and not files:
        files = sorted(path.glob("*.parquet"))
    if not files:
        raise UserInputError(f"{path}: no event files (*.jsonl or *.parquet)")
    frames, skipped = [], 0
    for f in files:
        if f.suffix == ".jsonl":
            df, bad = _read_jsonl(f)
            df = df.with_columns(_parse_ts(df["ts"]))
        elif f.suffix == ".parquet":
            df, bad = pl.read_parquet(f, columns=["user_id", "item_id", "event_type", "ts"]), 0
        else:
            raise UserInputError(f"{f}: not a .jsonl or .parquet file")
        typed = df.select(
            pl.col("user_id").cast(pl.Int64, strict=False),
            pl.col("item_id").cast(pl.Int64, strict=False),
            pl.col("event_type").cast(pl.String),
            pl.col("ts").dt.epoch("us").alias("ts_us"),
        )
        valid = typed.filter(
            pl.all_horizontal(pl.all().is_not_null())
            & (pl.col("user_id") >= 0)
            & (pl.col("item_id") >= 0)
            & pl.col("event_type").is_in(EVENT_TYPES)
        )
        bad += typed.height - valid.height
        if bad:
            log.warning("%s: skipped %d line(s) that are not events (malformed or missing a field)", f, bad)
        skipped += bad
        frames.append(valid)
    if skipped and len(files) > 1:
        log.warning("%s: skipped %d bad line(s) in %d files", path, skipped, len(files))
    return EventsRead(pl.concat(frames), skipped, len(files))


def read_events(path: Path) -> pl.DataFrame:
    """:func:`read_event_log`'s events (``user_id, item_id, event_type, ts_us``)."""
    return read_event_log(path).events
