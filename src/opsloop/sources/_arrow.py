"""Pages of JSON records to Arrow tables: the input of dlt's Arrow path (no row-by-row normaliser).

Nested values stay on the row: a list or object becomes an Arrow list/struct, which dlt lands in DuckDB
as a ``JSON`` column (``SELECT tags->>'$[0].name'``, ``unnest(from_json(tags, '["json"]'))``). A field
whose values disagree in type inside one page (a number here, text there) is loaded as text.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, separators=(",", ":"))


def records_to_arrow(records: list[dict[str, Any]]) -> pa.Table:
    """One Arrow table for a page; tolerant of mixed types and of keys missing from some records.

    (``pa.Table.from_pylist`` takes its columns from the first record only, so the union of keys is
    collected first.)
    """
    if not records:
        return pa.table({})
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record))
    columns: dict[str, pa.Array] = {}
    for key in keys:
        values = [r.get(key) for r in records]
        try:
            columns[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[key] = pa.array([_json_text(v) for v in values], type=pa.string())
    return pa.table(columns)


def column_max(table: pa.Table, column: str) -> Any:
    """The largest value of ``column`` in ``table`` (None when absent or all null)."""
    import pyarrow.compute as pc

    if column not in table.column_names or table.num_rows == 0:
        return None
    col = table.column(column)
    if pa.types.is_null(col.type):
        return None
    value = pc.max(col).as_py()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
