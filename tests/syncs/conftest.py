"""Fixtures for sync tests: a project with a DuckDB source table, and fake vendor APIs on 127.0.0.1."""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest

from opsloop.app import App
from opsloop.project.scaffold import init_project
from opsloop.syncs import RunResult, SyncRunner
from opsloop.warehouse import Warehouse
from tests.conftest import make_app, use_postgres_warehouse

COLUMNS = "id INTEGER, email VARCHAR, first_name VARCHAR, phone VARCHAR, plan VARCHAR"


SNOWFLAKE_OPTIONS = {"account": "acme", "user": "opsloop", "password": "x", "database": "OPSLOOP",
                     "schema": "PUBLIC"}
"""The Snowflake warehouse of a ``snowflake`` project: fakesnow answers the real connector (see ``sp``)."""


class SyncProject:
    """A project folder whose warehouse holds ``<schema>.customers``; syncs are written into syncs/.

    The warehouse is the default DuckDB file, or a Postgres database when ``pg_url`` is given (``schema``
    is then ``public``), or ``engine`` ``snowflake`` (the real connector against fakesnow, which the ``sp``
    fixture patches in) or ``clickhouse`` (embedded chdb in ``warehouse.chdb``)."""

    def __init__(self, root: Path, pg_url: str | None = None, engine: str | None = None) -> None:
        self.root = root
        self.env: dict[str, str] = {}
        self.pg_url = pg_url
        self.engine = engine or ("postgres" if pg_url else "duckdb")
        self.schema = "public" if self.engine in ("postgres", "snowflake") else "main"
        if pg_url:
            use_postgres_warehouse(root, pg_url)
        elif self.engine in ("snowflake", "clickhouse"):
            config = root / "opsloop.yml"
            text = config.read_text(encoding="utf-8")
            start, end = text.index("warehouse:"), text.index("state:")
            chosen = (f"warehouse:\n  type: snowflake\n  options: {json.dumps(SNOWFLAKE_OPTIONS)}\n"
                      if self.engine == "snowflake" else "warehouse:\n  type: clickhouse\n  path: warehouse.chdb\n")
            config.write_text(text[:start] + chosen + text[end:], encoding="utf-8")

    def _adapter(self) -> Warehouse:
        """The project's Snowflake or ClickHouse warehouse, opened through opsloop's own adapter."""
        if self.engine == "snowflake":
            from opsloop.warehouse.snowflake import SnowflakeWarehouse

            return SnowflakeWarehouse(dict(SNOWFLAKE_OPTIONS))
        from opsloop.warehouse.clickhouse import ClickHouseWarehouse

        return ClickHouseWarehouse(self.root / "warehouse.chdb")

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    def sql(self, statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        if self.engine in ("snowflake", "clickhouse"):
            wh = self._adapter()
            try:
                return list(wh.query(statement, params or ()).rows)
            finally:
                wh.close()
        if self.pg_url:
            import psycopg

            with psycopg.connect(self.pg_url, autocommit=True) as pg:
                cur = pg.execute(statement.replace("?", "%s") if params else statement, params or None)
                return [tuple(r) for r in cur.fetchall()] if cur.description else []
        con = duckdb.connect(str(self.warehouse_path))
        try:
            cur = con.execute(statement, params or [])
            return cur.fetchall() if cur.description else []
        finally:
            con.close()

    def customers(self, rows: list[tuple[Any, ...]], columns: str = COLUMNS) -> None:
        table = f"{self.schema}.customers"
        if self.engine in ("snowflake", "clickhouse"):
            wh = self._adapter()
            try:
                wh.ensure_schema(self.schema)
                wh.execute(f"DROP TABLE IF EXISTS {table}")
                # a table the tests UPDATE in place (ClickHouse: one that takes lightweight updates)
                wh.execute(f"{wh.portable(f'CREATE TABLE {table} ({columns})')} {wh.STATE_TABLE_SUFFIX}")
                if rows:
                    wh.insert_rows(table, [c.split()[0] for c in columns.split(", ")], rows)
            finally:
                wh.close()
            return
        if self.pg_url:
            import psycopg

            with psycopg.connect(self.pg_url, autocommit=True) as pg:
                pg.execute(f"DROP TABLE IF EXISTS {table}")
                pg.execute(f"CREATE TABLE {table} ({columns})")
                if rows:
                    marks = ", ".join("%s" for _ in rows[0])
                    pg.cursor().executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            return
        con = duckdb.connect(str(self.warehouse_path))
        try:
            con.execute(f"CREATE OR REPLACE TABLE {table} ({columns})")
            if rows:
                marks = ", ".join("?" for _ in rows[0])
                con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        finally:
            con.close()

    def write_sync(self, name: str, text: str) -> Path:
        path = self.root / "syncs" / f"{name}.yml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    def set_env(self, **values: str) -> None:
        self.env.update(values)
        env_file = self.root / ".env"
        existing = env_file.read_text(encoding="utf-8") if env_file.exists() else ""
        env_file.write_text(existing + "".join(f"\n{k}={v}" for k, v in values.items()) + "\n", encoding="utf-8")

    def app(self, **overrides: Any) -> App:
        overrides.setdefault("time_scale", 0.01)
        return make_app(self.root, **overrides)

    def run(self, name: str, **kwargs: Any) -> RunResult:
        app = self.app()
        try:
            return SyncRunner(app).run(name, **kwargs)
        finally:
            app.close()

    def state(self, name: str) -> dict[str, dict[str, Any]]:
        rows = self.sql("SELECT key, fp, dest_id, created, failed_fp, attempts, error "
                        f'FROM opsloop_sync."state__{name}"')
        return {r[0]: {"fp": r[1], "dest_id": r[2], "created": r[3], "failed_fp": r[4], "attempts": r[5],
                       "error": r[6]} for r in rows}


BOTH_WAREHOUSES = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
"""``pytestmark = pytest.mark.parametrize("sp", BOTH_WAREHOUSES, indirect=True)`` runs a module's tests on both."""
EVERY_WAREHOUSE = [*BOTH_WAREHOUSES, "snowflake", "clickhouse"]
"""Every warehouse that runs syncs here (``Warehouse.RUNS_SYNCS``; docs/deploy.md's table)."""


@pytest.fixture
def sp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SyncProject]:
    root = tmp_path / "proj"
    init_project(root)
    engine = getattr(request, "param", "duckdb")
    if engine == "postgres":
        yield SyncProject(root, request.getfixturevalue("pg_database"))
    elif engine == "snowflake":
        # the real snowflake-connector-python API, answered by fakesnow (Snowflake SQL on an in-memory DuckDB
        # that every connection of this test shares)
        import fakesnow

        with fakesnow.patch():
            yield SyncProject(root, engine="snowflake")
    else:
        yield SyncProject(root, engine=None if engine == "duckdb" else engine)


def people(n: int, start: int = 1) -> list[tuple[Any, ...]]:
    return [(i, f"user{i}@example.com", f"User{i}", f"+1555000{i:04d}", "pro") for i in range(start, start + n)]


# -- a tiny real HTTP server for fakes ---------------------------------------------------------------------

Handler = Callable[["Request"], tuple[int, dict[str, str], Any]]


class Request:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class FakeServer:
    """A threaded HTTP server on 127.0.0.1; ``handle(request) -> (status, headers, json body)``."""

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _do(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with outer.lock:
                    outer.requests.append(req)
                    status, headers, payload = outer.handle(req)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if payload is not None:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _do

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server() -> Iterator[Callable[[Handler], FakeServer]]:
    servers: list[FakeServer] = []

    def start(handle: Handler) -> FakeServer:
        server = FakeServer(handle)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


class CliResult:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def cli(*args: str) -> CliResult:
    """The real ``opsloop`` command line, in-process (the slow-to-start subprocess is kept for kill tests)."""
    from typer.testing import CliRunner

    from opsloop.cli import app as typer_app

    result = CliRunner().invoke(typer_app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)
