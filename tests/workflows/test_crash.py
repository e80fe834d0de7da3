"""SIGKILL a real `opsloop up` during a sleep, a wait and a step; restart; every run finishes and each
completed step's Slack side effect happened exactly once (checked on the fake Slack server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsloop.state import open_store
from opsloop.workflows import runs

from ..conftest import free_port, wait_for
from ..syncs.conftest import FakeServer
from .conftest import use_slack, write_files
from .fake_slack import FakeSlack

pytestmark = pytest.mark.slow

FLOW = '''
from opsloop import workflow, Context

@workflow(on="crash.start")
async def crashy(ctx: Context) -> dict:
    n = ctx.event["data"]["n"]
    first = await ctx.action("slack.post", step="first", channel="#ops", text=f"first {n}")
    await ctx.sleep("4s")
    go = await ctx.wait_for_event("crash.go", match="event.data.n == trigger.data.n", timeout="120s")
    await ctx.action("slack.post", step="second", channel="#ops", text=f"second {n}")
    await ctx.action("slack.update", step="third", message=first, text=f"done {n}")
    return {"n": n, "go": go["id"] if go else None}
'''

ENDPOINTS = {
    "events/crash_start.yml": "event: crash.start\nsignature: {preset: none}\n",
    "events/crash_go.yml": "event: crash.go\nsignature: {preset: none}\n",
}


class Up:
    """`opsloop up` in a subprocess that the test can SIGKILL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.time_scale = 1.0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "OPSLOOP_FSYNC": "false", "OPSLOOP_TIME_SCALE": str(self.time_scale)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opsloop", "up", "--project", str(self.root), "--port", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.root / "up.log", "ab"),  # noqa: SIM115
        )
        wait_for(self._healthy, 30, 0.1, what="opsloop up to answer /healthz")

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def post(self, endpoint: str, data: dict[str, Any]) -> None:
        response = httpx.post(f"{self.url}/hooks/{endpoint}", json=data, timeout=10)
        assert response.status_code == 202, response.text


@pytest.fixture
def up(project_dir: Path, fake_slack: FakeSlack) -> Iterator[Up]:
    use_slack(project_dir, fake_slack)
    write_files(project_dir, {"workflows/crashy.py": FLOW, **ENDPOINTS})
    server = Up(project_dir)
    yield server
    server.stop()


def all_runs(root: Path) -> list[runs.RunRow]:
    store = open_store("sqlite:///state/opsloop.sqlite", root)
    try:
        return runs.list_runs(store, workflow="crashy")
    finally:
        store.close()


def sleep_deadlines(root: Path) -> dict[str, Any]:
    store = open_store("sqlite:///state/opsloop.sqlite", root)
    try:
        steps = {r.id: runs.run_steps(store, r.id) for r in runs.list_runs(store, "crashy")}
        return {run_id: s[1]["output"]["until"] for run_id, s in steps.items() if len(s) > 1}  # sleeping ones
    finally:
        store.close()


def texts(slack: FakeSlack) -> list[str]:
    return sorted(m["text"] for m in slack.messages["C0OPS00001"])


N = 5


def finish_and_check(up: Up, slack: FakeSlack) -> None:
    done = wait_for(lambda: (rs := all_runs(up.root)) and all(r.status == "completed" for r in rs) and rs, 40,
                    0.2, what="every run to complete")
    assert len(done) == N
    assert texts(slack) == sorted(f"done {n}" for n in range(N)) + sorted(f"second {n}" for n in range(N))
    # exactly once: N "first" posts and N "second" posts reached Slack
    sent = sorted(p["text"] for p in slack.posts())
    assert sent.count("first 0") == 1 and len([t for t in sent if t.startswith("first")]) == N


def test_sigkill_during_a_sleep_keeps_the_deadline_and_posts_once(up: Up, fake_slack: FakeSlack) -> None:
    up.start()
    for n in range(N):
        up.post("crash_start", {"n": n})
    wait_for(lambda: len(fake_slack.posts()) == N and len(sleep_deadlines(up.root)) == N, 20, 0.1,
             what="the first posts")
    before = sleep_deadlines(up.root)
    up.kill()
    up.start()
    for n in range(N):
        up.post("crash_go", {"n": n})
    finish_and_check(up, fake_slack)
    assert sleep_deadlines(up.root) == before  # the original deadlines survived the restart


def test_sigkill_during_a_wait_then_the_event_arrives(up: Up, fake_slack: FakeSlack) -> None:
    up.time_scale = 0.05  # the 4 s sleep passes quickly; the 120 s wait still outlives the kill
    up.start()
    for n in range(N):
        up.post("crash_start", {"n": n})
    wait_for(lambda: sum(r.status == "waiting" for r in all_runs(up.root)) == N, 30, 0.1, what="runs waiting")
    up.kill()
    up.start()
    for n in range(N):
        up.post("crash_go", {"n": n})
    finish_and_check(up, fake_slack)


def test_sigkill_mid_step_reruns_the_step_without_a_duplicate_message(up: Up, fake_slack: FakeSlack) -> None:
    up.time_scale = 0.05
    up.start()
    for n in range(N):
        up.post("crash_start", {"n": n})
    wait_for(lambda: sum(r.status == "waiting" for r in all_runs(up.root)) == N, 30, 0.1, what="runs waiting")
    fake_slack.delay["chat.postMessage"] = 3.0  # Slack posts the message but answers late
    for n in range(N):
        up.post("crash_go", {"n": n})
    wait_for(lambda: len([p for p in fake_slack.posts() if p["text"].startswith("second")]) == N, 20, 0.05,
             what="the second posts to be in flight")
    up.kill()  # the answers never arrive: the steps did not complete
    fake_slack.delay.clear()
    up.start()
    finish_and_check(up, fake_slack)
    # the re-run steps looked in the channel history and found their messages instead of posting again
    assert len([p for p in fake_slack.posts() if p["text"].startswith("second")]) == N
    assert fake_slack.method_calls("conversations.history")


FLAKY = '''
import os, urllib.request
from opsloop import workflow, Context

def call() -> int:
    with urllib.request.urlopen(os.environ["FLAKY_URL"], timeout=5) as answer:  # 500 raises
        return answer.status

@workflow(on="flaky.start", retries=3, retry_backoff="1s")
async def flaky(ctx: Context) -> int:
    return await ctx.step("call", call)
'''


def test_sigkill_between_retries_continues_the_attempt_count(project_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """retries=3 means 4 calls in all, even when the process is killed while waiting to retry."""
    failing = FakeServer(lambda _request: (500, {}, {"error": "down"}))
    write_files(project_dir, {"workflows/flaky.py": FLAKY,
                              "events/flaky_start.yml": "event: flaky.start\nsignature: {preset: none}\n"})
    monkeypatch.setenv("FLAKY_URL", failing.url)  # the workflow's own code reads it
    up = Up(project_dir)
    try:
        up.start()
        up.post("flaky_start", {})

        def attempts() -> int:
            store = open_store("sqlite:///state/opsloop.sqlite", project_dir)
            try:
                rs = runs.list_runs(store, workflow="flaky")
                steps = runs.run_steps(store, rs[0].id) if rs else []
                return int(steps[0]["attempts"]) if steps and steps[0]["status"] == "retrying" else 0
            finally:
                store.close()

        wait_for(lambda: attempts() >= 2, 20, 0.05, what="two failed attempts recorded")
        up.kill()  # during the 2 s backoff before the third attempt
        calls_before = len(failing.requests)
        up.start()
        done = wait_for(lambda: (rs := [r for r in all_runs_of(project_dir, "flaky") if r.status == "failed"]) and rs,
                        30, 0.2, what="the run to fail after its last retry")
        assert len(failing.requests) == 4, (calls_before, len(failing.requests))
        assert "after 4 attempts" in (done[0].error or "")
    finally:
        up.stop()
        failing.close()


def all_runs_of(root: Path, workflow: str) -> list[runs.RunRow]:
    store = open_store("sqlite:///state/opsloop.sqlite", root)
    try:
        return runs.list_runs(store, workflow=workflow)
    finally:
        store.close()
