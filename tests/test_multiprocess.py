"""Past one machine: receivers and workers share a Postgres state store; a killed worker is replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from opsloop import load_project
from opsloop.events.signatures import SignedRequest, make_preset
from opsloop.state import open_store

from .conftest import free_port, wait_for


class Proc:
    started: ClassVar[list[Proc]] = []
    """Every process a test started, stopped by ``_stop_every_process`` even when a test fails before its
    ``finally`` (a second process that fails to start used to leave the first ones running)."""

    def __init__(self, root: Path, role: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.role = role
        # the log goes to a file: a pipe nobody reads fills up (64 KB of request logs) and then blocks the
        # process's every write
        self.log = root.parent / f"{role}-{self.port}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "opsloop", "up", "--project", str(root), "--port", str(self.port),
                 "--role", role],
                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, text=True,
            )
        Proc.started.append(self)
        wait_for(self.healthy, 30, what=f"{role} on {self.port}")

    def problems(self) -> str:
        """The lines of this process's log that are not request logs (tracebacks, warnings)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(line for line in lines if "HTTP Request:" not in line)[-3000:]

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(self.problems())
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(autouse=True)
def _stop_every_process() -> Iterator[None]:
    yield
    while Proc.started:
        Proc.started.pop().stop()


@pytest.mark.slow
@pytest.mark.postgres
def test_receivers_and_workers_share_postgres_and_survive_a_killed_worker(project_dir: Path, pg_url: str) -> None:
    env = {"OPSLOOP_STATE_URL": pg_url}
    project = load_project(project_dir)
    cfg = project.endpoints["demo_request"]
    preset = make_preset(cfg.signature, project.secret(cfg.signature.secret_env or ""))
    receivers = [Proc(project_dir, "receiver", env), Proc(project_dir, "receiver", env)]
    workers = [Proc(project_dir, "worker", env)]
    store = open_store(pg_url)
    acked: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load(worker: int) -> None:
        with httpx.Client(timeout=5) as client:
            i = 0
            while not stop.is_set():
                i += 1
                target = receivers[i % 2]
                body = json.dumps({"email": f"p{worker}-{i}@example.com", "name": "n"}).encode()
                headers = preset.sign(SignedRequest(body, {"webhook-id": f"p{worker}-{i}"}), time.time())
                try:
                    r = client.post(f"{target.url}/hooks/demo_request", content=body, headers=headers)
                except httpx.HTTPError:
                    continue
                if r.status_code == 202:
                    with lock:
                        acked.append(r.json()["id"])

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    try:
        for t in threads:
            t.start()
        # no handler wants these events, so they are stored as dispatched; the workers' progress is the
        # dispatcher's cursor
        wait_for(lambda: store.get_cursor("dispatcher") > 50, 30, what="the first worker to dispatch")
        standby = Proc(project_dir, "worker", env)  # waits for the leader's lock
        workers.append(standby)
        os.kill(workers[0].proc.pid, signal.SIGKILL)
        workers[0].proc.wait(10)
        killed_at = time.monotonic()
        before = store.get_cursor("dispatcher")
        wait_for(lambda: store.get_cursor("dispatcher") > before + 50, 30, what="the standby to take over")
        takeover = time.monotonic() - killed_at
        stop.set()
        for t in threads:
            t.join(10)
        wait_for(lambda: store.get_cursor("dispatcher") == store.max_seq(), 30,
                 what="the dispatcher to reach the end of the log")
        assert store.count_events("received") == 0
        for event_id in acked:
            record = store.get_event(event_id)
            assert record is not None and record.status == "dispatched", event_id
        assert takeover < 15, f"takeover took {takeover:.1f}s"
    finally:
        stop.set()
        for p in [*receivers, *workers]:
            p.stop()
    # the warehouse loader, led by one worker at a time, loaded each event exactly once
    from opsloop.warehouse.duckdb import DuckDBWarehouse

    wh = DuckDBWarehouse(project_dir / "warehouse.duckdb")
    rows = wh.query("SELECT count(*), count(DISTINCT event_id) FROM raw.events").rows[0]
    wh.close()
    assert rows[0] == rows[1] == len(store.read_events(0, 100000))
    store.close()


def test_several_processes_need_postgres(project_dir: Path) -> None:
    from .conftest import run_cli

    result = run_cli("up", "--project", str(project_dir), "--role", "worker")
    assert result.returncode == 1 and "share a Postgres state store" in result.stderr


class EffectServer:
    """A local API that applies each Idempotency-Key once (as Stripe-style APIs do) and logs every attempt."""

    def __init__(self) -> None:
        import http.server

        self.attempts: list[tuple[str, str, dict[str, object]]] = []
        self.applied: dict[str, tuple[str, dict[str, object]]] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                key = self.headers.get("idempotency-key") or ""
                if len(raw) != length or not isinstance(body, dict) or not key:
                    self.send_error(400, "incomplete request")  # a request cut off mid-send is not applied
                    return
                with outer.lock:
                    outer.attempts.append((self.path, key, body))
                    outer.applied.setdefault(key, (self.path, body))
                data = b'{"ok": true}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 1024  # the default backlog of 5 resets connections in a burst of runs

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def effects(self, path: str) -> list[dict[str, object]]:
        with self.lock:
            return [body for p, body in self.applied.values() if p == path]

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.slow
@pytest.mark.postgres
def test_three_processes_side_effects_and_ticks_exactly_once(project_dir: Path, pg_url: str) -> None:
    """A receiver and two workers on one Postgres; a load generator posts while a worker is SIGKILLed and
    restarted. Every accepted event's step has its effect exactly once; every schedule tick fires once."""
    effects = EffectServer()
    (project_dir / "workflows" / "notify.yml").write_text(
        "on: demo_request.created\nsteps:\n  - id: call\n"
        f"    http.request: {{url: \"{effects.url}/effect\", json: {{email: \"{{{{ event.data.email }}}}\"}}}}\n"
    )
    (project_dir / "workflows" / "tick.yml").write_text(
        "schedule: {cron: \"* * * * * *\", catch_up: skip}\nsteps:\n  - id: call\n"
        f"    http.request: {{url: \"{effects.url}/tick\", json: {{tick: \"{{{{ event.data.tick }}}}\"}}}}\n"
    )
    env = {"OPSLOOP_STATE_URL": pg_url}
    project = load_project(project_dir)
    cfg = project.endpoints["demo_request"]
    preset = make_preset(cfg.signature, project.secret(cfg.signature.secret_env or ""))
    receiver = Proc(project_dir, "receiver", env)
    workers = [Proc(project_dir, "worker", env), Proc(project_dir, "worker", env)]
    store = open_store(pg_url)
    acked: dict[str, str] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def load(worker: int) -> None:
        with httpx.Client(timeout=5) as client:
            i = 0
            while not stop.is_set() and i < 150:
                i += 1
                email = f"w{worker}-{i}@example.com"
                body = json.dumps({"email": email, "name": "n"}).encode()
                headers = preset.sign(SignedRequest(body, {"webhook-id": email}), time.time())
                try:
                    r = client.post(f"{receiver.url}/hooks/demo_request", content=body, headers=headers)
                except httpx.HTTPError:
                    continue
                if r.status_code == 202:
                    with lock:
                        acked[email] = r.json()["id"]

    threads = [threading.Thread(target=load, args=(w,)) for w in range(3)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(effects.effects("/effect")) > 30, 60, what="workflows to call the API")
        os.kill(workers[0].proc.pid, signal.SIGKILL)
        workers[0].proc.wait(10)
        workers[0] = Proc(project_dir, "worker", env)  # restarted
        for t in threads:
            t.join(60)
        emails = set(acked)
        wait_for(lambda: {str(b["email"]) for b in effects.effects("/effect")} >= emails, 90,
                 what="every accepted event's workflow step to reach the API")
        try:
            wait_for(lambda: not store.query("SELECT 1 FROM wf_runs WHERE workflow = 'notify' AND status NOT IN "
                                             "('completed', 'failed', 'cancelled') LIMIT 1"), 60,
                     what="every notify run to finish")
        except AssertionError as exc:
            runs = store.query("SELECT workflow, status, lease_owner, COUNT(*) FROM wf_runs GROUP BY 1, 2, 3")
            logs = "\n".join(f"--- {w.role} {w.port}\n{w.problems()}" for w in workers)
            raise AssertionError(f"{exc}\nruns: {runs}\n{logs}") from None
    finally:
        stop.set()
        for p in [receiver, *workers]:
            p.stop()
    applied = [str(b["email"]) for b in effects.effects("/effect")]
    assert sorted(applied) == sorted(set(applied)), "an effect was applied twice"
    assert set(applied) == set(acked), "an accepted event's effect is missing (or an unaccepted one happened)"
    runs = store.query("SELECT status, COUNT(*) FROM wf_runs WHERE workflow = 'notify' GROUP BY status")
    assert dict(runs) == {"completed": len(acked)}
    ticks = [str(b["tick"]) for b in effects.effects("/tick")]
    assert len(ticks) >= 3 and len(ticks) == len(set(ticks)), "a schedule tick fired twice"
    tick_rows = store.query("SELECT schedule, tick, COUNT(*) FROM wf_schedule_ticks GROUP BY schedule, tick "
                            "HAVING COUNT(*) > 1")
    assert tick_rows == []
    store.close()
    effects.close()
