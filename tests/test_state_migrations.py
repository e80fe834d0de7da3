"""The state store's migrations, written once for both stores (``opsloop/state/_migrations.py``).

``state_schema/*.txt`` record the schema that the per-store files (one copy for SQLite, one for Postgres,
before they were merged) gave a new database, up to migration 0600 (``RECORDED``): the one source must give
the same.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from opsloop.errors import StateStoreError
from opsloop.state import StateStore, open_store
from opsloop.state._migrations import STORE_TYPES, migrations, render

SNAPSHOTS = Path(__file__).parent / "state_schema"
RECORDED = (1, 2, 3, 4, 100, 200, 300, 500, 600)
"""The migrations the recorded schemas include (later ones, such as 0005's search index, came after)."""


def migrate_recorded(store: StateStore) -> None:
    """Apply the recorded migrations only, as ``migrate`` would."""
    with store.transaction() as cur:
        store.execute(cur, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                           "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
        for m in migrations(store.backend):
            if m.version in RECORDED:
                store._run_script(cur, m.sql)
                store.execute(cur, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, 0)",
                              (m.version, m.name))


def sqlite_schema(path: Path) -> str:
    """Every table, index and trigger as SQLite stores its CREATE statement (the text that ran)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                            "ORDER BY type, name").fetchall()
    return "".join(f"{kind} {name} on {table}:\n{sql}\n\n" for kind, name, table, sql in rows)


def postgres_schema(store: StateStore, schema: str) -> str:
    """Columns (type, nullability, default), constraints and indexes of ``schema``, with its name masked."""
    columns = store.query(
        "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = ? ORDER BY table_name, ordinal_position", (schema,))
    constraints = store.query(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = ? ORDER BY 1, 2", (schema,))
    indexes = store.query("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = ? ORDER BY indexname",
                          (schema,))
    lines = [" | ".join(str(v) for v in row) for row in [*columns, *constraints, *indexes]]
    return "\n".join(lines).replace(f'"{schema}".', "").replace(f"{schema}.", "") + "\n"


def test_every_migration_is_written_for_both_stores() -> None:
    assert [m.version for m in migrations("sqlite")] == [m.version for m in migrations("postgres")]
    assert [m.name for m in migrations("sqlite")] == [m.name for m in migrations("postgres")]
    for backend, types in STORE_TYPES.items():
        for m in migrations(backend):
            assert "${" not in m.sql, (backend, m.name)
        assert set(types) == set(STORE_TYPES["sqlite"])


def test_an_unknown_placeholder_names_the_file_and_line() -> None:
    with pytest.raises(StateStoreError, match=r"migration 0700_x\.sql, line 2: unknown placeholder \$\{double\}"):
        render("CREATE TABLE t (\n  a ${double}\n)", "sqlite", "migration 0700_x.sql")


def test_sqlite_gets_the_schema_its_own_files_gave(tmp_path: Path) -> None:
    from opsloop.state.sqlite import SQLiteStateStore

    store = SQLiteStateStore(tmp_path / "state.sqlite", fsync=False)
    migrate_recorded(store)
    store.close()
    assert sqlite_schema(tmp_path / "state.sqlite") == (SNAPSHOTS / "sqlite.txt").read_text(encoding="utf-8")


def test_an_older_sqlite_database_upgrades_cleanly(tmp_path: Path) -> None:
    """A database made by the per-store files (its schema and its ``schema_migrations`` rows) takes the
    later migrations and ends where a new database does."""
    from opsloop.state.sqlite import SQLiteStateStore

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as conn:  # what the per-store files left behind, statement by statement
        entries = [e for e in (SNAPSHOTS / "sqlite.txt").read_text(encoding="utf-8").split("\n\n") if e.strip()]
        for entry in sorted(entries, key=lambda e: not e.startswith("table ")):  # tables before their indexes
            conn.execute(entry.split(":\n", 1)[1])
        conn.executemany("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, 0)",
                         [(m.version, m.name) for m in migrations("sqlite") if m.version in RECORDED])
    store = SQLiteStateStore(old, fsync=False)
    applied = store.migrate()
    assert applied == [m.name for m in migrations("sqlite") if m.version not in RECORDED]
    store.append_events([])
    store.close()
    new = open_store("sqlite:///new.sqlite", tmp_path, fsync=False)
    new.close()
    assert sqlite_schema(old) == sqlite_schema(tmp_path / "new.sqlite")


def test_postgres_gets_the_schema_its_own_files_gave(pg_url: str) -> None:
    from opsloop.state.postgres import PostgresStateStore

    store = PostgresStateStore(pg_url)
    try:
        migrate_recorded(store)
        assert store.schema is not None
        assert postgres_schema(store, store.schema) == (SNAPSHOTS / "postgres.txt").read_text(encoding="utf-8")
    finally:
        store.close()


def test_an_older_postgres_database_upgrades_cleanly(pg_url: str) -> None:
    """A store migrated up to 0300 takes the rest and ends with the schema of a new one."""
    from opsloop.state.postgres import PostgresStateStore

    old = PostgresStateStore(pg_url)
    new = PostgresStateStore(pg_url.replace("?schema=", "?schema=new_"))
    try:
        assert old.migrate(upto=300)[-1] == "0300_syncs.sql"
        assert old.migrate() == [m.name for m in migrations("postgres") if m.version > 300]
        assert old.migrate() == []
        new.migrate()
        assert old.schema is not None and new.schema is not None
        assert postgres_schema(old, old.schema) == postgres_schema(new, new.schema)
    finally:
        with new.transaction() as cur:
            new.execute(cur, f'DROP SCHEMA "{new.schema}" CASCADE')
        old.close()
        new.close()
