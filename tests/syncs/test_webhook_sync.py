"""The webhook destination against a real local receiver: Standard Webhooks signatures, retries, split
batches, and a SIGKILL mid-sync followed by a resume that applies no row twice."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from typing import Any

import pytest
from standardwebhooks import Webhook

from .conftest import BOTH_WAREHOUSES, FakeServer, Request, SyncProject, people

pytestmark = pytest.mark.parametrize("sp", BOTH_WAREHOUSES, indirect=True)

SECRET = "whsec_" + base64.b64encode(b"s" * 24).decode()


class Receiver:
    """Verifies signatures and drops repeated webhook-ids, as the Standard Webhooks spec asks receivers to."""

    def __init__(self) -> None:
        self.seen_ids: list[str] = []
        self.applied: Counter[str] = Counter()
        self.reject_keys: set[str] = set()
        self.fail_next: list[tuple[int, dict[str, str]]] = []
        self.block_on: int | None = None
        self.blocked = threading.Event()
        self.release = threading.Event()

    def __call__(self, req: Request) -> tuple[int, dict[str, str], Any]:
        Webhook(SECRET).verify(req.body, req.headers)
        if self.fail_next:
            status, headers = self.fail_next.pop(0)
            return status, headers, {"error": "try later"}
        msg_id = req.headers["webhook-id"]
        rows = req.json()["data"]["rows"]
        bad = [r["key"] for r in rows if r["key"] in self.reject_keys]
        if bad:
            return 400, {}, {"error": f"invalid rows: {', '.join(bad)}"}
        first_time = msg_id not in self.seen_ids
        self.seen_ids.append(msg_id)
        if first_time:
            for row in rows:
                self.applied[row["key"]] += 1
        if self.block_on is not None and len(self.seen_ids) == self.block_on:
            self.blocked.set()
            self.release.wait(30)
        return 200, {}, {"ok": True}


def _sync(sp: SyncProject, url: str, batch: int = 10) -> None:
    sp.set_env(HOOK_SECRET=SECRET)
    sp.write_sync("hooks", f"""
        table: {sp.schema}.customers
        key: email
        destination: {{type: webhook, url: "{url}/in", secret_env: HOOK_SECRET}}
        mapping: {{email: email, phone: phone}}
        batch_size: {batch}
    """)


def test_signed_batches_retry_429_and_split_rejected(sp: SyncProject, fake_server: Any) -> None:
    receiver = Receiver()
    server: FakeServer = fake_server(receiver)
    sp.customers(people(8))
    _sync(sp, server.url, batch=8)
    receiver.fail_next = [(429, {"Retry-After": "1"}), (503, {})]
    receiver.reject_keys = {"user5@example.com"}
    result = sp.run("hooks")
    assert result.status == "partial"
    assert (result.sent, result.failed) == (7, 1)
    assert sorted(receiver.applied) == sorted(f"user{i}@example.com" for i in range(1, 9) if i != 5)
    state = sp.state("hooks")
    assert "invalid rows: user5@example.com" in state["user5@example.com"]["error"]
    # the data is fixed on the receiver's side: the failed row goes out on the next run, alone
    receiver.reject_keys = set()
    again = sp.run("hooks")
    assert (again.status, again.sent, again.failed) == ("ok", 1, 0)
    assert receiver.applied["user5@example.com"] == 1
    assert set(receiver.applied.values()) == {1}


def test_sigkill_mid_sync_then_resume_applies_every_row_once(sp: SyncProject, fake_server: Any) -> None:
    receiver = Receiver()
    receiver.block_on = 4
    server: FakeServer = fake_server(receiver)
    sp.customers(people(100))
    _sync(sp, server.url, batch=10)
    proc = subprocess.Popen([sys.executable, "-m", "opsloop", "sync", "hooks", "-p", str(sp.root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    try:
        assert receiver.blocked.wait(60), proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        receiver.release.set()
        if proc.poll() is None:
            proc.kill()
    assert len(receiver.seen_ids) == 4
    in_flight = receiver.seen_ids[3]
    receiver.block_on = None
    resumed = sp.run("hooks")
    assert resumed.status == "ok", resumed.error
    assert set(receiver.applied) == {f"user{i}@example.com" for i in range(1, 101)}
    assert set(receiver.applied.values()) == {1}, "a row was applied twice"
    # the batch that was in flight went out again with the same webhook-id, which the receiver dropped
    assert receiver.seen_ids.count(in_flight) == 2
    assert len(receiver.seen_ids) == 11
    assert sp.run("hooks").sent == 0
