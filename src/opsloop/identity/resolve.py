"""Identity resolution in the warehouse, set-based, on DuckDB.

One build:

1. **Stage** every source's rows; a hash of each record tells which records are new, changed or deleted.
2. **Normalise** identifiers of changed records (SQL, or Python once per distinct raw value, cached) and drop
   blocked values.
3. **Scope**: a full build resolves every record; an incremental one re-resolves the people touched by the
   changed records (their old people and every record sharing an identifier value with them).
4. **Merge** in rule order. For each rule, components sharing a key are joined by connected components
   (min-label propagation with pointer jumping, each step one SQL statement). A key whose merge would give a
   person more than ``max_per_person`` values of a type (or join an ``unlinks`` pair) is refused and recorded
   in ``identity.conflicts``.
5. **Stable ids**: each new cluster keeps the id of the earliest-seen person among the old people it owns
   (an old person is owned by the cluster holding most of its records); merged-away ids are recorded with
   ``merged_into``. New clusters get ``p_`` + md5 of their first record's key.
6. **Golden record** per person with per-field survivorship and provenance, diffed against the previous row;
   every change becomes a ``profile.updated`` event, written to ``identity.outbox`` in the same transaction.

The output tables are documented in docs/identity.md.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ._normalize import cache_key, is_python, python_normalizer, sql_expression
from ._sql import Conn, expression, literal, quote, relation
from .config import IdentityConfig

_RANDOM = "USING COMPRESSION uncompressed"
"""For 64-bit hash columns: random bits do not compress, and DuckDB's attempt costs a tenth of a build."""

SCHEMA_SQL = [
    "CREATE SCHEMA IF NOT EXISTS identity",
    "CREATE TABLE IF NOT EXISTS identity.records (nid BIGINT, node VARCHAR, system VARCHAR, record_id VARCHAR, "
    f"updated_at TIMESTAMPTZ, row_hash UBIGINT {_RANDOM}, seen_at TIMESTAMPTZ, node_key UBIGINT {_RANDOM})",
    "CREATE TABLE IF NOT EXISTS identity.identifiers (nid BIGINT, id_type VARCHAR, value VARCHAR, "
    f"vid UBIGINT {_RANDOM})",
    "CREATE TABLE IF NOT EXISTS identity.field_values (nid BIGINT, system VARCHAR, field VARCHAR, value VARCHAR, "
    "updated_at TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS identity.graph (system VARCHAR, record_id VARCHAR, person_id VARCHAR, nid BIGINT, "
    "resolved_at TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS identity.persons (person_id VARCHAR, first_seen_at TIMESTAMPTZ, "
    "merged_into VARCHAR, retired_at TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS identity.conflicts (run_id VARCHAR, rule VARCHAR, id_type VARCHAR, value VARCHAR, "
    "reason VARCHAR, recorded_at TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS identity.normalized_values (normalizer VARCHAR, raw VARCHAR, value VARCHAR)",
    "CREATE TABLE IF NOT EXISTS identity.outbox (key VARCHAR, name VARCHAR, payload VARCHAR, "
    "created_at TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS identity.runs (run_id VARCHAR, kind VARCHAR, started_at TIMESTAMPTZ, "
    "seconds DOUBLE, records BIGINT, changed BIGINT, deleted BIGINT, scope BIGINT, persons BIGINT, "
    "profile_updates BIGINT, refused BIGINT)",
]

_CAST = {"varchar": "VARCHAR", "integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE",
         "boolean": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMPTZ"}


@dataclass
class BuildResult:
    run_id: str
    kind: str
    records: int = 0
    changed: int = 0
    deleted: int = 0
    scope: int = 0
    persons: int = 0
    profile_updates: int = 0
    refused: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    systems: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per system whose records this build saw change: ``{"changed": n, "deleted": m}``."""

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("run_id", "kind", "records", "changed", "deleted", "scope", "persons",
                                             "profile_updates", "refused", "seconds", "systems")}


def ensure_schema(db: Conn) -> None:
    for sql in SCHEMA_SQL:
        db.x(sql)


class Resolver:
    """Resolves identities for one ``identity.yml`` on one DuckDB connection."""

    def __init__(self, db: Conn, config: IdentityConfig, field_names: list[str]) -> None:
        self.db = db
        self.cfg = config
        self.fields = field_names
        self.rule_types = sorted({t for r in config.merge_rules for t in config.rule_types(r)})

    # -- golden-record table shape ----------------------------------------------------------
    def golden_columns(self) -> list[tuple[str, str]]:
        cols = [("person_id", "VARCHAR")]
        for name in self.fields:
            ftype = _CAST[self.cfg.fields[name].type] if name in self.cfg.fields else "VARCHAR"
            cols += [(name, ftype), (f"{name}__source", "VARCHAR"), (f"{name}__updated_at", "TIMESTAMPTZ")]
        cols += [("record_count", "BIGINT"), ("systems", "VARCHAR[]"), ("resolved_at", "TIMESTAMPTZ")]
        return cols

    def _ensure_golden(self) -> bool:
        """Create identity.golden_records; True when it was (re)created, so this build is a baseline."""
        wanted = self.golden_columns()
        have = self.db.columns("identity", "golden_records")
        if have == [c for c, _ in wanted]:
            return False
        self.db.x("DROP TABLE IF EXISTS identity.golden_records")
        self.db.x("CREATE TABLE identity.golden_records (" + ", ".join(f"{quote(c)} {t}" for c, t in wanted) + ")")
        return True

    # -- build -------------------------------------------------------------------------------
    def build(self, full: bool = False) -> BuildResult:
        started = time.perf_counter()
        run_id = time.strftime("%Y%m%dT%H%M%S") + "_" + uuid.uuid4().hex[:6]
        db = self.db
        ensure_schema(db)
        timings: dict[str, float] = {}

        def mark(name: str, t0: list[float]) -> None:
            now = time.perf_counter()
            timings[name] = round(now - t0[0], 4)
            t0[0] = now

        t0 = [started]
        previous_limit = None
        if self.cfg.memory_limit:
            from .._durations import parse_size

            previous_limit = db.one("SELECT current_setting('memory_limit')")
            db.x(f"SET memory_limit = '{parse_size(self.cfg.memory_limit) // 1_000_000}MB'")
        # Temp tables need no row order; without it DuckDB streams CREATE TABLE AS with less memory.
        previous_order = db.one("SELECT current_setting('preserve_insertion_order')")
        db.x("SET preserve_insertion_order = false")
        try:
            result = self._build(run_id, full, started, timings, mark, t0)
        finally:
            # also while stopping (check=False): memory_limit is the database's, not this cursor's
            db.x(f"SET preserve_insertion_order = {'true' if previous_order else 'false'}", check=False)
            if previous_limit is not None:
                # The setting reads back rounded ("18.7 GiB"): RESET restores a default exactly.
                db.x("RESET memory_limit", check=False)
                if db.con.execute("SELECT current_setting('memory_limit')").fetchone()[0] != previous_limit:
                    db.x(f"SET memory_limit = {literal(str(previous_limit))}", check=False)
        self._drop_temp()
        return result

    def _build(self, run_id: str, full: bool, started: float, timings: dict[str, float], mark: Any,
               t0: list[float]) -> BuildResult:
        db = self.db
        with db.transaction():
            baseline = self._ensure_golden()
            if baseline:
                full = True
            first = db.one("SELECT count(*) FROM identity.records") == 0
            self._stage()
            mark("stage", t0)
            changed, deleted = self._diff()
            mark("diff", t0)
            # The first build writes identifiers straight into the empty identity tables (no temp copy).
            self._direct = first
            self._normalize_changed()
            mark("normalize", t0)
            kind = "full" if full or first else "incremental"
            if kind == "incremental":
                self._incremental_scope()
            self._write_records()
            if kind == "full":
                db.x("CREATE OR REPLACE TEMP TABLE _scope AS SELECT nid FROM identity.records")
            scope = int(db.one("SELECT count(*) FROM _scope"))
            mark("scope", t0)
            refused = self._merge(run_id)
            mark("merge", t0)
            self._assign_ids(run_id)
            mark("ids", t0)
            updates = self._golden(run_id, emit=not baseline)
            mark("golden", t0)
            records = int(db.one("SELECT count(*) FROM identity.records"))
            persons = int(db.one("SELECT count(DISTINCT person_id) FROM identity.graph"))
            result = BuildResult(run_id, kind, records, changed, deleted, scope, persons, updates, refused,
                                 round(time.perf_counter() - started, 3), timings, self._systems)
            if self._systems:
                # In the build's transaction, like profile.updated: syncs that enforce the hierarchy in a
                # system run when its records changed, though no golden value did (syncs/service.py).
                payload = {k: v for k, v in result.as_dict().items() if k != "seconds"}
                db.x("INSERT INTO identity.outbox VALUES (?, 'identity.built', ?, now())",
                     (f"identity:{run_id}:built", json.dumps(payload)))
            db.x("INSERT INTO identity.runs VALUES (?, ?, now(), ?, ?, ?, ?, ?, ?, ?, ?)",
                 (run_id, kind, result.seconds, records, changed, deleted, scope, persons, updates, refused))
        return result

    def _drop_temp(self) -> None:
        for (name,) in self.db.rows("SELECT table_name FROM duckdb_tables() WHERE temporary AND "
                                    "table_name LIKE '\\_%' ESCAPE '\\'"):
            self.db.x(f"DROP TABLE IF EXISTS temp.{quote(name)}")

    # -- 1. stage ------------------------------------------------------------------------------
    def _source_selects(self) -> None:
        """One SELECT per source giving node, record_id, updated_at, row_hash and the mapped columns."""
        self._selects: list[str] = []
        self._id_cols: dict[str, list[tuple[int, str]]] = {t: [] for t in self.cfg.identifiers}
        self._f_cols: list[tuple[int, str, str]] = []
        for i, src in enumerate(self.cfg.sources):
            cols = [f"CAST(({expression(src.record_id)}) AS VARCHAR) AS record_id",
                    (f"CAST(({expression(src.updated_at)}) AS TIMESTAMPTZ) AS updated_at" if src.updated_at
                     else "CAST(NULL AS TIMESTAMPTZ) AS updated_at")]
            mapped: list[str] = []
            for t, exprs in src.identifiers.items():
                for j, e in enumerate([exprs] if isinstance(exprs, str) else exprs):
                    alias = f"i__{t}__{j}"
                    cols.append(f"CAST(({expression(e)}) AS VARCHAR) AS {quote(alias)}")
                    self._id_cols[t].append((i, alias))
                    mapped.append(quote(alias))
            for name, e in src.fields.items():
                alias = f"f__{name}"
                cols.append(f"CAST(({expression(e)}) AS VARCHAR) AS {quote(alias)}")
                self._f_cols.append((i, name, alias))
                mapped.append(quote(alias))
            origin = relation(src.relation) if src.relation else f"({expression(src.sql or '')})"
            self._selects.append(
                f"SELECT node, hash(node) AS node_key, * FROM ("
                f"SELECT {literal(src.system)} || ':' || record_id AS node, {literal(src.system)} AS system, "
                f"hash(updated_at, {', '.join(mapped)}) AS row_hash, * "
                f"FROM (SELECT {', '.join(cols)} FROM {origin} AS src) WHERE record_id IS NOT NULL)")

    def _stage(self) -> None:
        db = self.db
        self._source_selects()
        db.x("CREATE OR REPLACE TEMP TABLE _stage_rec AS " + " UNION ALL ".join(
            f"SELECT node, node_key, system, record_id, updated_at, row_hash FROM ({sel})" for sel in self._selects))
        if db.one("SELECT count(*) - count(DISTINCT node_key) FROM _stage_rec"):
            # The same record twice in a source: keep its latest version.
            db.x("CREATE OR REPLACE TEMP TABLE _stage_rec AS SELECT * FROM _stage_rec QUALIFY row_number() OVER "
                 "(PARTITION BY node ORDER BY updated_at DESC NULLS LAST, row_hash) = 1")

    def _stage_changed(self) -> None:
        """Materialise the mapped columns of new and changed records only."""
        for i, sel in enumerate(self._selects):
            self.db.x(f"CREATE OR REPLACE TEMP TABLE _src_{i} AS SELECT n.nid, s.* FROM ({sel}) s "
                      "JOIN _new_records n ON n.node_key = s.node_key AND n.row_hash = s.row_hash")

    # -- 2. diff and normalise -------------------------------------------------------------------
    def _diff(self) -> tuple[int, int]:
        db = self.db
        # One join on 64-bit record keys finds new, changed and deleted records.
        db.x("""CREATE OR REPLACE TEMP TABLE _cmp AS
                SELECT s.node, s.node_key, s.system, s.record_id, s.updated_at, s.row_hash, r.nid AS old_nid
                FROM _stage_rec s FULL JOIN (SELECT nid, node_key, row_hash FROM identity.records) r
                  ON r.node_key = s.node_key
                WHERE s.node_key IS NULL OR r.nid IS NULL OR r.row_hash <> s.row_hash""")
        db.x("CREATE OR REPLACE TEMP TABLE _changed AS SELECT * FROM _cmp WHERE node_key IS NOT NULL")
        db.x("CREATE OR REPLACE TEMP TABLE _deleted AS SELECT old_nid AS nid FROM _cmp WHERE node_key IS NULL")
        self._systems = {str(system): {"changed": int(ch), "deleted": int(de)} for system, ch, de in db.rows(
            "SELECT coalesce(c.system, r.system), count(*) FILTER (WHERE c.node_key IS NOT NULL), "
            "count(*) FILTER (WHERE c.node_key IS NULL) FROM _cmp c "
            "LEFT JOIN identity.records r ON c.node_key IS NULL AND r.nid = c.old_nid GROUP BY 1 ORDER BY 1")}
        db.x("DROP TABLE _cmp")
        start = int(db.one("SELECT coalesce(max(nid), 0) FROM identity.records"))
        db.x(f"""CREATE OR REPLACE TEMP TABLE _new_records AS
                 SELECT coalesce(old_nid, {start} + row_number() OVER (PARTITION BY old_nid IS NULL))
                        AS nid, node, node_key, system, record_id, updated_at, row_hash
                 FROM _changed""")
        db.x("DROP TABLE _stage_rec")
        return int(db.one("SELECT count(*) FROM _changed")), int(db.one("SELECT count(*) FROM _deleted"))

    def _raw_of(self, id_type: str) -> str:
        parts = [f"SELECT nid, {quote(alias)} AS raw FROM _src_{i} WHERE {quote(alias)} IS NOT NULL"
                 for i, alias in self._id_cols[id_type]]
        return " UNION ALL ".join(parts) if parts else "SELECT NULL::BIGINT AS nid, NULL::VARCHAR AS raw WHERE false"

    def _normalize_changed(self) -> None:
        db = self.db
        self._stage_changed()
        self._field_norm = {name: c.normalize for name, c in self.cfg.fields.items() if c.normalize}
        parts = [f"SELECT nid, system, {literal(name)} AS field, {quote(alias)} AS raw, updated_at FROM _src_{i} "
                 f"WHERE {quote(alias)} IS NOT NULL" for i, name, alias in self._f_cols]
        db.x("CREATE OR REPLACE TEMP TABLE _raw_fields AS " + (" UNION ALL ".join(parts) if parts else
             "SELECT NULL::BIGINT AS nid, NULL::VARCHAR AS system, NULL::VARCHAR AS field, NULL::VARCHAR AS raw, "
             "NULL::TIMESTAMPTZ AS updated_at WHERE false"))
        self._blocked_table()
        typed = []
        for t, icfg in self.cfg.identifiers.items():
            if not self._id_cols[t]:
                if is_python(icfg) and t in self._field_norm.values():
                    self._fill_cache(t)  # no source maps it, but a field normalises with it (_write_records)
                continue
            if is_python(icfg):
                self._fill_cache(t)
                typed.append(f"SELECT r.nid, {literal(t)} AS id_type, m.value FROM ({self._raw_of(t)}) r "
                             f"JOIN {self._map_name(t)} m USING (raw)")
            else:
                expr = sql_expression(icfg, "r.raw")
                typed.append(f"SELECT r.nid, {literal(t)} AS id_type, {expr} AS value FROM ({self._raw_of(t)}) r")
        union = " UNION ALL ".join(typed) or ("SELECT NULL::BIGINT AS nid, NULL::VARCHAR AS id_type, "
                                              "NULL::VARCHAR AS value WHERE false")
        # Several columns of one type in one source may hold the same value: only then is DISTINCT needed.
        several = any(len([1 for i, _ in cols if i == k]) > 1 for cols in self._id_cols.values()
                      for k in range(len(self.cfg.sources)))
        target = "INSERT INTO identity.identifiers" if self._direct else "CREATE OR REPLACE TEMP TABLE _norm_ids AS"
        db.x(f"""{target}
                 SELECT {'DISTINCT' if several else ''} x.nid, x.id_type, x.value, hash(x.id_type, x.value) AS vid
                 FROM ({union}) x
                 ANTI JOIN _blocked b ON b.id_type = x.id_type AND b.value = x.value
                 WHERE x.value IS NOT NULL AND x.value <> ''""")

    def _map_name(self, id_type: str) -> str:
        return f"_map_{list(self.cfg.identifiers).index(id_type)}"

    def _fill_cache(self, id_type: str) -> None:
        """``_map_<n>(raw, value)`` for every distinct raw value: SQL fast path, cache, then Python for the rest."""
        import pyarrow as pa

        db = self.db
        icfg = self.cfg.identifiers[id_type]
        key = literal(cache_key(icfg))
        fields = [f for f, t in self._field_norm.items() if t == id_type]
        field_raw = (" UNION ALL SELECT raw FROM _raw_fields WHERE field IN ("
                     + ", ".join(literal(f) for f in fields) + ")") if fields else ""
        name = self._map_name(id_type)
        db.x(f"""CREATE OR REPLACE TEMP TABLE {name} AS
                 SELECT d.raw, coalesce({sql_expression(icfg, 'd.raw')}, c.value) AS value, c.raw IS NOT NULL AS cached
                 FROM (SELECT DISTINCT raw FROM (SELECT raw FROM ({self._raw_of(id_type)}){field_raw})) d
                 LEFT JOIN identity.normalized_values c ON c.normalizer = {key} AND c.raw = d.raw""")
        missing = [r[0] for r in db.rows(f"SELECT raw FROM {name} WHERE value IS NULL AND NOT cached")]
        if not missing:
            return
        fn = python_normalizer(icfg)
        values = [fn(v) for v in missing]
        db.insert_arrow("identity.normalized_values", pa.table(
            {"normalizer": [cache_key(icfg)] * len(missing), "raw": missing, "value": values}))
        db.x(f"""UPDATE {name} SET value = c.value FROM identity.normalized_values c
                 WHERE c.normalizer = {key} AND c.raw = {name}.raw AND {name}.value IS NULL AND NOT {name}.cached""")

    def _blocked_table(self) -> None:
        rows: list[tuple[str, str]] = []
        for t, icfg in self.cfg.identifiers.items():
            fn = python_normalizer(icfg)
            for value in [*icfg.block, *self.cfg.block]:
                norm = fn(value)
                rows.append((t, norm if norm is not None else value))
            rows.append((t, ""))
        self.db.x("CREATE OR REPLACE TEMP TABLE _blocked (id_type VARCHAR, value VARCHAR)")
        if rows:
            values = ", ".join(f"({literal(t)}, {literal(v)})" for t, v in rows)
            self.db.x(f"INSERT INTO _blocked VALUES {values}")

    # -- 3. scope --------------------------------------------------------------------------------
    def _incremental_scope(self) -> None:
        db = self.db
        types = ", ".join(literal(t) for t in self.rule_types) or "NULL"
        db.x("CREATE OR REPLACE TEMP TABLE _touched AS SELECT nid FROM _new_records UNION SELECT nid FROM _deleted")
        db.x(f"""CREATE OR REPLACE TEMP TABLE _touched_vals AS
                 SELECT vid FROM identity.identifiers
                 WHERE nid IN (SELECT nid FROM _touched) AND id_type IN ({types})
                 UNION SELECT vid FROM _norm_ids WHERE id_type IN ({types})""")
        link_nodes = [n for pair in [*self.cfg.links, *self.cfg.unlinks] for n in pair]
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

    def _write_records(self) -> None:
        db = self.db
        gone = "(SELECT nid FROM _deleted UNION ALL SELECT nid FROM _new_records)"
        if self._f_cols:
            cases: list[str] = []
            joins: list[str] = []
            for name, id_type in self._field_norm.items():
                icfg = self.cfg.identifiers[id_type]
                if is_python(icfg):
                    k = len(joins)
                    joins.append(f"LEFT JOIN {self._map_name(id_type)} m{k} ON f.field = {literal(name)} "
                                 f"AND m{k}.raw = f.raw")
                    cases.append(f"WHEN f.field = {literal(name)} THEN m{k}.value")
                else:
                    cases.append(f"WHEN f.field = {literal(name)} THEN {sql_expression(icfg, 'f.raw')}")
            value = f"CASE {' '.join(cases)} ELSE f.raw END" if cases else "f.raw"
            target = ("INSERT INTO identity.field_values" if self._direct
                      else "CREATE OR REPLACE TEMP TABLE _new_fields AS")
            db.x(f"""{target}
                     SELECT nid, system, field, value, updated_at FROM (
                       SELECT f.nid, f.system, f.field, {value} AS value, coalesce(f.updated_at, now()) AS updated_at
                       FROM _raw_fields f {' '.join(joins)}) WHERE value IS NOT NULL""")
        if self._f_cols and not self._direct:
            # Keep a field's old updated_at when its value did not change: provenance is per field.
            db.x("""UPDATE _new_fields SET updated_at = o.updated_at FROM identity.field_values o
                    WHERE o.nid = _new_fields.nid AND o.field = _new_fields.field AND o.value = _new_fields.value
                      AND _new_fields.updated_at IS DISTINCT FROM o.updated_at""")
        if not self._direct:
            for table in ("records", "identifiers", "field_values"):
                db.x(f"DELETE FROM identity.{table} WHERE nid IN {gone}")
        db.x("INSERT INTO identity.records SELECT nid, node, system, record_id, coalesce(updated_at, now()), "
             "row_hash, now(), node_key FROM _new_records")
        if not self._direct:
            db.x("INSERT INTO identity.identifiers SELECT nid, id_type, value, vid FROM _norm_ids")
        if self._f_cols and not self._direct:
            db.x("INSERT INTO identity.field_values SELECT nid, system, field, value, updated_at FROM _new_fields")
        for i in range(len(self._selects)):
            db.x(f"DROP TABLE IF EXISTS _src_{i}")
        for table in ("_raw_fields", "_new_fields", "_norm_ids", "_changed", "_new_records"):
            db.x(f"DROP TABLE IF EXISTS {table}")

    # -- 4. merge ----------------------------------------------------------------------------------
    # Keys and limited values are 64-bit hashes of (type, value) (``vid``), so every join is on integers.
    def _merge(self, run_id: str) -> int:
        db = self.db
        db.x("CREATE OR REPLACE TEMP TABLE _comp AS SELECT nid, nid AS label FROM _scope")
        types = ", ".join(literal(t) for t in self.rule_types) or "NULL"
        db.x(f"""CREATE OR REPLACE TEMP TABLE _ids AS
                 SELECT i.nid, i.id_type, i.vid FROM identity.identifiers i SEMI JOIN _scope s ON s.nid = i.nid
                 WHERE i.id_type IN ({types})""")
        # Shared values (held by more records than max_records_per_value) never link.
        shared = [(t, c.max_records_per_value) for t, c in self.cfg.identifiers.items() if c.max_records_per_value]
        if shared:
            conds = " OR ".join(f"(id_type = {literal(t)} AND n > {int(n)})" for t, n in shared)
            in_types = ", ".join(literal(t) for t, _ in shared)
            # identifiers are distinct per (record, type, value), so count(*) counts records
            db.x(f"""CREATE OR REPLACE TEMP TABLE _shared AS
                     SELECT vid, id_type, value FROM (
                       SELECT i.vid, any_value(i.id_type) AS id_type, any_value(i.value) AS value, count(*) AS n
                       FROM identity.identifiers i
                       WHERE i.id_type IN ({in_types})
                         AND i.vid IN (SELECT vid FROM _ids WHERE id_type IN ({in_types}))
                       GROUP BY i.vid)
                     WHERE {conds}""")
            db.x(f"INSERT INTO identity.conflicts SELECT {literal(run_id)}, NULL, id_type, value, "
                 "'shared by more records than max_records_per_value', now() FROM _shared")
            db.x("CREATE OR REPLACE TEMP TABLE _ids AS SELECT i.* FROM _ids i ANTI JOIN _shared s ON s.vid = i.vid")
        # Limited values per record: identifier types with max_per_person, and one pseudo-type per unlink pair.
        lim_parts = ["SELECT NULL::BIGINT AS nid, NULL::VARCHAR AS lim_type, NULL::UBIGINT AS v, 0 AS max_n "
                     "WHERE false"]
        for t, c in self.cfg.identifiers.items():
            if c.max_per_person:
                lim_parts.append(f"SELECT i.nid, {literal(t)}, i.vid, {int(c.max_per_person)} FROM "
                                 f"identity.identifiers i SEMI JOIN _scope s ON s.nid = i.nid "
                                 f"WHERE i.id_type = {literal(t)}")
        for k, (a, b) in enumerate(self.cfg.unlinks):
            for side, node in ((1, a), (2, b)):
                lim_parts.append(f"SELECT nid, 'unlink:{k}', {side}, 1 FROM identity.records "
                                 f"WHERE node = {literal(node)}")
        db.x("CREATE OR REPLACE TEMP TABLE _lim AS " + " UNION ALL ".join(lim_parts))
        refused = 0
        if self.cfg.links:
            pairs = " UNION ALL ".join(
                f"SELECT r.nid, {k}::UBIGINT AS key FROM identity.records r WHERE r.node IN "
                f"({literal(a)}, {literal(b)})" for k, (a, b) in enumerate(self.cfg.links))
            db.x(f"CREATE OR REPLACE TEMP TABLE _keys AS SELECT p.* FROM ({pairs}) p "
                 "SEMI JOIN _scope s ON s.nid = p.nid")
            self._apply_rule(run_id, ["links"], checked=False)
        rule_keys = []
        for rule in self.cfg.merge_rules:
            types_ = self.cfg.rule_types(rule)
            sql = f"SELECT nid, vid AS key FROM _ids WHERE id_type = {literal(types_[0])}"
            for t in types_[1:]:
                sql = (f"SELECT k.nid, hash(k.key, i.vid) AS key FROM ({sql}) k JOIN _ids i "
                       f"ON i.nid = k.nid AND i.id_type = {literal(t)}")
            rule_keys.append((types_, sql))
        if len(rule_keys) > 1:
            db.x("CREATE OR REPLACE TEMP TABLE _keys AS " + " UNION ALL ".join(sql for _, sql in rule_keys))
            if self._merge_all_rules_at_once():
                return refused
        for types_, sql in rule_keys:
            db.x(f"CREATE OR REPLACE TEMP TABLE _keys AS {sql}")
            refused += self._apply_rule(run_id, types_, checked=True)
        return refused

    def _merge_all_rules_at_once(self) -> bool:
        """The usual case, in one pass: merge by every rule's keys together; done if no resulting cluster
        breaks a limit. Then rule order cannot matter: applied one by one, no rule would refuse a key (each
        step's clusters lie inside these), and the clusters and their labels (the smallest record number)
        come out the same. Otherwise False, with ``_comp`` untouched, and the rules run one by one."""
        if not self._edges():
            return True
        self._limits_of_edges()
        mapping = self._components()
        if self._bad_clusters(mapping, only_large=False):
            return False
        self._relabel(mapping)
        return True

    def _edges(self) -> int:
        """``_e(a, key)``: component labels joined by a key that more than one component holds."""
        self.db.x("""CREATE OR REPLACE TEMP TABLE _e AS
                SELECT a, key FROM (SELECT DISTINCT c.label AS a, k.key FROM _keys k JOIN _comp c USING (nid))
                QUALIFY count(*) OVER (PARTITION BY key) > 1""")
        return int(self.db.one("SELECT count(*) FROM _e"))

    def _limits_of_edges(self) -> None:
        """``_cl``: the limited values held by each component in ``_e``."""
        self.db.x("""CREATE OR REPLACE TEMP TABLE _cl AS
                SELECT DISTINCT c.label, l.lim_type, l.v, l.max_n FROM _lim l JOIN _comp c USING (nid)
                WHERE c.label IN (SELECT a FROM _e)""")

    def _relabel(self, mapping: str) -> None:
        self.db.x(f"""CREATE OR REPLACE TEMP TABLE _comp AS
                 SELECT c.nid, coalesce(m.l, c.label) AS label FROM _comp c LEFT JOIN {mapping} m ON m.a = c.label""")

    def _apply_rule(self, run_id: str, types: list[str], checked: bool) -> int:
        db = self.db
        if not self._edges():
            return 0
        refused = 0
        if checked:
            self._limits_of_edges()
        mapping = self._components()
        # The usual case: no merged cluster breaks a limit, so no key needs to be refused (limits only grow
        # with a cluster, so a key that breaks one alone also leaves its whole cluster broken).
        if checked and self._bad_clusters(mapping, only_large=False):
            # A key whose own merge would break a limit is refused.
            db.x("""CREATE OR REPLACE TEMP TABLE _refused AS
                    SELECT key, min(lim_type) AS lim_type FROM (
                      SELECT e.key, cl.lim_type, cl.max_n, min(cl.v) AS lo, max(cl.v) AS hi,
                             count(DISTINCT cl.v) FILTER (WHERE cl.max_n > 1) AS n
                      FROM _e e JOIN _cl cl ON cl.label = e.a GROUP BY e.key, cl.lim_type, cl.max_n)
                    WHERE CASE WHEN max_n = 1 THEN lo <> hi ELSE n > max_n END GROUP BY key""")
            refused += self._record_refused(run_id, types,
                                            "would give one person more than max_per_person values")
            db.x("DELETE FROM _e WHERE key IN (SELECT key FROM _refused)")
            mapping = self._components()
            # Keys that pass alone may still break a limit together: such clusters are not merged by this
            # rule. (A cluster of two components was checked whole by the per-key check: only 3+ can.)
            if self._bad_clusters(mapping, only_large=True):
                db.x(f"""CREATE OR REPLACE TEMP TABLE _refused AS
                         SELECT DISTINCT e.key, NULL::VARCHAR AS lim_type FROM _e e
                         JOIN {mapping} m ON m.a = e.a WHERE m.l IN (SELECT l FROM _bad)""")
                refused += self._record_refused(run_id, types, "would, with other values, give one person "
                                                "more than max_per_person values")
                db.x(f"DELETE FROM {mapping} WHERE l IN (SELECT l FROM _bad)")
        self._relabel(mapping)
        return refused

    def _bad_clusters(self, mapping: str, only_large: bool) -> int:
        """``_bad(l)``: the clusters of ``mapping`` whose records together break a limit; returns how many."""
        large = f"WHERE m.l IN (SELECT l FROM {mapping} GROUP BY l HAVING count(*) > 2)" if only_large else ""
        joined = f"{mapping} m JOIN _cl cl ON cl.label = m.a {large}{' AND' if large else ' WHERE'}"
        # one value allowed: two different ones (min <> max) break it; more allowed: count distinct values
        self.db.x(f"""CREATE OR REPLACE TEMP TABLE _bad AS
                      SELECT m.l FROM {joined} cl.max_n = 1 GROUP BY m.l, cl.lim_type HAVING min(cl.v) <> max(cl.v)
                      UNION
                      SELECT l FROM (SELECT DISTINCT m.l, cl.lim_type, cl.max_n, cl.v FROM {joined} cl.max_n > 1)
                      GROUP BY l, lim_type, max_n HAVING count(*) > max_n""")
        return int(self.db.one("SELECT count(*) FROM _bad"))

    def _record_refused(self, run_id: str, types: list[str], reason: str) -> int:
        n = int(self.db.one("SELECT count(*) FROM _refused"))
        if not n:
            return 0
        rule = "+".join(types)
        if len(types) == 1:
            shown = ("(SELECT i.vid, any_value(i.value) AS value FROM identity.identifiers i "
                     "SEMI JOIN _refused r ON r.key = i.vid GROUP BY i.vid)")
        else:
            shown = "(SELECT key AS vid, '(' || key::VARCHAR || ')' AS value FROM _refused)"
        self.db.x(f"""INSERT INTO identity.conflicts
                      SELECT {literal(run_id)}, {literal(rule)}, coalesce(r.lim_type, {literal(rule)}), s.value,
                             CASE WHEN r.lim_type LIKE 'unlink:%' THEN 'would join records kept apart by unlinks'
                                  ELSE {literal(reason)} END, now()
                      FROM _refused r LEFT JOIN {shown} s ON s.vid = r.key""")
        return n

    def _components(self) -> str:
        """Connected components of the bipartite graph ``_e(a, key)``; returns the table ``_m(a, l)``: each
        component label ``a`` and the smallest label ``l`` it is connected to."""
        db = self.db
        # min-label propagation with pointer jumping; in the first round every label is its own
        db.x("CREATE OR REPLACE TEMP TABLE _kl AS SELECT key, min(a) AS l FROM _e GROUP BY key")
        total = None
        for _ in range(200):
            db.x("CREATE OR REPLACE TEMP TABLE _m2 AS SELECT e.a, min(k.l) AS l FROM _e e JOIN _kl k USING (key) "
                 "GROUP BY e.a")
            db.x("CREATE OR REPLACE TEMP TABLE _m AS SELECT m.a, least(m.l, coalesce(p.l, m.l)) AS l "
                 "FROM _m2 m LEFT JOIN _m2 p ON p.a = m.l")
            # labels only ever go down, so an unchanged sum means that no label moved
            now = db.one("SELECT sum(l) FROM _m")
            if now == total:
                break
            total = now
            db.x("CREATE OR REPLACE TEMP TABLE _kl AS SELECT e.key, min(m.l) AS l FROM _e e JOIN _m m USING (a) "
                 "GROUP BY e.key")
        return "_m"

    # -- 5. stable ids -------------------------------------------------------------------------------
    def _assign_ids(self, run_id: str) -> None:
        db = self.db
        db.x("""CREATE OR REPLACE TEMP TABLE _cand AS
                SELECT c.label, g.person_id, count(*) AS n FROM _comp c JOIN identity.graph g USING (nid)
                GROUP BY ALL""")
        db.x("""CREATE OR REPLACE TEMP TABLE _owner AS
                SELECT * FROM _cand QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY n DESC, label) = 1""")
        db.x("""CREATE OR REPLACE TEMP TABLE _pick AS
                SELECT o.label, o.person_id FROM _owner o LEFT JOIN identity.persons p USING (person_id)
                QUALIFY row_number() OVER (PARTITION BY o.label ORDER BY p.first_seen_at NULLS LAST, o.n DESC,
                                           o.person_id) = 1""")
        db.x(f"""CREATE OR REPLACE TEMP TABLE _fresh AS
                 SELECT l.label, CASE WHEN p.person_id IS NULL THEN l.pid
                                      ELSE 'p_' || substr(md5(l.node || ':' || {literal(run_id)}), 1, 16) END
                        AS person_id
                 FROM (SELECT label, node, 'p_' || substr(md5(node), 1, 16) AS pid
                       FROM (SELECT c.label, min(r.node) AS node FROM _comp c JOIN identity.records r USING (nid)
                             WHERE c.label NOT IN (SELECT label FROM _pick) GROUP BY c.label)) l
                 LEFT JOIN identity.persons p ON p.person_id = l.pid""")
        db.x("""CREATE OR REPLACE TEMP TABLE _assign AS
                SELECT c.nid, c.label, coalesce(p.person_id, f.person_id) AS person_id FROM _comp c
                LEFT JOIN _pick p USING (label) LEFT JOIN _fresh f USING (label)""")
        # Old people of this scope that no cluster kept: merged into the owner's pick, or gone.
        db.x("""CREATE OR REPLACE TEMP TABLE _retired AS
                SELECT old.person_id, k.person_id AS merged_into FROM
                  (SELECT DISTINCT person_id FROM identity.graph WHERE nid IN (SELECT nid FROM _scope)
                   OR nid IN (SELECT nid FROM _deleted)) old
                LEFT JOIN _owner o ON o.person_id = old.person_id
                LEFT JOIN _pick k ON k.label = o.label
                WHERE old.person_id NOT IN (SELECT person_id FROM _pick)""")
        db.x("UPDATE identity.persons SET merged_into = r.merged_into, retired_at = now() FROM _retired r "
             "WHERE identity.persons.person_id = r.person_id")
        db.x("INSERT INTO identity.persons SELECT person_id, now(), NULL, NULL FROM _fresh")
        db.x("DELETE FROM identity.graph WHERE nid IN (SELECT nid FROM _scope UNION ALL SELECT nid FROM _deleted)")
        db.x("""INSERT INTO identity.graph SELECT r.system, r.record_id, a.person_id, a.nid, now()
                FROM _assign a JOIN identity.records r USING (nid)""")

    # -- 6. golden record ------------------------------------------------------------------------------
    def _golden(self, run_id: str, emit: bool) -> int:
        db = self.db
        db.x("""CREATE OR REPLACE TEMP TABLE _affected AS
                SELECT DISTINCT person_id FROM _assign UNION SELECT person_id FROM _retired""")
        fcfg = [(name, self.cfg.fields.get(name)) for name in self.fields]
        # One 124-bit sort key per value; arg_min picks the winner, the record id breaks ties deterministically.
        age = "(1099511627776::HUGEINT - least(greatest(coalesce(epoch(updated_at)::BIGINT, 0), 0), 1099511627775))"
        rank_cases = " ".join(f"WHEN field = {literal(n)} AND system = {literal(sys_)} THEN {r}"
                              for n, c in fcfg if c is not None for r, sys_ in enumerate(c.priority))
        prank = f"(CASE {rank_cases} ELSE 1000 END)" if rank_cases else "1000"
        mf = [n for n, c in fcfg if c is not None and c.survivorship == "most_frequent"]
        keys = []
        for name, c in fcfg:
            mode = c.survivorship if c is not None else "most_recent"
            if mode == "priority":
                key = f"(prank::HUGEINT << 84) + ({age} << 44) + nid"
            elif mode == "most_frequent":
                key = f"((1099511627776::HUGEINT - freq) << 84) + ({age} << 44) + nid"
            elif mode == "most_recent":
                key = f"({age} << 84) + (prank::HUGEINT << 44) + nid"
            else:
                continue
            keys.append(f"WHEN {literal(name)} THEN {key}")
        fv = (f"(SELECT a.label, f.field, f.value, f.system, f.updated_at, f.nid, {prank} AS prank "
              "FROM identity.field_values f JOIN _assign a USING (nid))")
        if mf or any(c is not None and c.survivorship == "sql" for _, c in fcfg):
            db.x(f"CREATE OR REPLACE TEMP TABLE _fv AS SELECT * FROM {fv}")
            fv = "_fv"
        freq_join = ""
        if mf:
            db.x(f"""CREATE OR REPLACE TEMP TABLE _freq AS SELECT label, field, value, count(*) AS freq FROM {fv}
                     WHERE field IN ({', '.join(literal(n) for n in mf)}) GROUP BY ALL""")
            freq_join = "LEFT JOIN _freq q USING (label, field, value)"
        picked_parts = []
        if keys:
            picked_parts.append(f"""
                SELECT label, field, w.value, w.system, w.updated_at FROM (
                  SELECT label, field,
                         arg_min({{'value': value, 'system': system, 'updated_at': updated_at}},
                                 CASE field {' '.join(keys)} END) AS w
                  FROM (SELECT v.*, {'coalesce(q.freq, 0)' if mf else '0'} AS freq FROM {fv} v {freq_join})
                  WHERE field IN ({', '.join(literal(n) for n, c in fcfg if c is None or c.survivorship != 'sql')})
                  GROUP BY label, field)""")
        for name, c in fcfg:
            if c is not None and c.survivorship == "sql":
                typed = f"TRY_CAST(value AS {_CAST[c.type]})"
                picked_parts.append(f"""
                    SELECT s.label, {literal(name)} AS field, CAST(s.v AS VARCHAR) AS value,
                           p.w.system AS system, p.w.updated_at AS updated_at
                    FROM (SELECT label, ({expression(c.sql or '')}) AS v
                          FROM (SELECT label, {typed} AS value, system, updated_at FROM {fv}
                                WHERE field = {literal(name)}) GROUP BY label) s
                    LEFT JOIN (SELECT label, value,
                                      arg_max({{'system': system, 'updated_at': updated_at}}, updated_at) AS w
                               FROM {fv} WHERE field = {literal(name)} GROUP BY label, value) p
                      ON p.label = s.label AND p.value = CAST(s.v AS VARCHAR)""")
        if picked_parts:
            db.x("CREATE OR REPLACE TEMP TABLE _picked AS " + " UNION ALL ".join(picked_parts))
        else:
            db.x("CREATE OR REPLACE TEMP TABLE _picked (label BIGINT, field VARCHAR, value VARCHAR, "
                 "system VARCHAR, updated_at TIMESTAMPTZ)")
        db.x("DROP TABLE IF EXISTS _fv")
        selects = []
        for name, c in fcfg:
            ftype = _CAST[c.type] if c else "VARCHAR"
            lit = literal(name)
            selects += [f"TRY_CAST(max(value) FILTER (WHERE field = {lit}) AS {ftype}) AS {quote(name)}",
                        f"max(system) FILTER (WHERE field = {lit}) AS {quote(name + '__source')}",
                        f"max(updated_at) FILTER (WHERE field = {lit}) AS {quote(name + '__updated_at')}"]
        names = sorted({src.system for src in self.cfg.sources})
        systems = ("list_filter([" + ", ".join(f"CASE WHEN bool_or(r.system = {literal(n)}) THEN {literal(n)} END"
                                              for n in names) + "], lambda x: x IS NOT NULL)")
        golden = f"""
                 SELECT s.person_id, g.* EXCLUDE (label), s.record_count, s.systems, now() AS resolved_at
                 FROM (SELECT a.label, any_value(a.person_id) AS person_id, count(*) AS record_count,
                              {systems} AS systems
                       FROM _assign a JOIN identity.records r USING (nid) GROUP BY a.label) s
                 LEFT JOIN (SELECT label{''.join(', ' + x for x in selects)} FROM _picked GROUP BY label) g
                   USING (label)"""
        if not (emit and self.fields):
            # Nothing to compare: the new rows go straight in.
            db.x("DELETE FROM identity.golden_records WHERE person_id IN (SELECT person_id FROM _affected)")
            db.x(f"INSERT INTO identity.golden_records BY NAME {golden}")
            return 0
        db.x(f"CREATE OR REPLACE TEMP TABLE _golden AS {golden}")
        items = ", ".join(
            f"{{'key': {literal(n)}, 'value': {{'old': to_json(o.{quote(n)}), 'new': to_json(g.{quote(n)}), "
            f"'source': g.{quote(n + '__source')}}}, 'changed': o.{quote(n)} IS DISTINCT FROM g.{quote(n)}}}"
            for n in self.fields)
        db.x(f"""CREATE OR REPLACE TEMP TABLE _changes AS
                 SELECT person_id, to_json({{'person_id': person_id, 'changed': map_from_entries(
                          list_transform(ch, lambda x: {{'key': x.key, 'value': x.value}}))}}) AS payload
                 FROM (SELECT g.person_id, list_filter([{items}], lambda x: x.changed) AS ch
                       FROM _golden g LEFT JOIN identity.golden_records o USING (person_id))
                 WHERE len(ch) > 0""")
        updates = int(db.one("SELECT count(*) FROM _changes"))
        db.x(f"INSERT INTO identity.outbox SELECT 'identity:' || {literal(run_id)} || ':' || person_id, "
             "'profile.updated', payload::VARCHAR, now() FROM _changes")
        db.x("DELETE FROM identity.golden_records WHERE person_id IN (SELECT person_id FROM _affected)")
        db.x("INSERT INTO identity.golden_records BY NAME SELECT * FROM _golden")
        return updates
