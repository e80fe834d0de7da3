"""`sql_database` against the local Postgres and MariaDB; source state on a Postgres state store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from opsloop.sources import SourceAuthError, pull
from opsloop.sources._state import SourceState
from tests.conftest import PG_DSN, _pg_available


@pytest.fixture
def pg_table() -> Any:
    if not _pg_available():
        pytest.skip("Postgres not reachable")
    import psycopg

    schema = f"src_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(PG_DSN, autocommit=True)
    conn.execute(f'CREATE SCHEMA "{schema}"')
    conn.execute(f'CREATE TABLE "{schema}".orders (id int PRIMARY KEY, amount numeric(10,2), status text, '
                 "updated_at timestamptz NOT NULL, meta jsonb)")
    for i in range(1, 6):
        conn.execute(f'INSERT INTO "{schema}".orders VALUES (%s, %s, %s, %s::timestamptz, %s)',
                     (i, 10 * i, "new", f"2024-01-0{i}T00:00:00Z", '{"items": [{"sku": "a"}]}'))
    yield conn, schema
    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    conn.close()


def test_postgres_tables_incremental_by_column(proj: Any, pg_table: Any) -> None:
    conn, schema = pg_table
    proj.source("app_db", f"""\
        type: sql_database
        connection: {PG_DSN}
        tables:
          - name: orders
            table: {schema}.orders
            incremental: updated_at
            primary_key: id
        """)
    result = proj.pull("app_db")
    assert result.status == "succeeded" and result.run.rows == 5
    assert proj.sql("SELECT amount, meta->'items'->0->>'sku' FROM app_db.orders WHERE id = 3") == [(30, "a")]
    conn.execute(f"UPDATE \"{schema}\".orders SET status = 'paid', updated_at = '2024-02-01Z' WHERE id = 2")
    conn.execute(f"INSERT INTO \"{schema}\".orders VALUES (6, 60, 'new', '2024-02-02Z', NULL)")
    conn.execute(f'ALTER TABLE "{schema}".orders ADD COLUMN channel text DEFAULT \'web\'')
    result = proj.pull("app_db")
    # the two changes, plus the boundary row (updated_at = cursor) read again and merged away
    assert result.run.rows == 3
    assert proj.sql("SELECT id, status, channel FROM app_db.orders WHERE id IN (2, 5, 6) ORDER BY id") == [
        (2, "paid", "web"), (5, "new", "web"), (6, "new", "web")]
    assert proj.sql("SELECT count(*), count(DISTINCT id) FROM app_db.orders") == [(6, 6)]
    cursor = SourceState(proj.apps[-1].store).streams("app_db")["orders"].cursor
    assert cursor.startswith("2024-02-02T00:00:00")


def test_mysql_table_incremental(proj: Any) -> None:
    try:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", user="root", database="test", autocommit=True)
    except Exception:
        pytest.skip("MariaDB not reachable on 127.0.0.1:3306")
    table = f"people_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, email VARCHAR(100), seq BIGINT)")
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", [(i, f"p{i}@x.test", i) for i in range(1, 5)])
    try:
        proj.source("crm_db", f"""\
            type: sql_database
            connection: mysql://root@127.0.0.1:3306/test
            tables:
              - {{name: people, table: {table}, incremental: seq, primary_key: id}}
            """)
        assert proj.pull("crm_db").run.rows == 4
        with conn.cursor() as cur:
            cur.execute(f"UPDATE {table} SET email = 'new@x.test', seq = 10 WHERE id = 1")
        result = proj.pull("crm_db")
        assert result.run.rows == 2  # the change and the boundary row
        assert proj.sql("SELECT email FROM crm_db.people WHERE id = 1") == [("new@x.test",)]
        assert proj.sql("SELECT count(*) FROM crm_db.people") == [(4,)]
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE {table}")
        conn.close()


def test_bad_database_credentials(proj: Any) -> None:
    if not _pg_available():
        pytest.skip("Postgres not reachable")
    proj.source("bad_db", """\
        type: sql_database
        connection: postgresql://no_such_role@127.0.0.1:5432/test
        tables: [{name: t}]
        """)
    with pytest.raises(SourceAuthError, match=r"source 'bad_db': the database at postgresql://127.0.0.1:5432/test "
                                              "refused the credentials"):
        proj.pull("bad_db")


@pytest.mark.postgres
def test_source_state_on_postgres_state_store(proj: Any, pg_url: str) -> None:
    data = proj.root / "data"
    data.mkdir()
    (data / "a.csv").write_text("id,v\n1,x\n")
    proj.source("local", "type: files\nstreams: [{name: rows, path: data/a.csv, primary_key: id}]\n")
    app = proj.app(state_url=pg_url)
    result = pull(app, "local")
    assert result.status == "succeeded"
    state = SourceState(app.store)
    assert state.runs("local")[0].rows == 1
    assert "data/a.csv" in next(iter(state.streams("local")["rows"].cursor))
    assert [e.name for e in app.store.list_events(name="source.local.loaded")] == ["source.local.loaded"]
