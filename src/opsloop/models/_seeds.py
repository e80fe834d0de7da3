"""Seed CSVs: column types inferred as dbt does (integer, float8, boolean, date, timestamp, text),
overridable with ``column_types``."""

from __future__ import annotations

import csv
import re
from datetime import date, datetime
from pathlib import Path

_INT = re.compile(r"^[+-]?\d+$")
_NUM = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TS = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?Z?$")
NULLS = {"", "null"}


def read_csv(path: Path, delimiter: str = ",") -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        rows = list(reader)
    if not rows:
        return [], []
    header = [h.strip() for h in rows[0]]
    return header, [r for r in rows[1:] if r]


def infer_type(values: list[str]) -> str:
    present = [v for v in values if v.strip().lower() not in NULLS]
    if not present:
        return "text"
    if all(_INT.match(v) for v in present):
        return "integer" if all(abs(int(v)) < 2**31 for v in present) else "bigint"
    if all(_NUM.match(v) for v in present):
        return "float8"
    if all(v.lower() in ("true", "false") for v in present):
        return "boolean"
    if all(_DATE.match(v) for v in present):
        return "date"
    if all(_TS.match(v) for v in present):
        return "timestamp"
    return "text"


SeedValue = int | float | bool | date | datetime | str | None
"""A CSV cell converted to its column's type."""


def convert(value: str, type_: str) -> SeedValue:
    if value.strip().lower() in NULLS:
        return None
    t = type_.lower()
    if t in ("integer", "bigint", "int", "smallint", "int4", "int8", "hugeint", "tinyint") or t.startswith("int"):
        return int(value)
    if t in ("float8", "double", "float", "real", "double precision", "float4") or t.startswith(("decimal", "numeric")):
        return float(value)
    if t in ("boolean", "bool"):
        return value.lower() == "true"
    if t == "date":
        return date.fromisoformat(value)
    if t.startswith("timestamp"):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def seed_table(path: Path, column_types: dict[str, str], delimiter: str = ",") -> tuple[
        list[str], list[str], list[list[SeedValue]]]:
    """Columns, their SQL types and converted rows."""
    header, rows = read_csv(path, delimiter)
    types = []
    for i, name in enumerate(header):
        declared = column_types.get(name)
        types.append(declared or infer_type([r[i] if i < len(r) else "" for r in rows]))
    converted = [[convert(r[i] if i < len(r) else "", types[i]) if _builtin(types[i]) else
                  (None if (r[i] if i < len(r) else "").strip().lower() in NULLS else r[i])
                  for i in range(len(header))] for r in rows]
    return header, types, converted


def _builtin(type_: str) -> bool:
    t = type_.lower()
    return any(t.startswith(p) for p in ("int", "bigint", "float", "double", "real", "bool", "date", "timestamp",
                                          "decimal", "numeric", "smallint", "tinyint", "hugeint"))


def engine_type(type_: str, dialect: str) -> str:
    """A seed type in the engine's spelling."""
    if dialect == "clickhouse":
        mapping = {"integer": "Int32", "bigint": "Int64", "float8": "Float64", "boolean": "Bool", "date": "Date",
                   "timestamp": "DateTime64(6)", "text": "String"}
        inner = mapping.get(type_.lower())
        if inner is None:
            import sqlglot

            try:
                inner = sqlglot.exp.DataType.build(type_, dialect="duckdb").sql(dialect="clickhouse")
            except Exception:
                inner = "String"
            inner = inner.removeprefix("Nullable(").removesuffix(")") if inner.startswith("Nullable(") else inner
        return f"Nullable({inner})"
    if dialect == "duckdb" or (dialect == "postgres" and type_.lower() in _INFERRED):
        return type_
    import sqlglot

    try:
        return sqlglot.exp.DataType.build(type_, dialect="duckdb").sql(dialect=dialect)
    except Exception:
        return type_


_INFERRED = {"integer", "bigint", "float8", "boolean", "date", "timestamp", "text"}
