"""Pages of JSON records to Arrow tables: the input of dlt's Arrow path (no row-by-row normaliser).

Nested values stay on the row: a list or object becomes an Arrow list/struct, which dlt lands in DuckDB
as a ``JSON`` column (``SELECT tags->>'$[0].name'``, ``unnest(from_json(tags, '["json"]'))``). A field
whose values disagree in type inside one page (a number here, text there) is loaded as text.
"""

from __future__ import annotations

import json

import pyarrow as pa


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, separators=(",", ":"))


JSON_META = {b"opsloop": b"json"}
"""Field metadata of a string column that holds JSON text (loaded into a DuckDB ``JSON`` column)."""


def records_to_arrow(records: list[dict[str, object]]) -> pa.Table:
    """One Arrow table for a page; tolerant of mixed types and of keys missing from some records.

    Nested values (lists, objects) become JSON text in a string column marked with ``JSON_META``: that is
    about three times faster than building Arrow list/struct arrays from Python objects, and they land
    in the same ``JSON`` column either way. (``pa.Table.from_pylist`` takes its columns from the first
    record only, so the union of keys is collected first.)
    """
    if not records:
        return pa.table({})
    import orjson

    dumps = orjson.dumps
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record))
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    for key in keys:
        values = [r.get(key) for r in records]
        probe = next((v for v in values if v is not None), None)
        if isinstance(probe, list | dict):
            try:
                text = [None if v is None else dumps(v).decode() for v in values]
            except TypeError:
                text = [_json_text(v) for v in values]
            arrays.append(pa.array(text, type=pa.string()))
            fields.append(pa.field(key, pa.string(), metadata=JSON_META))
            continue
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            array = pa.array([_json_text(v) for v in values], type=pa.string())
        arrays.append(array)
        fields.append(pa.field(key, array.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def json_columns(table: pa.Table) -> list[str]:
    """Columns of ``table`` that hold JSON text (see ``records_to_arrow``)."""
    return [f.name for f in table.schema if f.metadata and f.metadata.get(b"opsloop") == b"json"]


def column_max(table: pa.Table, column: str) -> object:
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
