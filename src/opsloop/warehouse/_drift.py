"""Loading rows whose shape drifts: new columns are added and types widen (int -> bigint -> double -> text)
instead of failing; the caller gets a list of what changed, to report.

    changes = load_widening(warehouse, "raw", "hubspot_contacts", arrow_table)
    # ["added column raw.hubspot_contacts.phone VARCHAR", "widened raw.hubspot_contacts.score BIGINT -> DOUBLE"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Warehouse

if TYPE_CHECKING:
    import pyarrow as pa

_LADDER = ["boolean", "integer", "bigint", "double", "text"]
_SQL = {
    "duckdb": {"boolean": "BOOLEAN", "integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE", "text": "VARCHAR",
               "timestamp": "TIMESTAMPTZ", "date": "DATE", "json": "JSON"},
    "postgres": {"boolean": "boolean", "integer": "integer", "bigint": "bigint", "double": "double precision",
                 "text": "text", "timestamp": "timestamptz", "date": "date", "json": "jsonb"},
    "clickhouse": {"boolean": "Nullable(Bool)", "integer": "Nullable(Int32)", "bigint": "Nullable(Int64)",
                   "double": "Nullable(Float64)", "text": "Nullable(String)",
                   "timestamp": "Nullable(DateTime64(6, 'UTC'))", "date": "Nullable(Date)", "json": "Nullable(String)"},
}


def kind_of_sql(type_: str) -> str:
    """The ladder rung (or other kind) of an engine's column type."""
    t = type_.lower().removeprefix("nullable(").rstrip(")")
    if t in ("boolean", "bool"):
        return "boolean"
    if t in ("tinyint", "smallint", "integer", "int", "int4", "int2", "int8", "int16", "int32", "uint8", "uint16"):
        return "integer"
    if t in ("bigint", "int64", "uint32", "uint64", "hugeint"):
        return "bigint"
    if t.startswith(("double", "float", "real", "decimal", "numeric")):
        return "double"
    if t.startswith(("timestamp", "datetime")):
        return "timestamp"
    if t == "date":
        return "date"
    if t in ("json", "jsonb"):
        return "json"
    return "text"


def kind_of_arrow(type_: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_boolean(type_):
        return "boolean"
    if pa.types.is_integer(type_):
        return "integer" if type_.bit_width <= 32 and not pa.types.is_uint32(type_) else "bigint"
    if pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        return "double"
    if pa.types.is_timestamp(type_):
        return "timestamp"
    if pa.types.is_date(type_):
        return "date"
    if pa.types.is_null(type_):
        return "null"
    return "text"


def wider(current: str, incoming: str) -> str | None:
    """The type a column must become to hold ``incoming`` values; None when it already can."""
    if incoming in ("null", current):
        return None
    if current in _LADDER and incoming in _LADDER:
        return incoming if _LADDER.index(incoming) > _LADDER.index(current) else None
    if current == "text":
        return None
    return "text"


def load_widening(wh: Warehouse, schema: str, table: str, data: pa.Table) -> list[str]:
    """Append ``data`` (an Arrow table) to ``schema.table``, creating it, adding columns and widening
    types as needed. Returns one line per change made."""
    from .sql import quote, relation

    sql_types = _SQL.get(wh.dialect, _SQL["duckdb"])
    target = relation(schema, table, wh.dialect)
    changes: list[str] = []
    incoming = {f.name: kind_of_arrow(f.type) for f in data.schema}
    existing = {c: t for c, t in wh.columns(schema, table)}
    if not existing:
        wh.ensure_schema(schema)
        cols = ", ".join(f"{quote(c, wh.dialect)} {sql_types['text' if k == 'null' else k]}"
                         for c, k in incoming.items())
        suffix = f" {wh.TABLE_SUFFIX}" if wh.TABLE_SUFFIX else ""
        wh.execute(f"CREATE TABLE IF NOT EXISTS {target} ({cols}){suffix}")
        changes.append(f"created {schema}.{table} with {len(incoming)} columns")
    else:
        lower = {c.lower(): (c, t) for c, t in existing.items()}
        for col, kind in incoming.items():
            found = lower.get(col.lower())
            if found is None:
                new_type = sql_types["text" if kind == "null" else kind]
                wh.execute(f"ALTER TABLE {target} ADD COLUMN {quote(col, wh.dialect)} {new_type}")
                changes.append(f"added column {schema}.{table}.{col} {new_type}")
                continue
            name, current_sql = found
            goal = wider(kind_of_sql(current_sql), kind)
            if goal is None:
                continue
            new_type = sql_types[goal]
            q = quote(name, wh.dialect)
            if wh.dialect == "clickhouse":
                wh.execute(f"ALTER TABLE {target} MODIFY COLUMN {q} {new_type}")
            elif wh.dialect == "postgres":
                wh.execute(f"ALTER TABLE {target} ALTER COLUMN {q} TYPE {new_type} USING {q}::{new_type}")
            else:
                wh.execute(f"ALTER TABLE {target} ALTER COLUMN {q} TYPE {new_type}")
            changes.append(f"widened {schema}.{table}.{name} {current_sql} -> {new_type}")
    if data.num_rows:
        wh.insert_arrow(target, data)
    return changes
