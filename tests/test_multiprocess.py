"""Past one machine: receivers and workers share a Postgres state store; a killed worker is replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from opsloop.events._signatures import SignedRequest, make_preset
from opsloop.project import load_project
from opsloop.state import open_store

from .conftest import free_port, wait_for


class Proc:
    def __init__(self, root: Path, role: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.role = role
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opsloop", "up", "--project", str(root), "--port", str(self.port), "--role", role],
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        wait_for(self.healthy, 30, what=f"{role} on {self.port}")

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(self.proc.stdout.read() if self.proc.stdout else "exited")
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
        wait_for(lambda: store.count_events("dispatched") > 50, 30, what="the first worker to dispatch")
        standby = Proc(project_dir, "worker", env)  # waits for the leader's lock
        workers.append(standby)
        os.kill(workers[0].proc.pid, signal.SIGKILL)
        workers[0].proc.wait(10)
        killed_at = time.monotonic()
        before = store.count_events("dispatched")
        wait_for(lambda: store.count_events("dispatched") > before + 50, 30, what="the standby to take over")
        takeover = time.monotonic() - killed_at
        stop.set()
        for t in threads:
            t.join(10)
        wait_for(lambda: store.count_events("received") == 0, 30, what="every accepted event to be dispatched")
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
