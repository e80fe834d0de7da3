"""Schema drift between a page and the warehouse table it lands in.

New fields are added as columns by dlt. A changed type is widened in place (``BIGINT`` -> ``DOUBLE`` ->
``VARCHAR``; ``DATE`` -> ``TIMESTAMP``; any scalar -> ``VARCHAR``), both in the table and in dlt's stored
schema. A change that cannot be widened (a scalar field that now holds a list or object, or the
reverse) is reported with the field and both types, and that field is left out of the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from dlt.common.data_types import TDataType

NUMERIC = ("BOOLEAN", "BIGINT", "DOUBLE")

DLT_TYPES: dict[str, TDataType] = {"BOOLEAN": "bool", "BIGINT": "bigint", "DOUBLE": "double", "VARCHAR": "text",
                                   "JSON": "json", "TIMESTAMP": "timestamp", "DATE": "date"}


@dataclass
class DriftNote:
    table: str
    column: str
    old: str
    new: str
    widened: bool

    def __str__(self) -> str:
        if self.widened:
            return f"{self.table}.{self.column}: widened {self.old} -> {self.new}"
        return (f"{self.table}.{self.column}: the warehouse has {self.old} but the source now sends {self.new}; "
                "this cannot be widened, so the field was left out (change the column by hand, or pull with "
                "--full-refresh to rebuild the table)")


def warehouse_kind(sql_type: str) -> str:
    t = sql_type.upper()
    if t.startswith(("DECIMAL", "DOUBLE", "FLOAT", "REAL", "NUMERIC")):
        return "DOUBLE"
    if t in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER"):
        return "BIGINT"
    if t.startswith("TIMESTAMP"):
        return "TIMESTAMP"
    if t in ("BOOLEAN", "DATE", "JSON"):
        return t
    if t == "JSONB":
        return "JSON"
    if t.endswith("[]") or t.startswith(("STRUCT", "MAP", "LIST")):
        return "JSON"
    return "VARCHAR"


def arrow_kind(dtype: pa.DataType) -> str | None:
    if pa.types.is_null(dtype):
        return None
    if pa.types.is_boolean(dtype):
        return "BOOLEAN"
    if pa.types.is_integer(dtype):
        return "BIGINT"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "DOUBLE"
    if pa.types.is_timestamp(dtype):
        return "TIMESTAMP"
    if pa.types.is_date(dtype):
        return "DATE"
    if pa.types.is_nested(dtype):
        return "JSON"
    return "VARCHAR"


def field_kind(field: pa.Field) -> str | None:
    """Like ``arrow_kind``, and a string column marked as JSON text is ``JSON``."""
    if field.metadata and field.metadata.get(b"opsloop") == b"json":
        return "JSON"
    return arrow_kind(field.type)


def widen(old: str, new: str) -> str | None:
    """The narrowest kind that holds both, or None when there is none short of changing meaning."""
    if old == new:
        return old
    if "JSON" in (old, new):
        return None
    if old in NUMERIC and new in NUMERIC:
        return max(old, new, key=NUMERIC.index)
    if {old, new} == {"DATE", "TIMESTAMP"}:
        return "TIMESTAMP"
    return "VARCHAR"


_ARROW_FOR = {"BOOLEAN": pa.bool_(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(), "VARCHAR": pa.string(),
              "TIMESTAMP": pa.timestamp("us", tz="UTC"), "DATE": pa.date32()}


def cast_column(table: pa.Table, name: str, kind: str) -> pa.Table:
    index = table.column_names.index(name)
    column = table.column(name)
    if kind == "VARCHAR" and pa.types.is_boolean(column.type):
        column = pa.chunked_array([pa.array([None if v is None else ("true" if v else "false")
                                             for v in column.to_pylist()], type=pa.string())])
    else:
        column = column.cast(_ARROW_FOR[kind])
    return table.set_column(index, name, column)


def reconcile(
    table: pa.Table, table_name: str, existing: dict[str, str]
) -> tuple[pa.Table, dict[str, str], list[DriftNote]]:
    """Align ``table`` (normalised column names) with the ``existing`` warehouse kinds.

    Returns the page to load, the columns to widen in the warehouse (name -> new kind) and notes.
    """
    widen_to: dict[str, str] = {}
    notes: list[DriftNote] = []
    for name in list(table.column_names):
        old = existing.get(name)
        if old is None:
            continue
        new = field_kind(table.schema.field(name))
        if new is None:
            if old != "JSON":
                table = table.set_column(table.column_names.index(name), name,
                                         pa.nulls(table.num_rows, _ARROW_FOR[old]))
            continue
        if new == old:
            continue
        target = widen(old, new)
        if target is None:
            notes.append(DriftNote(table_name, name, old, new, widened=False))
            table = table.drop_columns([name])
            continue
        if target != old:
            widen_to[name] = target
            notes.append(DriftNote(table_name, name, old, target, widened=True))
        if target != new:
            table = cast_column(table, name, target)
    return table, widen_to, notes
