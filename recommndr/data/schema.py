"""The dataset schema of CONTRACT.md, and the one way tables are read and written.

A dataset is a folder holding ``products``, ``users`` and ``events``, each either one Parquet file
(``events.parquet``) or a folder of Parquet files (``events/``). Timestamps are UTC, microseconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from recommndr.errors import DataNotFoundError, DataSchemaError

TS = pa.timestamp("us", tz="UTC")
EVENT_TYPES: Final = ("view", "add_to_cart", "purchase")
TABLES: Final = ("products", "users", "events")
GROUND_TRUTH_DIR: Final = "ground_truth"

PRODUCTS_SCHEMA: Final = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("category_l1", pa.string()),
        pa.field("category_l2", pa.string()),
        pa.field("category_l3", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("created_at", TS),
    ]
)
USERS_SCHEMA: Final = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("signup_at", TS),
        pa.field("country", pa.string()),
        pa.field("segment", pa.string()),
    ]
)
EVENTS_SCHEMA: Final = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("event_type", pa.string()),
        pa.field("ts", TS),
        pa.field("session_id", pa.int64()),
        pa.field("price", pa.float64()),
        pa.field("quantity", pa.int32()),
    ]
)
SCHEMAS: Final = {"products": PRODUCTS_SCHEMA, "users": USERS_SCHEMA, "events": EVENTS_SCHEMA}


def table_path(root: Path, name: str) -> Path:
    """The file or folder that holds table ``name`` under dataset ``root``."""
    root = Path(root)
    for candidate in (root / f"{name}.parquet", root / name):
        if candidate.exists():
            return candidate
    raise DataNotFoundError(
        f"dataset {root} has no '{name}' table (expected {root / (name + '.parquet')} or {root / name}/)"
    )


def read_table(root: Path, name: str, columns: list[str] | None = None) -> pa.Table:
    """Read one table of a dataset as Arrow, with string columns of few values kept as dictionaries."""
    path = table_path(root, name)
    if path.is_dir():
        import pyarrow.dataset as pads  # imports pandas (~1 s): only where a folder is read

        table = pads.dataset(path, format="parquet").to_table(columns=columns)
    else:  # not pq.read_table, which goes through pyarrow.dataset too (the API's start-up)
        table = pq.ParquetFile(path).read(columns=columns)
    return table


def conform(table: pa.Table, name: str, source: str | None = None) -> pa.Table:
    """Select and cast ``table``'s columns to the schema of ``name``; raise a DataSchemaError naming
    the table, the column and a sample value when a column is missing or cannot be cast."""
    schema = SCHEMAS[name]
    where = source or name
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise DataSchemaError(
            f"{where}: missing column(s) {', '.join(missing)}; the '{name}' table needs "
            f"{', '.join(schema.names)} (found {', '.join(table.column_names)})"
        )
    arrays = []
    for field in schema:
        col = table.column(field.name)
        if col.type != field.type:
            try:
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                sample = next((v for v in col.to_pylist()[:1000] if v is not None), None)
                raise DataSchemaError(
                    f"{where}: column '{field.name}' has type {col.type} and cannot be read as "
                    f"{field.type} (sample value {sample!r}): {exc}"
                ) from exc
        if not field.nullable and col.null_count:
            raise DataSchemaError(f"{where}: column '{field.name}' has {col.null_count} empty value(s)")
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


def write_table(table: pa.Table, root: Path, name: str, row_group_size: int = 1_000_000) -> Path:
    """Write ``table`` as ``root/name.parquet`` atomically (a temp file renamed into place)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{name}.parquet"
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".parquet.tmp", dir=root)
    os.close(fd)
    try:
        pq.write_table(table, tmp, row_group_size=row_group_size, compression="zstd")
        stale_folder = root / name
        if stale_folder.is_dir():
            shutil.rmtree(stale_folder)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_dataset(root: Path, products: pa.Table, users: pa.Table, events: pa.Table) -> None:
    """Write the three tables of a dataset, each conformed to its schema."""
    for name, table in (("products", products), ("users", users), ("events", events)):
        write_table(conform(table, name), root, name)
