"""Stage 2: identifiers of the changed records, normalised (SQL, or Python once per distinct raw value, cached),
blocked values dropped."""

from __future__ import annotations

from .._normalize import cache_key, is_python, python_normalizer, sql_expression
from .._sql import Conn, literal, quote
from .plan import Plan
from .staging import stage_changed


def _raw_of(db: Conn, plan: Plan, id_type: str) -> str:
    parts = [f"SELECT nid, {quote(alias)} AS raw FROM _src_{i} WHERE {quote(alias)} IS NOT NULL"
             for i, alias in plan.id_cols[id_type]]
    return " UNION ALL ".join(parts) if parts else "SELECT NULL::BIGINT AS nid, NULL::VARCHAR AS raw WHERE false"


def normalize_changed(db: Conn, plan: Plan) -> None:
    stage_changed(db, plan)
    plan.field_norm = {name: c.normalize for name, c in plan.cfg.fields.items() if c.normalize}
    parts = [f"SELECT nid, system, {literal(name)} AS field, {quote(alias)} AS raw, updated_at FROM _src_{i} "
             f"WHERE {quote(alias)} IS NOT NULL" for i, name, alias in plan.f_cols]
    db.x("CREATE OR REPLACE TEMP TABLE _raw_fields AS " + (" UNION ALL ".join(parts) if parts else
         "SELECT NULL::BIGINT AS nid, NULL::VARCHAR AS system, NULL::VARCHAR AS field, NULL::VARCHAR AS raw, "
         "NULL::TIMESTAMPTZ AS updated_at WHERE false"))
    _blocked_table(db, plan)
    typed = []
    for t, icfg in plan.cfg.identifiers.items():
        if not plan.id_cols[t]:
            if is_python(icfg) and t in plan.field_norm.values():
                _fill_cache(db, plan, t)  # no source maps it, but a field normalises with it (_write_records)
            continue
        if is_python(icfg):
            _fill_cache(db, plan, t)
            typed.append(f"SELECT r.nid, {literal(t)} AS id_type, m.value FROM ({_raw_of(db, plan, t)}) r "
                         f"JOIN {map_name(db, plan, t)} m USING (raw)")
        else:
            expr = sql_expression(icfg, "r.raw")
            typed.append(f"SELECT r.nid, {literal(t)} AS id_type, {expr} AS value FROM ({_raw_of(db, plan, t)}) r")
    union = " UNION ALL ".join(typed) or ("SELECT NULL::BIGINT AS nid, NULL::VARCHAR AS id_type, "
                                          "NULL::VARCHAR AS value WHERE false")
    # Several columns of one type in one source may hold the same value: only then is DISTINCT needed.
    several = any(len([1 for i, _ in cols if i == k]) > 1 for cols in plan.id_cols.values()
                  for k in range(len(plan.cfg.sources)))
    target = "INSERT INTO identity.identifiers" if plan.direct else "CREATE OR REPLACE TEMP TABLE _norm_ids AS"
    db.x(f"""{target}
             SELECT {'DISTINCT' if several else ''} x.nid, x.id_type, x.value, hash(x.id_type, x.value) AS vid
             FROM ({union}) x
             ANTI JOIN _blocked b ON b.id_type = x.id_type AND b.value = x.value
             WHERE x.value IS NOT NULL AND x.value <> ''""")


def map_name(db: Conn, plan: Plan, id_type: str) -> str:
    return f"_map_{list(plan.cfg.identifiers).index(id_type)}"


def _fill_cache(db: Conn, plan: Plan, id_type: str) -> None:
    """``_map_<n>(raw, value)`` for every distinct raw value: SQL fast path, cache, then Python for the rest."""
    import pyarrow as pa

    icfg = plan.cfg.identifiers[id_type]
    key = literal(cache_key(icfg))
    fields = [f for f, t in plan.field_norm.items() if t == id_type]
    field_raw = (" UNION ALL SELECT raw FROM _raw_fields WHERE field IN ("
                 + ", ".join(literal(f) for f in fields) + ")") if fields else ""
    name = map_name(db, plan, id_type)
    db.x(f"""CREATE OR REPLACE TEMP TABLE {name} AS
             SELECT d.raw, coalesce({sql_expression(icfg, 'd.raw')}, c.value) AS value, c.raw IS NOT NULL AS cached
             FROM (SELECT DISTINCT raw FROM (SELECT raw FROM ({_raw_of(db, plan, id_type)}){field_raw})) d
             LEFT JOIN identity.normalized_values c ON c.normalizer = {key} AND c.raw = d.raw""")
    missing = [r[0] for r in db.rows(f"SELECT raw FROM {name} WHERE value IS NULL AND NOT cached")]
    if not missing:
        return
    fn = python_normalizer(icfg)
    values = [None if v is None else fn(str(v)) for v in missing]
    db.insert_arrow("identity.normalized_values", pa.table(
        {"normalizer": [cache_key(icfg)] * len(missing), "raw": missing, "value": values}))
    db.x(f"""UPDATE {name} SET value = c.value FROM identity.normalized_values c
             WHERE c.normalizer = {key} AND c.raw = {name}.raw AND {name}.value IS NULL AND NOT {name}.cached""")


def _blocked_table(db: Conn, plan: Plan) -> None:
    rows: list[tuple[str, str]] = []
    for t, icfg in plan.cfg.identifiers.items():
        fn = python_normalizer(icfg)
        for value in [*icfg.block, *plan.cfg.block]:
            norm = fn(value)
            rows.append((t, norm if norm is not None else value))
        rows.append((t, ""))
    db.x("CREATE OR REPLACE TEMP TABLE _blocked (id_type VARCHAR, value VARCHAR)")
    if rows:
        values = ", ".join(f"({literal(t)}, {literal(v)})" for t, v in rows)
        db.x(f"INSERT INTO _blocked VALUES {values}")
