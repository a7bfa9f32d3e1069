from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recommndr.data.schema import conform, read_table, table_path, write_table
from recommndr.errors import DataNotFoundError, DataSchemaError

pytestmark = pytest.mark.unit


def _products(**over: object) -> pa.Table:
    cols: dict[str, object] = {
        "item_id": [1, 2],
        "title": ["a", "b"],
        "category_l1": ["x", "x"],
        "category_l2": ["y", "y"],
        "category_l3": ["z", "z"],
        "brand": ["b", "b"],
        "price": [1.5, 2.0],
        "created_at": pa.array([0, 1], pa.timestamp("us", tz="UTC")),
    }
    cols.update(over)
    return pa.table(cols)


def test_conform_casts_compatible_types() -> None:
    t = conform(_products(item_id=pa.array([1, 2], pa.int32())), "products")
    assert t.schema.field("item_id").type == pa.int64()


def test_conform_names_missing_column() -> None:
    with pytest.raises(DataSchemaError, match=r"missing column\(s\) price"):
        conform(_products().drop(["price"]), "products")


def test_conform_names_uncastable_column_and_sample() -> None:
    with pytest.raises(DataSchemaError, match=r"column 'price'.*'cheap'"):
        conform(_products(price=["cheap", "1.0"]), "products")


def test_write_read_roundtrip_and_folder_tables(tmp_path: Path) -> None:
    write_table(_products(), tmp_path, "products")
    assert read_table(tmp_path, "products").num_rows == 2
    folder = tmp_path / "other" / "products"
    folder.mkdir(parents=True)
    pq.write_table(_products(), folder / "part-0.parquet")
    pq.write_table(_products(), folder / "part-1.parquet")
    assert read_table(tmp_path / "other", "products").num_rows == 4
    with pytest.raises(DataNotFoundError, match="'events'"):
        table_path(tmp_path, "events")
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temp file
