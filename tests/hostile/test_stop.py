"""SIGTERM to a real `opsloop up` stops it within systemd's TimeoutStopSec (20 s, docs/deploy.md), whatever
long job runs: the job stops at a safe point, rolls back, and completes after the next start."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from ..conftest import free_port, wait_for
from ..sources._fake import Reply
from ..sources.test_rest_files import REST_YML, ItemsApi
from ..syncs.conftest import FakeServer as SyncFakeServer
from ..syncs.conftest import Request as SyncRequest
from ..syncs.test_webhook_sync import SECRET, Receiver
from ..test_cli_server import UpProcess
from .conftest import Running, start

STOP_BOUND = 20.0
"""docs/deploy.md: the systemd unit's TimeoutStopSec."""

FOREVER = 50_000_000_000
"""Rows for a statement that runs for minutes (it is interrupted long before it ends)."""


class Server:
    """`opsloop up` as a subprocess whose log lines the test can wait for."""

    def __init__(self, target: Path | Running, *extra: str) -> None:
        self.up = target.proc if isinstance(target, Running) else UpProcess(target, free_port(), *extra)
        self.lines = self.up.lines  # UpProcess reads the process's output from its start

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def log(self) -> str:
        return "".join(self.lines)

    def sigterm(self) -> tuple[int, float]:
        """Send SIGTERM; returns the exit code and the seconds the process took to exit."""
        started = time.monotonic()
        self.up.proc.send_signal(signal.SIGTERM)
        try:
            code = self.up.proc.wait(60)
        except Exception:
            self.up.proc.kill()
            raise
        took = time.monotonic() - started
        self.up.reader.join(5)
        return code, took

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (from /proc)."""
        fields = Path(f"/proc/{self.up.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def busy_for(self, seconds: float, timeout: float = 30) -> None:
        """Wait until the server has spent ``seconds`` more CPU time: a long statement is running."""
        start = self.cpu_seconds()
        wait_for(lambda: self.cpu_seconds() - start >= seconds, timeout, interval=0.1,
                 what=f"the server to compute for {seconds} s")

    def kill(self) -> None:
        if self.up.proc.poll() is None:
            self.up.proc.kill()
            self.up.proc.wait(10)


def warehouse(root: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(root / "warehouse.duckdb"))


def count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Rows in ``schema.table``; 0 when it does not exist."""
    schema, name = table.split(".")
    exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
                         [schema, name]).fetchone()
    if not exists or not exists[0]:
        return 0
    found = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(found[0]) if found else 0


def one_thread(root: Path) -> None:
    """DuckDB on one thread: the long statements share 2 cores with other test runs."""
    yml = root / "opsloop.yml"
    yml.write_text(yml.read_text().replace("  path: warehouse.duckdb\n", "  path: warehouse.duckdb\n  threads: 1\n"))


IDENTITY_YML = """\
identifiers:
  email: {normalize: email}
merge_rules: [email]
schedule: 1s
sources:
  - system: app
    relation: src.people
    record_id: id
    identifiers: {email: email}
    fields: {name: name}
"""

PEOPLE = "SELECT 'u' || i AS id, 'user' || (i % 1500) || '@example.com' AS email, 'User ' || i AS name " \
         "FROM range(2000) t(i)"


def slow_people(root: Path, slow: bool) -> None:
    """src.people: 2,000 records of 1,500 people; the slow version scans ``FOREVER`` rows first."""
    with warehouse(root) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS src")
        where = f" WHERE (SELECT sum(hash(x)) FROM range({FOREVER}) r(x)) IS NOT NULL" if slow else ""
        con.execute(f"CREATE OR REPLACE VIEW src.people AS SELECT * FROM ({PEOPLE}){where}")


@pytest.mark.parametrize("receivers", [(), ("--receivers", "1")], ids=["main", "receiver"])
def test_sigterm_during_identity_build(project_dir: Path, receivers: tuple[str, ...]) -> None:
    one_thread(project_dir)
    (project_dir / "identity.yml").write_text(IDENTITY_YML)
    slow_people(project_dir, slow=True)
    server = Server(project_dir, *receivers)
    try:
        wait_for(lambda: server.saw("identity build started"), 30, what="the scheduled identity build to start")
        server.busy_for(1.0)  # inside its long statement
        code, took = server.sigterm()
    finally:
        server.kill()
    print(f"SIGTERM during an identity build: exited {code} in {took:.1f} s")
    assert code == 0, server.log()
    assert took < STOP_BOUND, server.log()
    assert "interrupted" in server.log()
    with warehouse(project_dir) as con:  # rolled back: no run recorded, no half-written records
        assert count(con, "identity.runs") == 0
        assert count(con, "identity.records") == 0
    assert (project_dir / "state" / "owed.json").exists()

    slow_people(project_dir, slow=False)
    (project_dir / "identity.yml").write_text(IDENTITY_YML.replace("schedule: 1s", "schedule: 1h"))
    again = Server(project_dir)  # no schedule fires within the test: the owed build runs at start
    try:
        def built() -> bool:
            return again.saw("redoing the identity build") and not (project_dir / "state" / "owed.json").exists()

        wait_for(built, 60, what="the interrupted identity build to be redone at start")
        code, _ = again.sigterm()
    finally:
        again.kill()
    assert code == 0
    with warehouse(project_dir) as con:
        assert count(con, "identity.runs") == 1
        assert count(con, "identity.golden_records") == 1500


SOURCES_YML = """\
version: 2
sources:
  - name: raw
    tables:
      - name: events
"""

DEMO_REQUESTS_SQL = """\
{{{{ config(materialized='table') }}}}
select count(*) as requests{burn}
from {{{{ source('raw', 'events') }}}}
where name = 'demo_request.created'
"""


def demo_requests_model(root: Path, slow: bool) -> None:
    """models/demo_requests.sql, rebuilt whenever events land; the slow version scans ``FOREVER`` rows."""
    burn = f", (select sum(hash(x)) from range({FOREVER}) r(x)) as burn" if slow else ""
    (root / "models" / "sources.yml").write_text(SOURCES_YML)
    (root / "models" / "demo_requests.sql").write_text(DEMO_REQUESTS_SQL.format(burn=burn))


def test_sigterm_during_model_build(project_dir: Path) -> None:
    one_thread(project_dir)
    demo_requests_model(project_dir, slow=True)
    running = start(project_dir)
    server = Server(running)
    try:
        accepted = running.good_event("ada@example.com")
        wait_for(lambda: server.saw("model build started"), 30, what="the reactive model build to start")
        server.busy_for(1.0)  # inside the model's long statement
        code, took = server.sigterm()
    finally:
        server.kill()
    print(f"SIGTERM during a model build: exited {code} in {took:.1f} s")
    assert code == 0, server.log()
    assert took < STOP_BOUND, server.log()
    with warehouse(project_dir) as con:
        assert count(con, "main.demo_requests") == 0  # the interrupted build left nothing
        loaded = con.execute("SELECT count(*) FROM raw.events WHERE event_id = ?", [accepted]).fetchone()
        assert loaded == (1,)  # the accepted event was loaded before the process exited

    demo_requests_model(project_dir, slow=False)
    again = Server(start(project_dir))  # no new event: the owed build runs at start
    try:
        wait_for(lambda: again.saw("redoing the model build") and not (project_dir / "state" / "owed.json").exists(),
                 60, what="the interrupted model build to be redone at start")
        code, _ = again.sigterm()
    finally:
        again.kill()
    assert code == 0
    with warehouse(project_dir) as con:
        assert con.execute("SELECT requests FROM main.demo_requests").fetchone() == (1,)


class SlowItems(ItemsApi):
    """The REST fake of tests/sources, two items a page, each page answered after ``delay`` seconds."""

    def __init__(self, n: int, delay: float) -> None:
        super().__init__(n=n, page_size=2)
        self.delay = delay

    def list_items(self, req: Any) -> Reply:
        time.sleep(self.delay)  # a slow vendor API
        return super().list_items(req)


def test_sigterm_during_pull(project_dir: Path) -> None:
    api = SlowItems(n=200, delay=0.25)  # 100 pages: 25 s
    try:
        (project_dir / "sources").mkdir(exist_ok=True)
        (project_dir / "sources" / "shop.yml").write_text(
            "schedule: '0 0 1 1 *'\n" + REST_YML.format(url=api.url, extra=""))  # never run: due at start
        with (project_dir / ".env").open("a") as env:
            env.write("ITEMS_TOKEN=tok_good\n")
        server = Server(project_dir)
        try:
            wait_for(lambda: len(api.requests_to("/v1/items")) >= 4, 30, what="the pull to read some pages")
            code, took = server.sigterm()
        finally:
            server.kill()
        pages = len(api.requests_to("/v1/items"))
        print(f"SIGTERM during a pull: exited {code} in {took:.1f} s after {pages} of 100 pages")
        assert code == 0, server.log()
        assert took < STOP_BOUND, server.log()
        assert pages < 100
        with warehouse(project_dir) as con:
            assert count(con, "shop.items") == 0  # nothing of the interrupted run was loaded

        api.delay = 0.0
        api.log.clear()
        again = Server(project_dir)
        try:
            wait_for(lambda: again.saw("scheduled pull") or again.saw("pulling shop again"), 60,
                     what="the interrupted pull to run again at start")
            wait_for(lambda: not (project_dir / "state" / "owed.json").exists(), 60, what="the pull to complete")
            code, _ = again.sigterm()
        finally:
            again.kill()
        assert code == 0
        with warehouse(project_dir) as con:
            assert count(con, "shop.items") == 200
        assert api.requests_to("/v1/items")[0].arg("updated_since") == "2000-01-01T00:00:00Z"  # from the start
    finally:
        api.close()


class SlowReceiver(Receiver):
    """The signed-webhook receiver of tests/syncs, answering each batch after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def __call__(self, req: SyncRequest) -> tuple[int, dict[str, str], Any]:
        time.sleep(self.delay)  # a slow destination
        return super().__call__(req)


def test_sigterm_during_sync(project_dir: Path) -> None:
    receiver = SlowReceiver(delay=0.25)  # 100 rows, 2 a batch: 50 batches, 12.5 s
    hooks = SyncFakeServer(receiver)
    try:
        with warehouse(project_dir) as con:
            con.execute("CREATE TABLE customers AS SELECT 'user' || i || '@example.com' AS email, "
                        "'+1555010' || lpad(i::VARCHAR, 4, '0') AS phone FROM range(1, 101) t(i)")
        with (project_dir / ".env").open("a") as env:
            env.write(f"HOOK_SECRET={SECRET}\n")
        (project_dir / "syncs" / "hooks.yml").write_text(
            "table: customers\nkey: email\n"
            f'destination: {{type: webhook, url: "{hooks.url}/in", secret_env: HOOK_SECRET}}\n'
            "mapping: {email: email, phone: phone}\nbatch_size: 2\n")
        running = start(project_dir)
        server = Server(running)
        answers: list[httpx.Response] = []

        def run_sync() -> None:
            with running.api() as api:
                answers.append(api.post("/api/syncs/hooks/run", json={}, timeout=60))

        caller = threading.Thread(target=run_sync)
        try:
            caller.start()
            wait_for(lambda: len(receiver.seen_ids) >= 4, 30, what="the sync to send some batches")
            code, took = server.sigterm()
        finally:
            server.kill()
            caller.join(10)
        sent = len(receiver.seen_ids)
        print(f"SIGTERM during a sync: exited {code} in {took:.1f} s after {sent} of 50 batches")
        assert code == 0, server.log()
        assert took < STOP_BOUND, server.log()
        assert sent < 50
        assert answers and answers[0].status_code == 200, answers
        assert answers[0].json()["status"] == "interrupted", answers[0].json()

        receiver.delay = 0.0
        again = Server(start(project_dir))  # no trigger: the owed sync runs at start
        try:
            wait_for(lambda: set(receiver.applied) == {f"user{i}@example.com" for i in range(1, 101)}, 60,
                     what="the interrupted sync to finish after the restart")
            wait_for(lambda: not (project_dir / "state" / "owed.json").exists(), 30, what="the sync to be settled")
            code, _ = again.sigterm()
        finally:
            again.kill()
        assert code == 0
        assert set(receiver.applied.values()) == {1}, "a row was applied twice"
    finally:
        hooks.close()


class HangingItems(ItemsApi):
    """The REST fake, whose first request hangs until the test releases it (a vendor that stops answering)."""

    def __init__(self) -> None:
        super().__init__(n=20, page_size=10)
        self.hanging = threading.Event()
        self.release = threading.Event()

    def list_items(self, req: Any) -> Reply:
        if not self.hanging.is_set():
            self.hanging.set()
            self.release.wait(60)
        return super().list_items(req)


def test_sigterm_with_a_request_that_hangs(project_dir: Path) -> None:
    """No safe point is reached (the pull waits on a request with a 60 s timeout): the process still exits
    within the bound, says why, and the next start pulls the source again."""
    api = HangingItems()
    try:
        (project_dir / "sources" / "shop.yml").write_text(
            "schedule: '0 0 1 1 *'\n" + REST_YML.format(url=api.url, extra=""))
        with (project_dir / ".env").open("a") as env:
            env.write("ITEMS_TOKEN=tok_good\n")
        server = Server(project_dir)
        try:
            assert api.hanging.wait(30), server.log()
            code, took = server.sigterm()
        finally:
            server.kill()
            api.release.set()
        print(f"SIGTERM during a request that hangs: exited {code} in {took:.1f} s")
        assert took < STOP_BOUND, server.log()
        assert code == 1 and "did not stop within 18 s" in server.log(), server.log()

        again = Server(project_dir)
        try:
            wait_for(lambda: again.saw("pulling shop again"), 30, what="the cut-off pull to run again at start")
            wait_for(lambda: not (project_dir / "state" / "owed.json").exists(), 30, what="the pull to complete")
            assert again.sigterm()[0] == 0
        finally:
            again.kill()
        with warehouse(project_dir) as con:
            assert count(con, "shop.items") == 20
    finally:
        api.close()


def test_sigterm_right_after_an_event_refreshes_models_at_the_next_start(project_dir: Path) -> None:
    """The event lands in raw.events as the stop begins, before its debounced model refresh runs: that refresh
    is owed, and the next start builds it without waiting for another event."""
    demo_requests_model(project_dir, slow=False)
    running = start(project_dir)
    server = Server(running)
    try:
        running.good_event("ada@example.com")
        code, took = server.sigterm()
    finally:
        server.kill()
    assert code == 0 and took < STOP_BOUND, server.log()
    again = Server(start(project_dir))
    try:
        wait_for(lambda: not (project_dir / "state" / "owed.json").exists() and (
            again.saw("refreshing what reads") or again.saw("redoing the model build")
            or again.saw("loading seeds")), 60, what="the owed refresh at start")
        code, _ = again.sigterm()
    finally:
        again.kill()
    assert code == 0
    with warehouse(project_dir) as con:
        assert con.execute("SELECT requests FROM main.demo_requests").fetchone() == (1,), again.log()
