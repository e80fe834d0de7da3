"""Shared fixtures: real servers on 127.0.0.1, real Postgres, projects made by `opsloop init`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsloop import load_project
from opsloop.app import App
from opsloop.project.scaffold import init_project
from opsloop.settings import resolve_settings

PG_DSN = os.environ.get("OPSLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# the processes the tests start (`python -m opsloop ...`) keep their compiled modules, as a user's do: with
# PYTHONDONTWRITEBYTECODE set (this machine sets it) each one compiled opsloop again at start-up
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keep_reading(proc: subprocess.Popen[str], lines: list[str]) -> threading.Thread:
    """Read a child's piped output into ``lines`` until it exits. A pipe nobody reads fills up (64 KB) and
    then blocks the child's every write: a server logging each request stalls mid-test under load."""
    assert proc.stdout is not None
    out = proc.stdout
    reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")), daemon=True)
    reader.start()
    return reader


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> Any:
    """Poll ``condition`` until it returns a truthy value or ``timeout`` passes (then fail)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}; last value {last!r}")


def comparable(v: Any) -> Any:
    """A warehouse value in a form equal across engines: numbers rounded floats, times naive UTC text,
    containers element-wise (DuckDB, Postgres, Snowflake and ClickHouse rows compared with each other)."""
    import datetime as dt
    import decimal

    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int | float | decimal.Decimal):
        return round(float(v), 6)
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
        return v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return [comparable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): comparable(x) for k, x in v.items()}
    return str(v)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    init_project(root)
    return root


def make_app(root: Path, **overrides: Any) -> App:
    project = load_project(root)
    return App(project, resolve_settings(project, overrides))


class ServerThread:
    """A real uvicorn server for an App, in a thread, on a free port."""

    def __init__(self, app: App) -> None:
        import uvicorn

        from opsloop.web import create_asgi

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_asgi(app), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started, 15, what="uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    @property
    def token(self) -> str:
        return str(self.app.settings.api_token)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10)


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(root: Path, **overrides: Any) -> ServerThread:
        srv = ServerThread(make_app(root, **overrides))
        srv.__enter__()
        started.append(srv)
        return srv

    yield start
    for srv in reversed(started):
        srv.__exit__(None, None, None)


@pytest.fixture
def server(project_dir: Path, server_factory: Callable[..., ServerThread]) -> ServerThread:
    return server_factory(project_dir)


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema in the local Postgres; required (never skipped) when CI=true."""
    if not _pg_available():
        if IN_CI:
            pytest.fail(f"Postgres is required when CI=true and is not reachable at {PG_DSN}")
        pytest.skip(f"Postgres not reachable at {PG_DSN}")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{PG_DSN}?schema={schema}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def use_postgres_warehouse(root: Path, url: str) -> None:
    """Point the project at ``root`` (as `opsloop init` wrote it) at a Postgres warehouse."""
    config = root / "opsloop.yml"
    text = config.read_text(encoding="utf-8")
    start, end = text.index("warehouse:"), text.index("state:")
    config.write_text(text[:start] + f"warehouse:\n  type: postgres\n  url: {url}\n" + text[end:], encoding="utf-8")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh database in the local Postgres (for what lives in fixed schema names, like ``opsloop_sync``);
    required (never skipped) when CI=true."""
    if not _pg_available():
        if IN_CI:
            pytest.fail(f"Postgres is required when CI=true and is not reachable at {PG_DSN}")
        pytest.skip(f"Postgres not reachable at {PG_DSN}")
    import psycopg

    name = f"opsloop_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_DSN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real `opsloop` command (as `python -m opsloop`)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "opsloop", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
