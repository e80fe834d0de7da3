"""Flow control: retries with backoff, step timeouts, concurrency per key, debounce, idempotency, cancel_on,
priority."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

from opsloop.workflows import runs

from ..conftest import ServerThread, wait_for
from .conftest import emit, runs_of, wait_runs, write_files

HELPERS = '''
import asyncio, json, time
from pathlib import Path
from opsloop import workflow, Context
from opsloop.errors import TransientDeliveryError

LOG = Path(__file__).parent.parent / "log.jsonl"

def note(**fields) -> None:
    with LOG.open("a") as f:
        f.write(json.dumps({"t": time.time(), **fields}) + "\\n")
'''


def log(root: Path) -> list[dict]:  # type: ignore[type-arg]
    path = root / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_transient_errors_retry_with_exponential_backoff_and_timeouts_fail(
        project_dir: Path, start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/flaky.py": HELPERS + '''
attempts = {"n": 0}

def flaky() -> str:
    attempts["n"] += 1
    note(kind="try", n=attempts["n"])
    if attempts["n"] < 3:
        raise TransientDeliveryError("busy")
    return "finally"

async def forever() -> None:
    await asyncio.sleep(30)

@workflow(on="go", retries=4, retry_backoff="10s")
async def flaky_flow(ctx: Context) -> str:
    return await ctx.step("flaky", flaky)

@workflow(on="slow", retries=1, step_timeout="200ms", retry_backoff="1s")
async def slow_flow(ctx: Context) -> None:
    await ctx.step("forever", forever)
'''})
    srv = start(project_dir, time_scale=0.02)  # backoff 10 s -> 0.2 s, then 0.4 s
    emit(srv, "go", {})
    emit(srv, "slow", {})
    [ok] = wait_runs(srv, 1, workflow="flaky_flow")
    assert ok.output == "finally"
    tries = [e["t"] for e in log(project_dir) if e["kind"] == "try"]
    assert len(tries) == 3
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert 0.18 < gaps[0] < 0.8 and 0.38 < gaps[1] < 1.2 and gaps[1] > gaps[0]  # 0.2 s, then 0.4 s
    [step] = runs.run_steps(srv.app.store, ok.id)
    assert step["attempts"] == 3 and step["status"] == "completed"
    [failed] = wait_runs(srv, 1, status="failed", workflow="slow_flow")
    assert failed.error == "step 'forever' failed after 2 attempts: TimeoutError: TimeoutError"


def test_concurrency_limit_per_key(project_dir: Path, start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/conc.py": HELPERS + '''
async def work(customer: str, n: int) -> None:
    note(kind="start", customer=customer, n=n)
    await asyncio.sleep(0.3)
    note(kind="end", customer=customer, n=n)

@workflow(on="task", concurrency=1, concurrency_key="{{ event.data.customer }}")
async def per_customer(ctx: Context) -> None:
    await ctx.step("work", work, ctx.input["customer"], ctx.input["n"])
'''})
    srv = start(project_dir)
    for n in range(3):
        emit(srv, "task", {"customer": "acme", "n": n})
    emit(srv, "task", {"customer": "globex", "n": 9})
    wait_runs(srv, 4, workflow="per_customer")
    entries = log(project_dir)
    spans = {}
    for e in entries:
        spans.setdefault((e["customer"], e["n"]), {})[e["kind"]] = e["t"]
    acme = sorted((s["start"], s["end"]) for (c, _), s in spans.items() if c == "acme")
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(acme))  # never two at once for acme
    globex = spans[("globex", 9)]
    assert globex["start"] < acme[1][0]  # another customer is not held back


def test_debounce_hands_the_run_every_event_of_the_window(project_dir: Path,
                                                          start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/deb.py": HELPERS + '''
@workflow(on="profile.changed", debounce="10s", debounce_key="{{ event.data.person }}")
async def digest(ctx: Context) -> list:
    return [e["data"]["field"] for e in ctx.events]
'''})
    srv = start(project_dir, time_scale=0.15)  # a 1.5 s window
    for field in ("email", "phone", "plan"):
        emit(srv, "profile.changed", {"person": "p1", "field": field})
    emit(srv, "profile.changed", {"person": "p2", "field": "name"})
    done = wait_runs(srv, 2, workflow="digest")
    assert sorted(r.output for r in done) == [["email", "phone", "plan"], ["name"]]


def test_idempotency_key_cancel_on_and_priority(project_dir: Path, start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/misc.py": HELPERS + '''
from opsloop.workflows import CancelOn

@workflow(on="order.placed", idempotency="{{ event.data.order }}")
async def once_per_order(ctx: Context) -> int:
    return ctx.input["order"]

@workflow(on="trial.started", cancel_on=[CancelOn("trial.converted", "event.data.user == trigger.data.user")])
async def nurture(ctx: Context) -> None:
    await ctx.sleep("1h")

@workflow(on="job", priority="{{ event.data.priority }}", concurrency=1, concurrency_key="all")
async def prioritised(ctx: Context) -> None:
    await ctx.step("run", note, kind="ran", label=ctx.input["name"])
'''})
    srv = start(project_dir)
    emit(srv, "order.placed", {"order": 7})
    emit(srv, "order.placed", {"order": 7})
    emit(srv, "order.placed", {"order": 8})
    done = wait_runs(srv, 2, workflow="once_per_order")
    assert sorted(r.output for r in done) == [7, 8]
    emit(srv, "trial.started", {"user": "u1"})
    emit(srv, "trial.started", {"user": "u2"})
    wait_for(lambda: sum(r.status == "sleeping" for r in runs_of(srv, "nurture")) == 2, what="two sleeping runs")
    emit(srv, "trial.converted", {"user": "u1"})
    [cancelled] = wait_runs(srv, 1, status="cancelled", workflow="nurture")
    assert cancelled.trigger and cancelled.trigger["data"]["user"] == "u1"
    assert "cancelled by event trial.converted" in str(cancelled.error)
    assert [r.status for r in runs_of(srv, "nurture") if r.id != cancelled.id] == ["sleeping"]
    runs.set_paused(srv.app.store, "prioritised", True)
    for name, priority in (("low1", 0), ("low2", 0), ("urgent", 10), ("low3", 0)):
        emit(srv, "job", {"name": name, "priority": priority})
    wait_for(lambda: len(runs_of(srv, "prioritised")) == 4, what="four queued runs")
    time.sleep(0.1)
    runs.set_paused(srv.app.store, "prioritised", False)
    wait_runs(srv, 4, workflow="prioritised")
    order = [e["label"] for e in log(project_dir) if e["kind"] == "ran"]
    assert order[0] == "urgent" and sorted(order) == ["low1", "low2", "low3", "urgent"]
