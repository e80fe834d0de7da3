"""Stage 1: the sources' records, and which of them are new, changed or deleted since the last build."""

from __future__ import annotations

from ...narrow import as_int
from .._sql import Conn, expression, literal, quote, relation
from .plan import Plan


def _source_selects(db: Conn, plan: Plan) -> None:
    """One SELECT per source giving node, record_id, updated_at, row_hash and the mapped columns."""
    plan.selects = []
    plan.id_cols = {t: [] for t in plan.cfg.identifiers}
    plan.f_cols = []
    for i, src in enumerate(plan.cfg.sources):
        cols = [f"CAST(({expression(src.record_id)}) AS VARCHAR) AS record_id",
                (f"CAST(({expression(src.updated_at)}) AS TIMESTAMPTZ) AS updated_at" if src.updated_at
                 else "CAST(NULL AS TIMESTAMPTZ) AS updated_at")]
        mapped: list[str] = []
        for t, exprs in src.identifiers.items():
            for j, e in enumerate([exprs] if isinstance(exprs, str) else exprs):
                alias = f"i__{t}__{j}"
                cols.append(f"CAST(({expression(e)}) AS VARCHAR) AS {quote(alias)}")
                plan.id_cols[t].append((i, alias))
                mapped.append(quote(alias))
        for name, e in src.fields.items():
            alias = f"f__{name}"
            cols.append(f"CAST(({expression(e)}) AS VARCHAR) AS {quote(alias)}")
            plan.f_cols.append((i, name, alias))
            mapped.append(quote(alias))
        origin = relation(src.relation) if src.relation else f"({expression(src.sql or '')})"
        plan.selects.append(
            f"SELECT hash(node) AS node_key, * FROM ("
            f"SELECT {literal(src.system)} || ':' || record_id AS node, {literal(src.system)} AS system, "
            f"hash(updated_at, {', '.join(mapped)}) AS row_hash, * "
            f"FROM (SELECT {', '.join(cols)} FROM {origin} AS src) WHERE record_id IS NOT NULL)")


def stage(db: Conn, plan: Plan) -> None:
    _source_selects(db, plan)
    db.x("CREATE OR REPLACE TEMP TABLE _stage_rec AS " + " UNION ALL ".join(
        f"SELECT node, node_key, system, record_id, updated_at, row_hash FROM ({sel})" for sel in plan.selects))
    if db.one("SELECT count(*) - count(DISTINCT node_key) FROM _stage_rec"):
        # The same record twice in a source: keep its latest version.
        db.x("CREATE OR REPLACE TEMP TABLE _stage_rec AS SELECT * FROM _stage_rec QUALIFY row_number() OVER "
             "(PARTITION BY node ORDER BY updated_at DESC NULLS LAST, row_hash) = 1")


def stage_changed(db: Conn, plan: Plan) -> None:
    """Materialise the mapped columns of new and changed records only."""
    for i, sel in enumerate(plan.selects):
        db.x(f"CREATE OR REPLACE TEMP TABLE _src_{i} AS SELECT n.nid, s.* FROM ({sel}) s "
                  "JOIN _new_records n ON n.node_key = s.node_key AND n.row_hash = s.row_hash")


def diff(db: Conn, plan: Plan) -> tuple[int, int]:
    # One join on 64-bit record keys finds new, changed and deleted records.
    db.x("""CREATE OR REPLACE TEMP TABLE _cmp AS
            SELECT s.node, s.node_key, s.system, s.record_id, s.updated_at, s.row_hash, r.nid AS old_nid
            FROM _stage_rec s FULL JOIN (SELECT nid, node_key, row_hash FROM identity.records) r
              ON r.node_key = s.node_key
            WHERE s.node_key IS NULL OR r.nid IS NULL OR r.row_hash <> s.row_hash""")
    db.x("CREATE OR REPLACE TEMP TABLE _changed AS SELECT * FROM _cmp WHERE node_key IS NOT NULL")
    db.x("CREATE OR REPLACE TEMP TABLE _deleted AS SELECT old_nid AS nid FROM _cmp WHERE node_key IS NULL")
    plan.systems = {str(system): {"changed": as_int(ch), "deleted": as_int(de)} for system, ch, de in db.rows(
        "SELECT coalesce(c.system, r.system), count(*) FILTER (WHERE c.node_key IS NOT NULL), "
        "count(*) FILTER (WHERE c.node_key IS NULL) FROM _cmp c "
        "LEFT JOIN identity.records r ON c.node_key IS NULL AND r.nid = c.old_nid GROUP BY 1 ORDER BY 1")}
    db.x("DROP TABLE _cmp")
    start = as_int(db.one("SELECT coalesce(max(nid), 0) FROM identity.records"))
    db.x(f"""CREATE OR REPLACE TEMP TABLE _new_records AS
             SELECT coalesce(old_nid, {start} + row_number() OVER (PARTITION BY old_nid IS NULL ORDER BY node))
                    AS nid, node, node_key, system, record_id, updated_at, row_hash
             FROM _changed""")
    db.x("DROP TABLE _stage_rec")
    return as_int(db.one("SELECT count(*) FROM _changed")), as_int(db.one("SELECT count(*) FROM _deleted"))
