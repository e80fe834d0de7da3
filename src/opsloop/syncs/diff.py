"""The diff engine: fingerprints, the plan of a run, and the per-row sync state — all in the warehouse.

Why the warehouse and not the state store: the fingerprints sit next to the data, so the diff is one
join inside the warehouse (``FULL OUTER JOIN`` of the source's fingerprints against the last delivered ones);
nothing crosses into Python but the changed rows. The SQL is the subset DuckDB and Postgres share
(``Warehouse.RUNS_SYNCS``).

Tables (schema ``opsloop_sync``):

- ``state__<sync>``: one row per key opsloop delivered or tried to: ``fp`` (fingerprint last delivered),
  ``dest_id``, ``created`` (opsloop created the record), ``failed_fp`` / ``attempts`` / ``error``,
  ``delivered_at`` (when opsloop last wrote the record: a value the system set before then is not a new edit).
- ``plan__<sync>``: the rows of the current run (dropped when the run ends).
- ``journal``: a write-ahead log. A batch is written as ``sending`` before it leaves and with its per-row
  results after; ``fold`` applies finished rows to the state and moves them to ``row_results``. Rows still
  ``sending`` after a crash are the batch that was in flight: resent with the same idempotency keys to an
  idempotent destination, or recorded as ``unconfirmed`` (never sent twice) otherwise.
- ``runs`` and ``row_results``: the history users chart and query.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlglot import exp

from ..errors import WarehouseError
from ..narrow import as_int
from ..warehouse import QueryResult, Warehouse
from ..warehouse.sql import quote
from .config import FieldSpec

if TYPE_CHECKING:
    from ..identity.holdings import FieldRule

SCHEMA = "opsloop_sync"
OPS = ("create", "update", "delete")


def ident(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _column(name: str, as_written: bool) -> str:
    """A source column in the diff engine's SQL. Quoted where the SQL runs as written (DuckDB, Postgres); for a
    transpiled engine a plain lower-case name stays unquoted (sqlglot quotes it if the engine reserves it), so an
    engine that folds unquoted names (Snowflake: ``email`` is ``EMAIL``) finds the column a model created."""
    if as_written:
        return ident(name)
    plain = quote(name, "duckdb")
    return plain if plain == name == name.lower() else ident(name)


def literal(value: str) -> str:
    return exp.Literal.string(value).sql("duckdb")


def relation_sql(table: str) -> str:
    """A (possibly schema-qualified) table name as safe SQL."""
    return exp.to_table(table, dialect="duckdb").sql("duckdb")


def ensure_tables(warehouse: Warehouse) -> None:
    """The tables every sync shares, made when missing. (``journal.seq`` orders one sync's rows: the runner
    numbers them, holding the sync's lease; tables from before that still have a sequence as its default.)"""
    warehouse.ensure_schema(SCHEMA)
    for table, columns in (
        ("journal", "seq BIGINT, sync VARCHAR, run_id VARCHAR, batch_id VARCHAR, key VARCHAR, fp VARCHAR, "
                    "op VARCHAR, status VARCHAR, error VARCHAR, dest_id VARCHAR, created BOOLEAN, "
                    "recorded_at TIMESTAMPTZ"),
        ("row_results", "run_id VARCHAR, sync VARCHAR, key VARCHAR, op VARCHAR, status VARCHAR, error VARCHAR, "
                        "dest_id VARCHAR, recorded_at TIMESTAMPTZ"),
        ("runs", "run_id VARCHAR, sync VARCHAR, trigger VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, "
                 "status VARCHAR, planned_creates BIGINT, planned_updates BIGINT, planned_deletes BIGINT, "
                 "sent BIGINT, failed BIGINT, skipped BIGINT, unconfirmed BIGINT, error VARCHAR"),
    ):
        _create(warehouse, f"{SCHEMA}.{table}", columns)


STATE_COLUMNS = ("key VARCHAR, fp VARCHAR, dest_id VARCHAR, created BOOLEAN, failed_fp VARCHAR, attempts INTEGER, "
                 "error VARCHAR, updated_at TIMESTAMPTZ, delivered_at TIMESTAMPTZ")


def _create(warehouse: Warehouse, table: str, columns: str) -> None:
    """``CREATE TABLE IF NOT EXISTS`` of a table the diff engine updates in place."""
    ddl = warehouse.portable(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    warehouse.execute(f"{ddl} {warehouse.STATE_TABLE_SUFFIX}".strip())


@dataclass
class PlanColumns:
    """How the plan table's value columns map back to the mapping."""

    specs: list[FieldSpec]
    value_cols: dict[int, str]
    jinja_cols: dict[int, list[tuple[str, str]]]
    origin_cols: dict[int, str]


@dataclass
class Enforcement:
    """The information hierarchy enforced in the sync's system: which mapped fields are compared with what the
    system holds (``held_sql``, one row per ``person_id``, from the identity package), and how."""

    system: str
    held_sql: str
    person_col: str
    """The source's column with the person id (``person_id`` of identity.golden_records)."""
    rules: dict[int, FieldRule] = field(default_factory=dict)
    """Mapping index -> the golden field's rule; the mapping's source column is the golden field's name."""
    skip_nulls: bool = True
    """A null golden value is not enforced (``null_policy: skip``)."""

    @staticmethod
    def columns(i: int) -> tuple[str, str, str, str]:
        """Plan columns for mapping ``i``: corrects it, the value held, the system's record id, when set."""
        return f"__x{i}", f"__h{i}", f"__hr{i}", f"__ha{i}"

    def any_fix(self) -> str:
        """SQL over the plan table: the row corrects at least one field."""
        return "(" + " OR ".join(f"__x{i}" for i in self.rules) + ")"


class SyncTables:
    """The warehouse side of one sync."""

    def __init__(self, warehouse: Warehouse, sync: str) -> None:
        self.wh = warehouse
        self.sync = sync
        self.state = f"{SCHEMA}.{ident('state__' + sync)}"
        self.plan = f"{SCHEMA}.{ident('plan__' + sync)}"
        self._sync_lit = literal(sync)
        self._seq: int | None = None
        """The last ``journal.seq`` of this sync (read at the first append after a fold)."""

    def _x(self, sql: str, params: Sequence[object] = ()) -> None:
        self.wh.execute(self.wh.portable(sql), params)

    def _q(self, sql: str, params: Sequence[object] = ()) -> QueryResult:
        return self.wh.query(self.wh.portable(sql), params)

    def ensure(self) -> None:
        ensure_tables(self.wh)
        _create(self.wh, self.state, STATE_COLUMNS)
        if "delivered_at" not in self.columns(self.state):
            # A state table from before delivered_at: a delivered row was last written when it last changed.
            self._transaction(
                f"ALTER TABLE {self.state} ADD COLUMN delivered_at TIMESTAMPTZ; "
                f"UPDATE {self.state} SET delivered_at = updated_at WHERE fp IS NOT NULL;"
            )

    # -- the source ---------------------------------------------------------------------------------
    def columns(self, source: str) -> list[str]:
        return [str(c) for c in self._q(f"SELECT * FROM {source} LIMIT 0").columns]

    @staticmethod
    def fingerprint_sql(parts: Sequence[str]) -> str:
        """md5 over the mapped values, NULL kept distinct from '' (chr(1) stands for NULL)."""
        cols = ", ".join(f"coalesce(CAST({p} AS VARCHAR), chr(1))" for p in parts)
        return f"md5(concat_ws(chr(31), {cols}))"

    @staticmethod
    def plan_columns(specs: list[FieldSpec], source_columns: Sequence[str], system: str | None) -> PlanColumns:
        value_cols: dict[int, str] = {}
        jinja_cols: dict[int, list[tuple[str, str]]] = {}
        origin_cols: dict[int, str] = {}
        available = set(source_columns)
        for i, spec in enumerate(specs):
            if spec.kind == "jinja":
                jinja_cols[i] = [(col, f"__j{i}_{k}") for k, col in enumerate(spec.columns)]
            else:
                value_cols[i] = f"__v{i}"
            if system and spec.kind == "column" and f"{spec.source}__source" in available:
                origin_cols[i] = f"__o{i}"
        return PlanColumns(specs, value_cols, jinja_cols, origin_cols)

    def _source_select(self, source: str, key: str, pc: PlanColumns, person_col: str | None = None) -> str:
        col = functools.partial(_column, as_written=self.wh.RUNS_DUCKDB_SQL)
        selects = [f"CAST({col(key)} AS VARCHAR) AS __key"]
        if person_col:
            selects.append(f"CAST({col(person_col)} AS VARCHAR) AS __person")
        parts: list[str] = []
        for i, spec in enumerate(pc.specs):
            if spec.kind == "column":
                selects.append(f"{col(spec.source)} AS {pc.value_cols[i]}")
                parts.append(col(spec.source))
            elif spec.kind == "sql":
                expr = self.wh.embeddable(spec.source)
                selects.append(f"({expr}) AS {pc.value_cols[i]}")
                parts.append(f"({expr})")
            else:
                for name, alias in pc.jinja_cols[i]:
                    selects.append(f"{col(name)} AS {alias}")
                    parts.append(col(name))
        for i, alias in pc.origin_cols.items():
            selects.append(f"{col(pc.specs[i].source + '__source')} AS {alias}")
        selects.append(f"{self.fingerprint_sql(parts)} AS __fp")
        return f"SELECT {', '.join(selects)} FROM {source} WHERE {col(key)} IS NOT NULL"

    # -- the plan -----------------------------------------------------------------------------------
    def build_plan(self, source: str, key: str, pc: PlanColumns, mode: str, full: bool, max_retries: int,
                   enforcement: Enforcement | None = None) -> None:
        """Materialise the rows this run has to handle into ``plan__<sync>``, ordered for sending.

        With ``enforcement``, a row whose data did not change is planned too (as an update) when its system
        holds a losing value of an enforced field, set after opsloop last wrote the record (``__x<i>`` tells
        which fields it corrects)."""
        value_aliases = [*pc.value_cols.values(), *(a for cols in pc.jinja_cols.values() for _, a in cols),
                         *pc.origin_cols.values()]
        carried = "".join(f", src.{a}" for a in value_aliases)
        held_cte, held_join, person = "", "", None
        fix_exprs: list[str] = []
        if enforcement is not None and enforcement.rules:
            held_cte = f"held AS ({enforcement.held_sql}),"
            held_join = "LEFT JOIN held ON held.person_id = src.__person"
            person = enforcement.person_col
            carried += ", src.__person"
            for i, rule in enforcement.rules.items():
                x, h, hr, ha = Enforcement.columns(i)
                name = rule.field
                held, held_at = f"held.{ident(name)}", f"held.{ident(name + '__at')}"
                conditions = ["src.__key IS NOT NULL", "st.fp IS NOT NULL", "held.person_id IS NOT NULL",
                              f"(st.delivered_at IS NULL OR {held_at} > st.delivered_at)",
                              rule.differs(held, f"src.{pc.value_cols[i]}")]
                if i in pc.origin_cols:
                    conditions.append(f"src.{pc.origin_cols[i]} IS DISTINCT FROM {literal(enforcement.system)}")
                if enforcement.skip_nulls:
                    conditions.append(f"src.{pc.value_cols[i]} IS NOT NULL")
                fix = f"coalesce({' AND '.join(conditions)}, FALSE)"
                fix_exprs.append(fix)
                carried += (f", {fix} AS {x}, {held} AS {h}, held.{ident(name + '__record')} AS {hr}, "
                            f"{held_at} AS {ha}")
        fixes = " OR ".join(fix_exprs) or "FALSE"
        never_sent = "(st.key IS NULL OR st.fp IS NULL)"
        changed = "TRUE" if full else f"({never_sent} OR st.fp IS DISTINCT FROM src.__fp)"
        if mode == "insert":
            changed = "TRUE" if full else never_sent
        given_up = (
            "FALSE" if full else
            f"(st.failed_fp IS NOT NULL AND st.failed_fp = src.__fp AND st.attempts >= {int(max_retries)})"
        )
        select = f"""
        WITH src AS ({self._source_select(source, key, pc, person)}),
        st AS (SELECT key, fp, dest_id, created, failed_fp, attempts, delivered_at FROM {self.state}),
        inflight AS (
            SELECT DISTINCT ON (key) key, batch_id, fp
            FROM {SCHEMA}.journal WHERE sync = {self._sync_lit} AND status = 'sending' ORDER BY key, seq DESC
        ),
        {held_cte}
        diff AS (
            SELECT coalesce(src.__key, st.key) AS __key,
                   CASE WHEN src.__key IS NULL THEN 'delete' WHEN {never_sent} THEN 'create' ELSE 'update' END
                       AS __op,
                   src.__fp, st.dest_id AS __dest_id, coalesce(st.created, FALSE) AS __created,
                   coalesce(st.attempts, 0) AS __attempts{carried}
            FROM src FULL OUTER JOIN st ON src.__key = st.key {held_join}
            WHERE src.__key IS NULL OR (({changed} OR {fixes}) AND NOT {given_up})
        )
        SELECT diff.*, CASE WHEN inflight.fp IS NOT DISTINCT FROM diff.__fp THEN inflight.batch_id END AS __batch,
               row_number() OVER (ORDER BY (inflight.fp IS NOT DISTINCT FROM diff.__fp) DESC NULLS LAST,
                                  inflight.batch_id, diff.__op, diff.__key) AS __n
        FROM diff LEFT JOIN inflight ON inflight.key = diff.__key
        """
        self._prepare(self.plan, select)

    def plan_counts(self) -> dict[str, int]:
        rows = self._q(
            f"SELECT __op, __created, count(*) FROM {self.plan} GROUP BY __op, __created"
        ).rows
        counts = {"create": 0, "update": 0, "delete": 0, "forget": 0}
        for op, created, n in rows:
            counts["delete" if op == "delete" and created else "forget" if op == "delete" else str(op)] += as_int(n)
        return counts

    def correction_count(self, enforcement: Enforcement) -> int:
        """Rows of the current plan that correct a losing value in their system."""
        return as_int(self._q(f"SELECT count(*) FROM {self.plan} WHERE {enforcement.any_fix()}").rows[0][0])

    def correction_sample(self, enforcement: Enforcement, limit: int) -> list[dict[str, object]]:
        return self._q(f"SELECT * FROM {self.plan} WHERE {enforcement.any_fix()} ORDER BY __n LIMIT ?",
                             (limit,)).as_dicts()

    def duplicate_keys(self) -> list[str]:
        rows = self._q(f"SELECT __key FROM {self.plan} GROUP BY 1 HAVING count(*) > 1 LIMIT 5").rows
        return [str(r[0]) for r in rows]

    def plan_page(self, after: int, limit: int) -> list[dict[str, object]]:
        return self._q(
            f"SELECT * FROM {self.plan} WHERE __n > ? ORDER BY __n LIMIT ?", (after, limit)
        ).as_dicts()

    def plan_sample(self, op: str, created: bool | None, limit: int) -> list[dict[str, object]]:
        where = "__op = ?"
        params: list[object] = [op]
        if created is not None:
            where += " AND __created = ?"
            params.append(created)
        return self._q(f"SELECT * FROM {self.plan} WHERE {where} ORDER BY __n LIMIT ?",
                             (*params, limit)).as_dicts()

    def drop_plan(self) -> None:
        self._x(f"DROP TABLE IF EXISTS {self.plan}")

    def owned_count(self) -> int:
        return as_int(self._q(f"SELECT count(*) FROM {self.state} WHERE created").rows[0][0])

    # -- the journal --------------------------------------------------------------------------------
    def journal(self, rows: list[dict[str, object]]) -> None:
        """Append journal rows (one warehouse commit, through Arrow where the engine takes it)."""
        if not rows:
            return
        import pyarrow as pa

        if self._seq is None:
            self._seq = as_int(self._q(f"SELECT coalesce(max(seq), 0) FROM {SCHEMA}.journal "
                                       f"WHERE sync = {self._sync_lit}").rows[0][0])
        first, self._seq = self._seq + 1, self._seq + len(rows)
        columns = ("sync", "run_id", "batch_id", "key", "fp", "op", "status", "error", "dest_id", "created",
                   "recorded_at")
        types = [pa.string()] * 9 + [pa.bool_(), pa.timestamp("us", tz="UTC")]
        data = {c: pa.array([r.get(c) for r in rows], type=t) for c, t in zip(columns, types, strict=True)}
        table = pa.table({"seq": pa.array(range(first, first + len(rows)), type=pa.int64()), **data})
        self.wh.insert_arrow(f"{SCHEMA}.journal", table)

    def settle_inflight(self, idempotent: bool) -> int:
        """After a crash: rows left ``sending`` are resent (idempotent) or recorded as unconfirmed."""
        count = as_int(self._q(
            f"SELECT count(*) FROM {SCHEMA}.journal j WHERE sync = {self._sync_lit} AND status = 'sending' AND "
            f"NOT EXISTS (SELECT 1 FROM {SCHEMA}.journal k WHERE k.sync = j.sync AND k.key = j.key AND k.seq > j.seq)"
        ).rows[0][0])
        if count and not idempotent:
            self._x(
                f"UPDATE {SCHEMA}.journal SET status = 'unconfirmed', "
                "error = 'the run was interrupted while this row was being sent; not sent again, to avoid a "
                f"duplicate' WHERE sync = {self._sync_lit} AND status = 'sending'"
            )
        return count

    def work(self, purpose: str) -> str:
        """A working table of this sync (``fold__<sync>``, ``reset__<sync>``): an ordinary table of the sync's
        own, made before the transaction that reads it, since Snowflake commits a transaction at any DDL."""
        return f"{SCHEMA}.{ident(purpose + '__' + self.sync)}"

    def _prepare(self, work: str, select: str) -> None:
        """Make the table ``work`` of ``select``'s rows, outside any transaction. (Only this sync's
        runner writes its journal rows and state, one run at a time, so nothing changes them in between.)"""
        self._x(f"DROP TABLE IF EXISTS {work}")
        suffix = f" {self.wh.TABLE_SUFFIX}" if self.wh.TABLE_SUFFIX else ""
        self.wh.execute(f"CREATE TABLE {work}{suffix} AS {self.wh.portable(select)}")

    def _transaction(self, script: str, work: str | None = None) -> None:
        """Run a script of DML as one transaction where the engine has them (``Warehouse.TRANSACTIONS``); roll
        back on error so the shared connection stays usable. The working table ``work`` the script read is
        dropped afterwards, either way."""
        try:
            self._x(f"BEGIN TRANSACTION; {script} COMMIT;" if self.wh.TRANSACTIONS else script)
        except WarehouseError:
            try:
                self._x("ROLLBACK")
            except WarehouseError:
                pass
            raise
        finally:
            if work is not None:
                self._x(f"DROP TABLE IF EXISTS {work}")

    def fold(self) -> None:
        """Apply finished journal rows to the state and move them to ``row_results``, in one transaction."""
        self._seq = None
        s = self._sync_lit
        ok = "('ok', 'unconfirmed', 'skipped')"
        written = "('ok', 'unconfirmed')"  # the record was (or may have been) written: delivered_at
        fold = self.work("fold")
        self._prepare(fold, f"""
            SELECT * FROM (
                SELECT *, row_number() OVER (PARTITION BY key ORDER BY seq DESC) AS rn
                FROM {SCHEMA}.journal WHERE sync = {s}
            ) AS ranked WHERE rn = 1 AND status <> 'sending'""")
        if not self.wh.UPDATE_FROM:
            self._fold_by_rebuild(fold, ok, written)
            return
        self._transaction(
            f"""
            UPDATE {self.state} SET fp = f.fp, dest_id = coalesce(f.dest_id, {self.state}.dest_id),
                   created = coalesce({self.state}.created, FALSE) OR coalesce(f.created, FALSE),
                   failed_fp = NULL, attempts = 0, error = NULL, updated_at = f.recorded_at,
                   delivered_at = CASE WHEN f.status IN {written} THEN f.recorded_at
                                       ELSE {self.state}.delivered_at END
                FROM {fold} f WHERE {self.state}.key = f.key AND f.status IN {ok};
            UPDATE {self.state} SET failed_fp = f.fp, error = f.error, updated_at = f.recorded_at,
                   attempts = CASE WHEN {self.state}.failed_fp IS NOT DISTINCT FROM f.fp
                                   THEN {self.state}.attempts + 1 ELSE 1 END
                FROM {fold} f WHERE {self.state}.key = f.key AND f.status = 'failed';
            INSERT INTO {self.state}
                SELECT f.key, CASE WHEN f.status = 'failed' THEN NULL ELSE f.fp END, f.dest_id,
                       coalesce(f.created, FALSE), CASE WHEN f.status = 'failed' THEN f.fp END,
                       CASE WHEN f.status = 'failed' THEN 1 ELSE 0 END,
                       CASE WHEN f.status = 'failed' THEN f.error END, f.recorded_at,
                       CASE WHEN f.status IN {written} THEN f.recorded_at END
                FROM {fold} f
                WHERE f.status IN ('ok', 'unconfirmed', 'skipped', 'failed')
                  AND NOT EXISTS (SELECT 1 FROM {self.state} st WHERE st.key = f.key);
            DELETE FROM {self.state} WHERE key IN (SELECT key FROM {fold} WHERE status IN ('deleted', 'forgotten'));
            INSERT INTO {SCHEMA}.row_results
                SELECT run_id, sync, key, op, status, error, dest_id, recorded_at FROM {SCHEMA}.journal
                WHERE sync = {s} AND status NOT IN ('sending', 'cancelled') AND key IN (SELECT key FROM {fold});
            DELETE FROM {SCHEMA}.journal WHERE sync = {s} AND key IN (SELECT key FROM {fold});
            """, fold
        )

    def _fold_by_rebuild(self, fold: str, ok: str, written: str) -> None:
        """``fold`` on an engine without ``UPDATE ... FROM`` or transactions (ClickHouse): the new state is built
        beside the old one, from the same rules, and swapped in at once; the journal rows go last, so a crash
        part-way folds them again on the next run (a failed row's attempt may then count twice; nothing is sent
        twice)."""
        s, state, nxt = self._sync_lit, self.state, self.work("next")
        good, failed, new = f"f.status IN {ok}", "f.status = 'failed'", "s.key IS NULL"
        try:
            self._x(f"DROP TABLE IF EXISTS {nxt}")
            _create(self.wh, nxt, STATE_COLUMNS)
            self._x(f"""
                INSERT INTO {nxt}
                SELECT coalesce(s.key, f.key),
                       CASE WHEN {good} THEN f.fp ELSE s.fp END,
                       CASE WHEN {good} THEN coalesce(f.dest_id, s.dest_id) WHEN {new} THEN f.dest_id
                            ELSE s.dest_id END,
                       CASE WHEN {good} THEN coalesce(s.created, FALSE) OR coalesce(f.created, FALSE)
                            WHEN {new} THEN coalesce(f.created, FALSE) ELSE s.created END,
                       CASE WHEN {good} THEN NULL WHEN {failed} THEN f.fp ELSE s.failed_fp END,
                       CASE WHEN {good} THEN 0
                            WHEN {failed} THEN CASE WHEN s.failed_fp IS NOT DISTINCT FROM f.fp THEN s.attempts + 1
                                                    ELSE 1 END
                            ELSE s.attempts END,
                       CASE WHEN {good} THEN NULL WHEN {failed} THEN f.error ELSE s.error END,
                       CASE WHEN {good} OR {failed} THEN f.recorded_at ELSE s.updated_at END,
                       CASE WHEN f.status IN {written} THEN f.recorded_at ELSE s.delivered_at END
                FROM {state} s FULL OUTER JOIN {fold} f ON s.key = f.key
                WHERE (s.key IS NOT NULL OR f.status IN ('ok', 'unconfirmed', 'skipped', 'failed'))
                  AND NOT coalesce(f.status IN ('deleted', 'forgotten'), FALSE)""")
            self._x(f"""
                INSERT INTO {SCHEMA}.row_results
                SELECT run_id, sync, key, op, status, error, dest_id, recorded_at FROM {SCHEMA}.journal
                WHERE sync = {s} AND status NOT IN ('sending', 'cancelled') AND key IN (SELECT key FROM {fold})""")
            self.wh.exchange_tables(state, nxt)
            self._x(f"DELETE FROM {SCHEMA}.journal WHERE sync = {s} AND key IN (SELECT key FROM {fold})")
        finally:
            self._x(f"DROP TABLE IF EXISTS {nxt}")
            self._x(f"DROP TABLE IF EXISTS {fold}")

    def reset(self, source: str, key: str, pc: PlanColumns) -> int:
        """Mark every current source row as delivered, without sending anything."""
        work = self.work("reset")
        self._prepare(work, f"""
            SELECT src.__key AS key, src.__fp AS fp, st.dest_id, coalesce(st.created, FALSE) AS created
            FROM ({self._source_select(source, key, pc)}) src LEFT JOIN {self.state} st ON st.key = src.__key""")
        self._transaction(
            f"""
            DELETE FROM {SCHEMA}.journal WHERE sync = {self._sync_lit};
            DELETE FROM {self.state} WHERE TRUE;  -- ClickHouse: a DELETE needs a WHERE
            INSERT INTO {self.state} SELECT key, fp, dest_id, created, NULL, 0, NULL, now(), now() FROM {work};
            """, work
        )
        return as_int(self._q(f"SELECT count(*) FROM {self.state}").rows[0][0])

    # -- queries for the CLI ------------------------------------------------------------------------
    def failed_rows(self, limit: int = 50) -> list[dict[str, object]]:
        try:
            return self._q(
                f"SELECT key, error, attempts, updated_at FROM {self.state} WHERE failed_fp IS NOT NULL "
                "ORDER BY updated_at DESC LIMIT ?", (limit,)
            ).as_dicts()
        except WarehouseError:
            return []

    def run_rows(self, run_id: str, status: str | None = None, limit: int = 200) -> list[dict[str, object]]:
        """The rows one run handled (``row_results``), failed first; ``status`` keeps one status."""
        where = "run_id = ? AND sync = ?" + (" AND status = ?" if status else "")
        params: tuple[object, ...] = (run_id, self.sync, *((status,) if status else ()), limit)
        try:
            return self._q(
                f"SELECT key, op, status, error, dest_id, recorded_at FROM {SCHEMA}.row_results WHERE {where} "
                "ORDER BY status = 'failed' DESC, key LIMIT ?", params).as_dicts()
        except WarehouseError:
            return []

    def retry_failed(self) -> int:
        """Give every failed row its attempts back, so the next run sends it again even when it had used up
        ``max_retries`` on unchanged data; returns how many rows that is."""
        try:
            count = as_int(self._q(f"SELECT count(*) FROM {self.state} WHERE failed_fp IS NOT NULL").rows[0][0])
            self._x(f"UPDATE {self.state} SET attempts = 0 WHERE failed_fp IS NOT NULL")
        except WarehouseError:
            return 0
        return count

    def state_counts(self) -> dict[str, int]:
        try:
            row = self._q(
                f"SELECT count(*) FILTER (WHERE fp IS NOT NULL), count(*) FILTER (WHERE failed_fp IS NOT NULL), "
                f"count(*) FILTER (WHERE created) FROM {self.state}"
            ).rows[0]
        except WarehouseError:
            return {"synced": 0, "failing": 0, "owned": 0}
        return {"synced": as_int(row[0]), "failing": as_int(row[1]), "owned": as_int(row[2])}
