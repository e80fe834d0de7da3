"""Identity resolution in the warehouse, set-based, on DuckDB or Postgres.

One build, each stage a function in ``identity/stages/`` (which tables each reads and writes is listed there):

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

The output tables are documented in docs/identity.md. The SQL is written once, in a portable subset of DuckDB's;
``Conn`` translates it for the warehouse's engine (``_engine.py``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ..narrow import as_int
from ._sql import Conn, literal, quote
from .config import IdentityConfig
from .stages.golden import build_golden, golden_columns
from .stages.ids import assign_ids
from .stages.merging import merge
from .stages.normalizing import normalize_changed
from .stages.plan import Plan
from .stages.scoping import incremental_scope, write_records
from .stages.staging import diff, stage

BUILD_STAGES = ("stage", "diff", "normalize", "scope", "merge", "ids", "golden")
"""The stages of a build, in the order they run (the keys of ``BuildResult.timings``)."""

StageDone = Callable[[str, float], None]
"""``on_stage(name, seconds)``: called as each stage of a build ends (names from ``BUILD_STAGES``)."""

_RANDOM = "USING COMPRESSION uncompressed"
"""For 64-bit hash columns: random bits do not compress, and DuckDB's attempt costs a tenth of a build."""

_SCHEMA_SQL = [
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


def schema_sql(dialect: str) -> list[str]:
    """The identity tables; ``USING COMPRESSION`` is DuckDB's alone."""
    return [sql.replace(f" {_RANDOM}", "") if dialect != "duckdb" else sql for sql in _SCHEMA_SQL]


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

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in ("run_id", "kind", "records", "changed", "deleted", "scope", "persons",
                                             "profile_updates", "refused", "seconds", "systems")}


def ensure_schema(db: Conn) -> None:
    for sql in schema_sql(db.dialect):
        db.x(sql)
    if db.dialect == "postgres":
        from ._engine import postgres_functions

        if not db.one("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                      "WHERE n.nspname = 'identity' AND p.proname LIKE 'try\\_cast\\_%'"):
            for sql in postgres_functions():
                db.native(sql)


class Resolver:
    """Resolves identities for one ``identity.yml`` on one warehouse connection: the stages of
    ``identity/stages/`` in order, in one transaction, with the build's settings, timings and bookkeeping."""

    def __init__(self, db: Conn, config: IdentityConfig, field_names: list[str]) -> None:
        self.db = db
        self.cfg = config
        self.fields = field_names
        self.plan = Plan.of(config, field_names)
        self.rule_types = self.plan.rule_types

    # -- golden-record table shape ----------------------------------------------------------
    def golden_columns(self) -> list[tuple[str, str]]:
        return golden_columns(self.cfg, self.fields)

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
    def build(self, full: bool = False, on_stage: StageDone | None = None) -> BuildResult:
        """One build in one transaction; ``on_stage(name, seconds)`` hears of each stage as it ends."""
        started = time.perf_counter()
        run_id = time.strftime("%Y%m%dT%H%M%S") + "_" + uuid.uuid4().hex[:6]
        db = self.db
        ensure_schema(db)
        timings: dict[str, float] = {}

        def mark(name: str, t0: list[float]) -> None:
            now = time.perf_counter()
            timings[name] = round(now - t0[0], 4)
            t0[0] = now
            if on_stage is not None:
                on_stage(name, timings[name])

        t0 = [started]
        previous_limit = previous_order = None
        if self.cfg.memory_limit and db.engine.memory_settings:
            from .._durations import parse_size

            previous_limit = db.one("SELECT current_setting('memory_limit')")
            db.x(f"SET memory_limit = '{parse_size(self.cfg.memory_limit) // 1_000_000}MB'")
        # Temp tables need no row order; without it DuckDB streams CREATE TABLE AS with less memory.
        if db.engine.memory_settings:
            previous_order = db.one("SELECT current_setting('preserve_insertion_order')")
            db.x("SET preserve_insertion_order = false")
        try:
            result = self._build(run_id, full, started, timings, mark, t0)
        finally:
            # also while stopping (check=False): memory_limit is the database's, not this cursor's
            if previous_order is not None:
                db.x(f"SET preserve_insertion_order = {'true' if previous_order else 'false'}", check=False)
            if previous_limit is not None:
                # The setting reads back rounded ("18.7 GiB"): RESET restores a default exactly.
                db.x("RESET memory_limit", check=False)
                if db.one("SELECT current_setting('memory_limit')") != previous_limit:
                    db.x(f"SET memory_limit = {literal(str(previous_limit))}", check=False)
        self._drop_temp()
        return result

    def _build(self, run_id: str, full: bool, started: float, timings: dict[str, float],
               mark: Callable[[str, list[float]], None], t0: list[float]) -> BuildResult:
        db = self.db
        with db.transaction():
            baseline = self._ensure_golden()
            if baseline:
                full = True
            first = db.one("SELECT count(*) FROM identity.records") == 0
            plan = self.plan
            stage(db, plan)
            mark("stage", t0)
            changed, deleted = diff(db, plan)
            mark("diff", t0)
            # The first build writes identifiers straight into the empty identity tables (no temp copy).
            plan.direct = first
            normalize_changed(db, plan)
            mark("normalize", t0)
            kind = "full" if full or first else "incremental"
            if kind == "incremental":
                incremental_scope(db, plan)
            write_records(db, plan)
            if kind == "full":
                db.x("CREATE OR REPLACE TEMP TABLE _scope AS SELECT nid FROM identity.records")
            scope = as_int(db.one("SELECT count(*) FROM _scope"))
            mark("scope", t0)
            refused = merge(db, plan, run_id)
            mark("merge", t0)
            assign_ids(db, plan, run_id)
            mark("ids", t0)
            updates = build_golden(db, self.cfg, self.fields, run_id, emit=not baseline)
            mark("golden", t0)
            records = as_int(db.one("SELECT count(*) FROM identity.records"))
            persons = as_int(db.one("SELECT count(DISTINCT person_id) FROM identity.graph"))
            result = BuildResult(run_id, kind, records, changed, deleted, scope, persons, updates, refused,
                                 round(time.perf_counter() - started, 3), timings, plan.systems)
            if plan.systems:
                # In the build's transaction, like profile.updated: syncs that enforce the hierarchy in a
                # system run when its records changed, though no golden value did (syncs/service.py).
                payload = {k: v for k, v in result.as_dict().items() if k != "seconds"}
                db.x("INSERT INTO identity.outbox VALUES (?, 'identity.built', ?, now())",
                     (f"identity:{run_id}:built", json.dumps(payload)))
            db.x("INSERT INTO identity.runs VALUES (?, ?, now(), ?, ?, ?, ?, ?, ?, ?, ?)",
                 (run_id, kind, result.seconds, records, changed, deleted, scope, persons, updates, refused))
        return result

    def _drop_temp(self) -> None:
        for name in self.db.temp_tables():
            self.db.x(f"DROP TABLE IF EXISTS {quote(name)}")
