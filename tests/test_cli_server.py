"""The real `opsloop up` process: send, events, events show, replay, SIGTERM, and SIGKILL durability."""

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

from opsloop import load_project
from opsloop.events.signatures import SignedRequest, make_preset

from .conftest import free_port, keep_reading, run_cli, wait_for


class UpProcess:
    def __init__(self, root: Path, port: int, *extra: str) -> None:
        self.root, self.port = root, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opsloop", "up", "--project", str(root), "--port", str(port), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self.reader = keep_reading(self.proc, self.lines)
        # a start-up bound, not a speed claim: a 2-core machine under a loaded CI takes ~20 s to start
        wait_for(self._healthy, 60, what="opsloop up to answer /healthz")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            self.reader.join(5)
            raise AssertionError(f"opsloop up exited: {''.join(self.lines)}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(20)
        self.reader.join(5)  # every line the process wrote is in self.lines
        return code


@pytest.mark.slow
def test_cli_round_trip(project_dir: Path) -> None:
    port = free_port()
    up = UpProcess(project_dir, port)
    try:
        sent = run_cli("send", "demo_request", "@samples/demo_request.json", "--url", up.url, "--json",
                       cwd=project_dir)
        assert sent.returncode == 0, sent.stderr
        event_id = json.loads(sent.stdout)["id"]
        bad = run_cli("send", "demo_request", '{"email": "nope", "name": "x"}', "--url", up.url, cwd=project_dir)
        assert bad.returncode == 1 and bad.stdout.startswith("422")
        listed = wait_for(lambda: (r := run_cli("events", "--json", cwd=project_dir)) and
                          any(e["status"] == "dispatched" for e in json.loads(r.stdout)) and json.loads(r.stdout))
        assert {e["status"] for e in listed} == {"dispatched", "quarantined"}
        quarantined = run_cli("events", "--status", "quarantined", "--json", cwd=project_dir)
        q_id = json.loads(quarantined.stdout)[0]["id"]
        shown = run_cli("events", "show", event_id, cwd=project_dir)
        assert "webhook-signature:" in shown.stdout and "Ada Lovelace" in shown.stdout
        plain = run_cli("events", cwd=project_dir)
        assert plain.stdout.splitlines()[0].split("\t")[:3] == ["received", "id", "endpoint"]
        refused = run_cli("replay", q_id, cwd=project_dir)
        assert refused.returncode == 1 and "/email" in refused.stderr
        (project_dir / "fixed.json").write_text('{"email": "ok@example.com", "name": "x"}')
        fixed = run_cli("replay", q_id, "--payload", "@fixed.json", "--json", cwd=project_dir)
        assert fixed.returncode == 0, fixed.stderr
        new_id = json.loads(fixed.stdout)[0]["id"]
        wait_for(lambda: json.loads(run_cli("events", "show", new_id, "--json", cwd=project_dir).stdout)["status"]
                 == "dispatched")
        bad_status = run_cli("events", "--status", "weird", cwd=project_dir)
        assert bad_status.returncode == 1 and "unknown status" in bad_status.stderr
    finally:
        code = up.stop(signal.SIGTERM)
    assert code == 0
    assert not (project_dir / "state" / "server.json").exists()


def receiver_pids(parent: int) -> list[int]:
    """The receiver processes of the `opsloop up` with pid ``parent`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"opsloop._receivers" in args and str(parent).encode() in args:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("receivers", [0, 1])
def test_sigkill_under_load_loses_no_acknowledged_event(project_dir: Path, receivers: int) -> None:
    """Every 2xx is in the log exactly once after a kill -9; nothing refused is ever dispatched. With a
    receiver process, the kill -9 of `opsloop up` takes its receivers with it."""
    project = load_project(project_dir)
    cfg = project.endpoints["demo_request"]
    preset = make_preset(cfg.signature, project.secret(cfg.signature.secret_env or ""))
    port = free_port()
    up = UpProcess(project_dir, port, "--receivers", str(receivers))
    assert len(receiver_pids(up.proc.pid)) == receivers
    acked: list[tuple[str, str]] = []
    refused: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load(worker: int) -> None:
        with httpx.Client(timeout=5) as client:
            i = 0
            while not stop.is_set():
                i += 1
                msg = f"w{worker}-{i}"
                good = i % 5 != 0
                body = json.dumps({"email": f"{msg}@example.com" if good else "broken", "name": msg}).encode()
                headers = preset.sign(SignedRequest(body, {"webhook-id": msg}), time.time())
                try:
                    r = client.post(f"{up.url}/hooks/demo_request", content=body, headers=headers)
                except httpx.HTTPError:
                    continue
                with lock:
                    if r.status_code in (200, 202):
                        acked.append((msg, r.json()["id"]))
                    elif r.status_code < 500:
                        refused.append(msg)
                    # a 503 is "outcome unknown, retry" (a receiver whose main process died mid-answer),
                    # like a dropped connection: the event may be stored, a retry with its id dedupes

    threads = [threading.Thread(target=load, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) > 200, 30, what="some load to be acknowledged")
    os.kill(up.proc.pid, signal.SIGKILL)
    up.proc.wait(10)
    wait_for(lambda: not receiver_pids(up.proc.pid), 10, what="the receivers to die with opsloop up")
    stop.set()
    for t in threads:
        t.join(10)
    up2 = UpProcess(project_dir, port)
    try:
        from .conftest import make_app

        app = make_app(project_dir)
        store = app.store
        accepted = {e.idempotency_key: e for e in _all_accepted(store)}
        for msg, event_id in acked:
            assert msg in accepted, f"acknowledged {msg} missing after kill -9"
            assert accepted[msg].id == event_id
        keys = [e.idempotency_key for e in _all_accepted(store)]
        assert len(keys) == len(set(keys)), "an event was stored twice"
        for msg in refused:
            assert msg not in accepted
        wait_for(lambda: store.count_events("received") == 0, 20, what="every accepted event to be dispatched")
        app.close()
    finally:
        up2.stop()


def _all_accepted(store):  # type: ignore[no-untyped-def]
    out, cursor = [], 0
    while batch := store.read_events(cursor, 5000):
        out.extend(batch)
        cursor = batch[-1].seq
    return out
