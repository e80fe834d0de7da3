"""Segments: audiences over the golden record (and models), with membership history and enter/exit events.

Each evaluation computes the members now, diffs them against ``identity.segment_members`` with two anti-joins,
and writes history rows and ``segment.entered`` / ``segment.exited`` events (to ``identity.outbox``) in the
same transaction, so an event is written once per change however often the segment is evaluated.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from ..narrow import as_int
from ._sql import Conn, IdentityError, expression, literal
from .config import Condition, ConditionGroup, SegmentConfig

if TYPE_CHECKING:
    from sqlglot import exp

GOLDEN = "identity.golden_records"

SCHEMA_SQL = [
    "CREATE SCHEMA IF NOT EXISTS identity",
    "CREATE TABLE IF NOT EXISTS identity.segment_members (segment VARCHAR, person_id VARCHAR, "
    "entered_at TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS identity.segment_history (segment VARCHAR, person_id VARCHAR, event VARCHAR, "
    "changed_at TIMESTAMPTZ, run_id VARCHAR)",
    "CREATE TABLE IF NOT EXISTS identity.segment_runs (segment VARCHAR, run_id VARCHAR, evaluated_at TIMESTAMPTZ, "
    "members BIGINT, entered BIGINT, exited BIGINT, seconds DOUBLE)",
    "CREATE TABLE IF NOT EXISTS identity.outbox (key VARCHAR, name VARCHAR, payload VARCHAR, "
    "created_at TIMESTAMPTZ)",
]


@dataclass
class SegmentResult:
    segment: str
    members: int
    entered: int
    exited: int
    first: bool
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {"segment": self.segment, "members": self.members, "entered": self.entered, "exited": self.exited,
                "first": self.first, "seconds": self.seconds}


def _condition_sql(cond: Condition) -> exp.Expr:
    from sqlglot import exp

    col = exp.column(cond.field, quoted=True)
    op = cond.op
    value = getattr(cond, op)
    if op == "equals":
        return exp.EQ(this=col, expression=exp.convert(value))
    if op == "not_equals":
        return exp.NullSafeNEQ(this=col, expression=exp.convert(value))
    if op in ("in_", "not_in"):
        within = exp.In(this=col, expressions=[exp.convert(v) for v in value])
        return within if op == "in_" else exp.Not(this=within)
    if op in ("gt", "gte", "lt", "lte"):
        cls = {"gt": exp.GT, "gte": exp.GTE, "lt": exp.LT, "lte": exp.LTE}[op]
        return cls(this=col, expression=exp.convert(value))
    if op == "contains":
        return exp.func("contains", exp.cast(col, "VARCHAR"), exp.convert(value))
    if op == "is_null":
        node = exp.Is(this=col, expression=exp.Null())
        return node if value else exp.Not(this=node)
    if op == "within_last":
        from .._durations import parse_duration

        seconds = parse_duration(value)
        return exp.GTE(this=col, expression=exp.Sub(
            this=exp.func("now"), expression=exp.Interval(this=exp.Literal.string(f"{seconds} seconds"))))
    raise AssertionError(op)


def _group_sql(group: ConditionGroup) -> exp.Expr:
    from sqlglot import exp

    parts = [(_group_sql(c) if isinstance(c, ConditionGroup) else _condition_sql(c))
             for c in (group.all if group.all is not None else group.any or [])]
    if not parts:
        return exp.true() if group.all is not None else exp.false()
    combine = exp.and_ if group.all is not None else exp.or_
    return combine(*[exp.Paren(this=p) for p in parts])


def segment_sql(seg: SegmentConfig) -> str:
    """A SELECT of the segment's person_ids, built from its where:, sql: or conditions:."""
    if seg.where is not None:
        return f"SELECT person_id FROM {GOLDEN} WHERE ({expression(seg.where)})"
    if seg.sql is not None:
        return f"SELECT person_id FROM ({expression(seg.sql)}) AS seg"
    assert seg.conditions is not None
    return f"SELECT person_id FROM {GOLDEN} WHERE {_group_sql(seg.conditions).sql(dialect='duckdb')}"


def reads(seg: SegmentConfig) -> set[str]:
    """Relations (``schema.table``) a segment reads, so it is re-evaluated when one of them is rebuilt."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(segment_sql(seg), dialect="duckdb")
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    out = set()
    for table in tree.find_all(exp.Table):
        if table.name in ctes and not table.db:
            continue
        out.add(f"{table.db}.{table.name}" if table.db else table.name)
    return out


def ensure_schema(db: Conn) -> None:
    for sql in SCHEMA_SQL:
        db.x(sql)


def _golden_exists(db: Conn) -> bool:
    return bool(db.one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'identity' "
                       "AND table_name = 'golden_records'"))


def _members_now(db: Conn, seg: SegmentConfig) -> None:
    if not _golden_exists(db):
        raise IdentityError("there is no golden record yet; run `opsloop identity build` first")
    try:
        db.x(f"CREATE OR REPLACE TEMP TABLE _seg_now AS SELECT DISTINCT person_id FROM ({segment_sql(seg)}) "
             "AS s WHERE person_id IS NOT NULL")
    except Exception as exc:
        raise IdentityError(f"segments/{seg.name}.yml: the segment's SQL failed: {exc}. Fix the condition; "
                            f"`opsloop segments preview {seg.name}` shows the result") from exc


def evaluate(db: Conn, seg: SegmentConfig) -> SegmentResult:
    """Evaluate one segment, record membership changes and queue their events."""
    started = time.perf_counter()
    ensure_schema(db)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "_" + uuid.uuid4().hex[:6]
    name = literal(seg.name)
    with db.transaction():
        _members_now(db, seg)
        first = not db.one("SELECT count(*) FROM identity.segment_runs WHERE segment = ?", (seg.name,))
        db.x(f"""CREATE OR REPLACE TEMP TABLE _seg_diff AS
                 SELECT person_id, 'entered' AS event FROM _seg_now n
                 WHERE person_id NOT IN (SELECT person_id FROM identity.segment_members WHERE segment = {name})
                 UNION ALL
                 SELECT person_id, 'exited' FROM identity.segment_members
                 WHERE segment = {name} AND person_id NOT IN (SELECT person_id FROM _seg_now)""")
        entered = as_int(db.one("SELECT count(*) FROM _seg_diff WHERE event = 'entered'"))
        exited = as_int(db.one("SELECT count(*) FROM _seg_diff WHERE event = 'exited'"))
        db.x(f"INSERT INTO identity.segment_history SELECT {name}, person_id, event, now(), ? FROM _seg_diff",
             (run_id,))
        if not first or seg.initial_events:
            golden = "identity.golden_records"
            db.x(f"""INSERT INTO identity.outbox
                     SELECT 'segment:' || {name} || ':' || ? || ':' || d.event || ':' || d.person_id,
                            'segment.' || d.event,
                            CAST(json_object('segment', {name}, 'person_id', d.person_id, 'profile',
                                             CASE WHEN g.person_id IS NULL THEN '{{}}'::JSON ELSE to_json(g) END)
                                 AS VARCHAR), now()
                     FROM _seg_diff d LEFT JOIN {golden} g ON g.person_id = d.person_id
                     ORDER BY d.event, d.person_id""", (run_id,))
        db.x(f"DELETE FROM identity.segment_members WHERE segment = {name} AND person_id IN "
             "(SELECT person_id FROM _seg_diff WHERE event = 'exited')")
        db.x(f"INSERT INTO identity.segment_members SELECT {name}, person_id, now() FROM _seg_diff "
             "WHERE event = 'entered'")
        members = as_int(db.one("SELECT count(*) FROM _seg_now"))
        seconds = round(time.perf_counter() - started, 4)
        db.x("INSERT INTO identity.segment_runs VALUES (?, ?, now(), ?, ?, ?, ?)",
             (seg.name, run_id, members, entered, exited, seconds))
    return SegmentResult(seg.name, members, entered, exited, first, seconds)


class SegmentActivity(TypedDict):
    """A segment's page: ``members`` (how many now), the newest members, entries and exits, and runs."""

    segment: str
    members: int
    member_rows: list[dict[str, object]]
    """``person_id``, ``entered_at`` and ``email`` (None without a golden ``email`` field), newest first."""
    changes: list[dict[str, object]]
    """``person_id``, ``event`` (entered/exited), ``changed_at`` and ``email``, newest first."""
    runs: list[dict[str, object]]
    """``evaluated_at``, ``members``, ``entered``, ``exited``, ``seconds`` of the last 20 evaluations."""


def preview(db: Conn, seg: SegmentConfig, limit: int = 20) -> dict[str, object]:
    """Members now, who would enter and exit, and a sample — without recording anything."""
    ensure_schema(db)
    _members_now(db, seg)
    name = literal(seg.name)
    entering = as_int(db.one(f"SELECT count(*) FROM _seg_now WHERE person_id NOT IN "
                          f"(SELECT person_id FROM identity.segment_members WHERE segment = {name})"))
    exiting = as_int(db.one(f"SELECT count(*) FROM identity.segment_members WHERE segment = {name} AND person_id "
                         "NOT IN (SELECT person_id FROM _seg_now)"))
    sample = db.dicts(f"SELECT g.* FROM _seg_now n JOIN {GOLDEN} g USING (person_id) ORDER BY g.person_id "
                      f"LIMIT {int(limit)}")
    return {"segment": seg.name, "sql": segment_sql(seg), "members": as_int(db.one("SELECT count(*) FROM _seg_now")),
            "would_enter": entering, "would_exit": exiting, "sample": sample}


def summary(db: Conn, segs: dict[str, SegmentConfig]) -> list[dict[str, object]]:
    ensure_schema(db)
    counts = {str(s): n for s, n in db.rows("SELECT segment, count(*) FROM identity.segment_members GROUP BY segment")}
    last = {r[0]: r[1:] for r in db.rows(
        "SELECT segment, evaluated_at, entered, exited FROM identity.segment_runs "
        "QUALIFY row_number() OVER (PARTITION BY segment ORDER BY evaluated_at DESC) = 1")}
    out = []
    for name, seg in sorted(segs.items()):
        when, entered, exited = last.get(name, (None, None, None))
        out.append({"segment": name, "description": seg.description, "enabled": seg.enabled,
                    "members": as_int(counts.get(name, 0)), "last_evaluated": when,
                    "last_entered": entered, "last_exited": exited, "schedule": seg.schedule})
    return out


def activity(db: Conn, name: str, limit: int = 50) -> SegmentActivity:
    """Members (newest first, with their email when the golden record has one), entries and exits, and runs."""
    ensure_schema(db)
    email = "g.email" if _golden_exists(db) and db.one(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'identity' "
        "AND table_name = 'golden_records' AND column_name = 'email'") else "NULL"
    join = f"LEFT JOIN {GOLDEN} g USING (person_id)" if email != "NULL" else ""
    members = db.dicts(f"SELECT m.person_id, m.entered_at, {email} AS email FROM identity.segment_members m "
                       f"{join} WHERE m.segment = ? ORDER BY m.entered_at DESC, m.person_id LIMIT ?", (name, limit))
    changes = db.dicts(f"SELECT h.person_id, h.event, h.changed_at, {email} AS email FROM identity.segment_history h "
                       f"{join} WHERE h.segment = ? ORDER BY h.changed_at DESC, h.person_id LIMIT ?", (name, limit))
    runs = db.dicts("SELECT evaluated_at, members, entered, exited, seconds FROM identity.segment_runs "
                    "WHERE segment = ? ORDER BY evaluated_at DESC LIMIT 20", (name,))
    total = as_int(db.one("SELECT count(*) FROM identity.segment_members WHERE segment = ?", (name,)))
    return {"segment": name, "members": total, "member_rows": members, "changes": changes, "runs": runs}
