"""Stage 6 of a build: the golden record per person, with per-field survivorship and provenance.

Reads ``_assign(nid, label, person_id)`` and ``_retired(person_id, merged_into)`` (stage 5) and
``identity.field_values``; writes ``identity.golden_records`` (the rows of the affected people) and, when
``emit``, one ``profile.updated`` event per changed person into ``identity.outbox`` (same transaction).
"""

from __future__ import annotations

from ...narrow import as_int
from .._sql import Conn, expression, literal, quote
from ..config import FieldConfig, IdentityConfig

CAST = {"varchar": "VARCHAR", "integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE",
        "boolean": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMPTZ"}

_AGE = "(1099511627776 - least(greatest(coalesce(epoch(updated_at)::BIGINT, 0), 0), 1099511627775))"
"""2^40 minus a value's age in seconds since 1970 (clamped): smaller is newer."""


def golden_columns(cfg: IdentityConfig, fields: list[str]) -> list[tuple[str, str]]:
    cols = [("person_id", "VARCHAR")]
    for name in fields:
        ftype = CAST[cfg.fields[name].type] if name in cfg.fields else "VARCHAR"
        cols += [(name, ftype), (f"{name}__source", "VARCHAR"), (f"{name}__updated_at", "TIMESTAMPTZ")]
    cols += [("record_count", "BIGINT"), ("systems", "VARCHAR[]"), ("resolved_at", "TIMESTAMPTZ")]
    return cols


def _sort_keys(mode: str) -> tuple[str, str] | None:
    """The winner of a field is the value first by (k1, k2, record number), each ascending."""
    if mode == "priority":
        return "prank", _AGE
    if mode == "most_frequent":
        return "(1099511627776 - freq)", _AGE
    if mode == "most_recent":
        return _AGE, "prank"
    return None


def _winners(db: Conn, fcfg: list[tuple[str, FieldConfig | None]], fv: str, source: str, prank: str) -> str:
    """SELECT label, field, value, system, updated_at: each person's winning value per field."""
    keys = {}
    for name, c in fcfg:
        k = _sort_keys(c.survivorship if c is not None else "most_recent")
        if k is not None:
            keys[name] = k
    if not keys:
        return ""
    names = ", ".join(literal(n) for n in keys)
    if db.engine.arg_min:
        # One 124-bit sort key per value; arg_min picks the winner in one aggregate.
        cases = " ".join(f"WHEN {literal(n)} THEN (CAST({k1} AS HUGEINT) << 84) + (CAST({k2} AS HUGEINT) << 44) "
                         "+ nid" for n, (k1, k2) in keys.items())
        return f"""
            SELECT label, field, w.value, w.system, w.updated_at FROM (
              SELECT label, field,
                     arg_min({{'value': value, 'system': system, 'updated_at': updated_at}},
                             CASE field {cases} END) AS w
              FROM {source}
              WHERE field IN ({names})
              GROUP BY label, field)"""
    k1 = "CASE field " + " ".join(f"WHEN {literal(n)} THEN {a}" for n, (a, _) in keys.items()) + " END"
    k2 = "CASE field " + " ".join(f"WHEN {literal(n)} THEN {b}" for n, (_, b) in keys.items()) + " END"
    return f"""
        SELECT * FROM (SELECT DISTINCT ON (label, field) label, field, value, system, updated_at
                       FROM {source} WHERE field IN ({names}) ORDER BY label, field, {k1}, {k2}, nid) AS w"""


def _sql_field(db: Conn, name: str, c: FieldConfig, fv: str) -> str:
    """A field whose value is the user's aggregate (``survivorship: sql``), with the provenance of the latest
    record holding that value."""
    typed = f"TRY_CAST(value AS {CAST[c.type]})"
    if db.engine.arg_min:
        latest = (f"SELECT label, value, arg_max({{'system': system, 'updated_at': updated_at}}, updated_at) AS w "
                  f"FROM {fv} WHERE field = {literal(name)} GROUP BY label, value")
        system, updated = "p.w.system", "p.w.updated_at"
    else:
        latest = (f"SELECT DISTINCT ON (label, value) label, value, system, updated_at FROM {fv} "
                  f"WHERE field = {literal(name)} ORDER BY label, value, updated_at DESC")
        system, updated = "p.system", "p.updated_at"
    return f"""
        SELECT s.label, {literal(name)} AS field, CAST(s.v AS VARCHAR) AS value,
               {system} AS system, {updated} AS updated_at
        FROM (SELECT label, ({expression(c.sql or '')}) AS v
              FROM (SELECT label, {typed} AS value, system, updated_at FROM {fv}
                    WHERE field = {literal(name)}) AS t GROUP BY label) s
        LEFT JOIN ({latest}) p
          ON p.label = s.label AND p.value = CAST(s.v AS VARCHAR)"""


def build_golden(db: Conn, cfg: IdentityConfig, fields: list[str], run_id: str, emit: bool) -> int:
    """Rewrite the golden rows of the people this build touched; returns how many profile.updated events."""
    db.x("""CREATE OR REPLACE TEMP TABLE _affected AS
            SELECT DISTINCT person_id FROM _assign UNION SELECT person_id FROM _retired""")
    fcfg = [(name, cfg.fields.get(name)) for name in fields]
    rank_cases = " ".join(f"WHEN field = {literal(n)} AND system = {literal(sys_)} THEN {r}"
                          for n, c in fcfg if c is not None for r, sys_ in enumerate(c.priority))
    prank = f"(CASE {rank_cases} ELSE 1000 END)" if rank_cases else "1000"
    mf = [n for n, c in fcfg if c is not None and c.survivorship == "most_frequent"]
    fv = (f"(SELECT a.label, f.field, f.value, f.system, f.updated_at, f.nid, {prank} AS prank "
          "FROM identity.field_values f JOIN _assign a USING (nid))")
    if mf or any(c is not None and c.survivorship == "sql" for _, c in fcfg):
        db.x(f"CREATE OR REPLACE TEMP TABLE _fv AS SELECT * FROM {fv} AS f")
        fv = "_fv"
    freq_join = ""
    if mf:
        db.x(f"""CREATE OR REPLACE TEMP TABLE _freq AS SELECT label, field, value, count(*) AS freq FROM {fv} AS f
                 WHERE field IN ({', '.join(literal(n) for n in mf)}) GROUP BY label, field, value""")
        freq_join = "LEFT JOIN _freq q USING (label, field, value)"
    source = f"(SELECT v.*, {'coalesce(q.freq, 0)' if mf else '0'} AS freq FROM {fv} v {freq_join})"
    picked_parts = [p for p in [_winners(db, fcfg, fv, source, prank)] if p]
    picked_parts += [_sql_field(db, name, c, fv) for name, c in fcfg if c is not None and c.survivorship == "sql"]
    if picked_parts:
        db.x("CREATE OR REPLACE TEMP TABLE _picked AS " + " UNION ALL ".join(picked_parts))
    else:
        db.x("CREATE OR REPLACE TEMP TABLE _picked (label BIGINT, field VARCHAR, value VARCHAR, "
             "system VARCHAR, updated_at TIMESTAMPTZ)")
    db.x("DROP TABLE IF EXISTS _fv")
    selects = []
    field_cols = []
    for name, c in fcfg:
        ftype = CAST[c.type] if c else "VARCHAR"
        lit = literal(name)
        selects += [f"TRY_CAST(max(value) FILTER (WHERE field = {lit}) AS {ftype}) AS {quote(name)}",
                    f"max(system) FILTER (WHERE field = {lit}) AS {quote(name + '__source')}",
                    f"max(updated_at) FILTER (WHERE field = {lit}) AS {quote(name + '__updated_at')}"]
        field_cols += [quote(name), quote(name + "__source"), quote(name + "__updated_at")]
    names = sorted({src.system for src in cfg.sources})
    systems = ("list_filter([" + ", ".join(f"CASE WHEN bool_or(r.system = {literal(n)}) THEN {literal(n)} END"
                                          for n in names) + "], lambda x: x IS NOT NULL)")
    golden = f"""
             SELECT s.person_id{''.join(', g.' + c for c in field_cols)}, s.record_count, s.systems,
                    now() AS resolved_at
             FROM (SELECT a.label, min(a.person_id) AS person_id, count(*) AS record_count,
                          {systems} AS systems
                   FROM _assign a JOIN identity.records r USING (nid) GROUP BY a.label) s
             LEFT JOIN (SELECT label{''.join(', ' + x for x in selects)} FROM _picked GROUP BY label) g
               USING (label)"""
    columns = ", ".join(quote(c) for c, _ in golden_columns(cfg, fields))
    if not (emit and fields):
        # Nothing to compare: the new rows go straight in.
        db.x("DELETE FROM identity.golden_records WHERE person_id IN (SELECT person_id FROM _affected)")
        db.x(f"INSERT INTO identity.golden_records ({columns}) SELECT {columns} FROM ({golden}) AS g0")
        return 0
    db.x(f"CREATE OR REPLACE TEMP TABLE _golden AS {golden}")
    pairs = ", ".join(f"g.{quote(n)} AS {quote(n + '__new')}, g.{quote(n + '__source')}, o.{quote(n)} AS "
                      f"{quote(n + '__old')}" for n in fields)
    db.x(f"CREATE OR REPLACE TEMP TABLE _gdiff AS SELECT g.person_id, {pairs} "
         "FROM _golden g LEFT JOIN identity.golden_records o USING (person_id)")
    changed = " UNION ALL ".join(
        f"SELECT person_id, {literal(n)} AS field, to_json({quote(n + '__old')}) AS old, "
        f"to_json({quote(n + '__new')}) AS new, {quote(n + '__source')} AS source FROM _gdiff "
        f"WHERE {quote(n + '__old')} IS DISTINCT FROM {quote(n + '__new')}" for n in fields)
    db.x(f"""CREATE OR REPLACE TEMP TABLE _changes AS
             SELECT person_id, CAST(json_object('person_id', person_id, 'changed', json_group_object(
                      field, json_object('old', old, 'new', new, 'source', source))) AS VARCHAR) AS payload
             FROM ({changed}) AS c GROUP BY person_id""")
    updates = as_int(db.one("SELECT count(*) FROM _changes"))
    db.x(f"INSERT INTO identity.outbox SELECT 'identity:' || {literal(run_id)} || ':' || person_id, "
         "'profile.updated', payload, now() FROM _changes")
    db.x("DELETE FROM identity.golden_records WHERE person_id IN (SELECT person_id FROM _affected)")
    db.x(f"INSERT INTO identity.golden_records ({columns}) SELECT {columns} FROM _golden")
    for table in ("_gdiff", "_changes"):
        db.x(f"DROP TABLE IF EXISTS {table}")
    return updates
