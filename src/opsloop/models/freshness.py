"""``opsloop source freshness``, as ``dbt source freshness`` runs it.

A source table with ``freshness:`` (``warn_after`` / ``error_after`` as ``{count, period}``, an optional
``filter``) and a ``loaded_at_field`` (on the source or the table, or in their ``config:``) is checked
with ``select max(<loaded_at_field>), current_timestamp from <table> [where <filter>]``: older than
``error_after`` is ``error``, than ``warn_after`` ``warn``, else ``pass``; an empty table is as old as
0001-01-01 (``error``, as in dbt). A table's ``freshness:`` is merged over its source's key by key;
``freshness: null`` turns it off. The results go to ``target/sources.json`` in dbt's schema (v3).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import Problem
from ..project.yaml_files import LocatedYaml
from ..warehouse import Warehouse
from .nodes import Source

PERIODS = {"minute": 60, "hour": 3600, "day": 86400}
SOURCES_SCHEMA = "https://schemas.getdbt.com/dbt/sources/v3.json"
_NEVER = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


def _part(entry: dict[str, object], key: str) -> object:
    config = entry.get("config")
    if isinstance(config, dict) and key in config:
        return config[key]
    return entry.get(key, _MISSING)


_MISSING = object()


def read_freshness(source: Source, src: dict[str, object], table: dict[str, object], doc: LocatedYaml,
                   tloc: tuple[str | int, ...], problems: list[Problem]) -> None:
    """The table's freshness criteria and loaded_at_field (the table's over its source's)."""
    field_ = _part(table, "loaded_at_field")
    if field_ is _MISSING:
        field_ = _part(src, "loaded_at_field")
    source.loaded_at_field = None if field_ is _MISSING or field_ is None else str(field_)
    outer = _part(src, "freshness")
    inner = _part(table, "freshness")
    if inner is None:
        source.freshness = None
        return
    merged: dict[str, object] = {}
    for part in (outer, inner):
        if isinstance(part, dict):
            merged.update(part)
    if not merged:
        return
    line = doc.line_of((*tloc, "freshness")) or source.line
    for key in ("warn_after", "error_after"):
        value = merged.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or not isinstance(value.get("count"), int) or \
                value.get("period") not in PERIODS:
            problems.append(Problem(source.file, line, f"source {source.source_name}.{source.name}: freshness "
                                    f"{key} should be {{count: <number>, period: minute|hour|day}}, not {value!r}"))
            return
    if merged.get("warn_after") or merged.get("error_after"):
        source.freshness = merged


@dataclass
class FreshnessResult:
    source: Source
    status: str
    """pass | warn | error | runtime error"""
    max_loaded_at: dt.datetime | None = None
    snapshotted_at: dt.datetime | None = None
    seconds: float = 0.0
    message: str = ""

    @property
    def age(self) -> float | None:
        if self.max_loaded_at is None or self.snapshotted_at is None:
            return None
        return (self.snapshotted_at - self.max_loaded_at).total_seconds()


def _utc(value: object) -> dt.datetime:
    if value is None:
        return _NEVER
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)


def _seconds(criterion: object) -> float | None:
    if not isinstance(criterion, dict) or criterion.get("count") is None:
        return None
    return float(criterion["count"]) * PERIODS[str(criterion["period"])]


def check(source: Source, wh: Warehouse, rel_text: str) -> FreshnessResult:
    """One source table's freshness, on ``wh``."""
    started = time.perf_counter()
    criteria = source.freshness or {}
    if not source.loaded_at_field:
        where = f"{source.file}:{source.line}" if source.line else source.file
        return FreshnessResult(source, "runtime error", message=f"{where}: source {source.source_name}.{source.name} "
                               "has freshness: but no loaded_at_field (DuckDB has no table metadata to tell when it "
                               "was loaded); set loaded_at_field: to its load-time column")
    sql = f"select max({source.loaded_at_field}) as max_loaded_at, current_timestamp as snapshotted_at from {rel_text}"
    if criteria.get("filter"):
        sql += f" where {criteria['filter']}"
    try:
        row = wh.query(sql).rows[0]
    except Exception as exc:
        where = f"{source.file}:{source.line}" if source.line else source.file
        return FreshnessResult(source, "runtime error", seconds=time.perf_counter() - started,
                               message=f"{where}: freshness of {source.source_name}.{source.name}: "
                               f"{str(exc).strip().splitlines()[0]}")
    loaded, now = _utc(row[0]), _utc(row[1])
    age = (now - loaded).total_seconds()
    status = "pass"
    warn, error = _seconds(criteria.get("warn_after")), _seconds(criteria.get("error_after"))
    if error is not None and age > error:
        status = "error"
    elif warn is not None and age > warn:
        status = "warn"
    message = "" if status == "pass" else (f"last loaded {_ago(age)} ago" if loaded != _NEVER else "no rows")
    return FreshnessResult(source, status, loaded, now, time.perf_counter() - started, message)


def _ago(seconds: float) -> str:
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds / size
            return f"{n:.1f} {name}s"
    return f"{seconds:.0f} seconds"


def _stamp(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def sources_json(project: str, results: list[FreshnessResult], elapsed: float) -> dict[str, object]:
    """dbt's sources.json (v3): one result per table checked (runtime errors are left out, as dbt does)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out: list[dict[str, object]] = []
    for r in results:
        if r.status == "runtime error":
            continue
        criteria = r.source.freshness or {}
        out.append({
            "unique_id": f"source.{project}.{r.source.source_name}.{r.source.name}",
            "max_loaded_at": _stamp(r.max_loaded_at), "snapshotted_at": _stamp(r.snapshotted_at),
            "max_loaded_at_time_ago_in_s": r.age, "status": r.status,
            "criteria": {"warn_after": criteria.get("warn_after") or {"count": None, "period": None},
                         "error_after": criteria.get("error_after") or {"count": None, "period": None},
                         "filter": criteria.get("filter")},
            "adapter_response": {"_message": "OK"}, "timing": [], "thread_id": "Thread-1",
            "execution_time": round(r.seconds, 4),
        })
    return {"metadata": {"dbt_schema_version": SOURCES_SCHEMA, "dbt_version": "1.11.0", "generated_at": now,
                         "invocation_id": str(uuid.uuid4()), "env": {}},
            "results": out, "elapsed_time": round(elapsed, 4)}


def write_sources_json(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))
