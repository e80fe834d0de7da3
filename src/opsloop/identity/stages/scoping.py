"""Stage 3: which records this build re-resolves, and the changed records written to the identity tables."""

from __future__ import annotations

from .._normalize import is_python, sql_expression
from .._sql import Conn, literal
from .normalizing import map_name
from .plan import Plan


def incremental_scope(db: Conn, plan: Plan) -> None:
    types = ", ".join(literal(t) for t in plan.rule_types) or "NULL"
    db.x("CREATE OR REPLACE TEMP TABLE _touched AS SELECT nid FROM _new_records UNION SELECT nid FROM _deleted")
    db.x(f"""CREATE OR REPLACE TEMP TABLE _touched_vals AS
             SELECT vid FROM identity.identifiers
             WHERE nid IN (SELECT nid FROM _touched) AND id_type IN ({types})
             UNION SELECT vid FROM _norm_ids WHERE id_type IN ({types})""")
    link_nodes = [n for pair in [*plan.cfg.links, *plan.cfg.unlinks] for n in pair]
    link_list = ", ".join(literal(n) for n in link_nodes) or "NULL"
    db.x(f"""CREATE OR REPLACE TEMP TABLE _s1 AS
             SELECT nid FROM _touched
             UNION SELECT i.nid FROM identity.identifiers i SEMI JOIN _touched_vals v ON v.vid = i.vid
             UNION SELECT n.nid FROM _norm_ids n SEMI JOIN _touched_vals v ON v.vid = n.vid
             UNION SELECT nid FROM identity.records WHERE node IN ({link_list})
             UNION SELECT nid FROM _new_records WHERE node IN ({link_list})""")
    db.x("""CREATE OR REPLACE TEMP TABLE _scope AS
            SELECT nid FROM (
              SELECT nid FROM _s1
              UNION SELECT g.nid FROM identity.graph g
                    WHERE g.person_id IN (SELECT person_id FROM identity.graph WHERE nid IN (SELECT nid FROM _s1)))
            WHERE nid NOT IN (SELECT nid FROM _deleted)""")


def write_records(db: Conn, plan: Plan) -> None:
    gone = "(SELECT nid FROM _deleted UNION ALL SELECT nid FROM _new_records)"
    if plan.f_cols:
        cases: list[str] = []
        joins: list[str] = []
        for name, id_type in plan.field_norm.items():
            icfg = plan.cfg.identifiers[id_type]
            if is_python(icfg):
                k = len(joins)
                joins.append(f"LEFT JOIN {map_name(db, plan, id_type)} m{k} ON f.field = {literal(name)} "
                             f"AND m{k}.raw = f.raw")
                cases.append(f"WHEN f.field = {literal(name)} THEN m{k}.value")
            else:
                cases.append(f"WHEN f.field = {literal(name)} THEN {sql_expression(icfg, 'f.raw')}")
        value = f"CASE {' '.join(cases)} ELSE f.raw END" if cases else "f.raw"
        target = ("INSERT INTO identity.field_values" if plan.direct
                  else "CREATE OR REPLACE TEMP TABLE _new_fields AS")
        db.x(f"""{target}
                 SELECT nid, system, field, value, updated_at FROM (
                   SELECT f.nid, f.system, f.field, {value} AS value, coalesce(f.updated_at, now()) AS updated_at
                   FROM _raw_fields f {' '.join(joins)}) WHERE value IS NOT NULL""")
    if plan.f_cols and not plan.direct:
        # Keep a field's old updated_at when its value did not change: provenance is per field.
        db.x("""UPDATE _new_fields SET updated_at = o.updated_at FROM identity.field_values o
                WHERE o.nid = _new_fields.nid AND o.field = _new_fields.field AND o.value = _new_fields.value
                  AND _new_fields.updated_at IS DISTINCT FROM o.updated_at""")
    if not plan.direct:
        for table in ("records", "identifiers", "field_values"):
            db.x(f"DELETE FROM identity.{table} WHERE nid IN {gone}")
    db.x("INSERT INTO identity.records SELECT nid, node, system, record_id, coalesce(updated_at, now()), "
         "row_hash, now(), node_key FROM _new_records")
    if not plan.direct:
        db.x("INSERT INTO identity.identifiers SELECT nid, id_type, value, vid FROM _norm_ids")
    if plan.f_cols and not plan.direct:
        db.x("INSERT INTO identity.field_values SELECT nid, system, field, value, updated_at FROM _new_fields")
    for i in range(len(plan.selects)):
        db.x(f"DROP TABLE IF EXISTS _src_{i}")
    for table in ("_raw_fields", "_new_fields", "_norm_ids", "_changed", "_new_records"):
        db.x(f"DROP TABLE IF EXISTS {table}")

# -- 4. merge ----------------------------------------------------------------------------------
# Keys and limited values are 64-bit hashes of (type, value) (``vid``), so every join is on integers.
