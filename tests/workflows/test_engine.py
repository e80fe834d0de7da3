"""The engine through a real server: memoised steps, durable sleep, wait_for_event without a race window."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from opsloop.workflows import runs

from ..conftest import ServerThread, wait_for
from .conftest import emit, runs_of, wait_runs, write_files

PY_FLOW = '''
from pathlib import Path
from opsloop import workflow, Context

LOG = Path(__file__).parent.parent / "side_effects.log"

def effect(name: str) -> str:
    with LOG.open("a") as f:
        f.write(name + "\\n")
    return name.upper()

@workflow(on="signup.created")
async def onboard(ctx: Context) -> dict:
    first = await ctx.step("first", effect, "first:" + ctx.event["data"]["email"])
    await ctx.sleep("10s")
    claim = await ctx.wait_for_event("signup.verified", match="event.data.email == trigger.data.email",
                                     timeout="20s")
    second = await ctx.step("second", effect, "second")
    return {"first": first, "second": second, "verified": claim["id"] if claim else None}
'''


def test_python_workflow_memoises_steps_sleeps_and_waits(project_dir: Path,
                                                         start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/onboard.py": PY_FLOW})
    srv = start(project_dir, time_scale=0.02)
    emit(srv, "signup.created", {"email": "ada@example.com"})
    run = wait_for(lambda: next(iter(runs_of(srv, "onboard")), None), what="a run")
    verified = emit(srv, "signup.verified", {"email": "ada@example.com"})
    emit(srv, "signup.verified", {"email": "someone@else.com"})
    [done] = wait_runs(srv, 1, workflow="onboard")
    assert done.id == run.id
    assert done.output == {"first": "FIRST:ADA@EXAMPLE.COM", "second": "SECOND", "verified": verified}
    # each side effect exactly once although the function was replayed after the sleep and the wait
    assert (project_dir / "side_effects.log").read_text().splitlines() == ["first:ada@example.com", "second"]
    detail = runs.run_detail(srv.app.store, run.id)
    assert [s["step"] for s in detail["steps"]] == ["first", "sleep", "wait:signup.verified", "second"]
    assert detail["steps"][2]["output"]["id"] == verified


def test_wait_times_out_with_none_and_the_run_continues(project_dir: Path,
                                                        start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/onboard.py": PY_FLOW})
    srv = start(project_dir, time_scale=0.02)
    emit(srv, "signup.created", {"email": "bob@example.com"})
    [done] = wait_runs(srv, 1, workflow="onboard")
    assert done.output["verified"] is None and done.output["second"] == "SECOND"


RACE_FLOW = '''
from opsloop import workflow, Context

async def slow(n: int) -> int:
    import asyncio
    await asyncio.sleep(0.05)
    return n

@workflow(on="order.placed")
async def race(ctx: Context) -> str | None:
    await ctx.step("slow", slow, 1)
    paid = await ctx.wait_for_event("order.paid", match="event.data.order == trigger.data.order", timeout="60s")
    return paid["data"]["order"] if paid else None
'''


def test_race_matching_event_right_after_the_trigger_is_seen_100_times(project_dir: Path,
                                                                      start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/race.py": RACE_FLOW})
    srv = start(project_dir, time_scale=1.0)
    for i in range(100):
        emit(srv, "order.placed", {"order": i})
        emit(srv, "order.paid", {"order": i})
    done = wait_runs(srv, 100, workflow="race", timeout=60)
    assert sorted(r.output for r in done) == list(range(100))


def test_an_event_starts_exactly_one_run_per_workflow(project_dir: Path, start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/onboard.py": PY_FLOW})
    srv = start(project_dir, time_scale=0.01)
    event_id = emit(srv, "signup.created", {"email": "x@example.com"})
    wait_runs(srv, 1, workflow="onboard")
    # the dispatcher is at-least-once: feed the same event through the consumer again
    engine = srv.app.services["workflows"]
    engine.trigger.handle([srv.app.store.get_event(event_id)])
    assert len(runs_of(srv, "onboard")) == 1
    assert json.loads(json.dumps(runs_of(srv)[0].trigger))["id"] == event_id


BIG_FLOW = '''
from opsloop import workflow, Context

def big() -> str:
    return "x" * (5 * 1024 * 1024)

def not_json() -> object:
    return {1, 2}

@workflow(on="big")
async def too_big(ctx: Context) -> None:
    await ctx.step("big", big)

@workflow(on="odd")
async def odd(ctx: Context) -> None:
    await ctx.step("set", not_json)
'''


def test_step_outputs_too_big_or_not_json_are_refused_with_a_clear_error(project_dir: Path,
                                                                        start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/big.py": BIG_FLOW})
    srv = start(project_dir)
    emit(srv, "big", {})
    emit(srv, "odd", {})
    failed = {r.workflow: r.error for r in wait_runs(srv, 2, status="failed")}
    assert "step 'big' returned 5242882 bytes, over the 4194304-byte limit" in str(failed["too_big"])
    assert "store the data in the warehouse" in str(failed["too_big"])
    assert "step 'set' returned a value that is not JSON" in str(failed["odd"])
