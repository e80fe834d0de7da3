"""Postgres: the engine on a shared store, two servers claiming with SKIP LOCKED, schedules without duplicate
fires; catch-up policies after downtime."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opsloop.workflows import runs

from ..conftest import ServerThread, wait_for
from .conftest import emit, runs_of, wait_runs, write_files

pytestmark = pytest.mark.postgres

COUNTED = '''
from opsloop import workflow, Context

async def effect(app, label: str) -> str:
    import asyncio
    await asyncio.to_thread(app.store.kv_set, "effect:" + label, label)
    return label

@workflow(on="job.created")
async def jobs(ctx: Context) -> str:
    done = await ctx.step("work", effect, ctx.app, str(ctx.event["data"]["n"]))
    await ctx.sleep("1s")
    got = await ctx.wait_for_event("job.ok", match="event.data.n == trigger.data.n", timeout="300s")
    return done + (":ok" if got else ":timeout")
'''

TICKS = '''
from opsloop import workflow, Context

@workflow(schedule="* * * * * *", timezone="Europe/Paris")
async def every_second(ctx: Context) -> float:
    return ctx.event["data"]["tick"]
'''


def second_warehouse(srv: ServerThread) -> object:
    return srv.app.settings.warehouse.model_copy(update={"path": "warehouse2.duckdb"})


def test_two_servers_share_postgres_and_run_each_run_once(project_dir: Path, pg_url: str,
                                                          start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/jobs.py": COUNTED})
    one = start(project_dir, state_url=pg_url, time_scale=0.05)
    two = start(project_dir, state_url=pg_url, time_scale=0.05, warehouse=second_warehouse(one))
    for n in range(40):
        emit(one if n % 2 else two, "job.created", {"n": n})
    for n in range(40):
        emit(two, "job.ok", {"n": n})
    done = wait_runs(one, 40, workflow="jobs", timeout=60)
    assert sorted(r.output for r in done) == sorted(f"{n}:ok" for n in range(40))
    assert len(runs_of(one, "jobs")) == 40  # one run per event although both servers consumed the log
    owners = {r.attempts for r in done}
    assert owners  # every run finished; claims never doubled a step:
    for r in done:
        steps = runs.run_steps(one.app.store, r.id)
        assert [s["step"] for s in steps] == ["work", "sleep", "wait:job.ok"]
        assert steps[0]["attempts"] == 1
        # the wait resumed soon after its event arrived (measured: 0.04-0.45 s idle, up to 1.4 s beside a
        # CPU hog). The 15 s wait timeout is not that bound: under load the test's own 80 appends can take
        # longer than a short timeout, and the run then rightly times out before its event exists.
        got = steps[2]["output"]
        assert got["name"] == "job.ok"
        assert steps[2]["finished_at"] - got["received_at"] < 5.0


def test_schedules_fire_once_per_tick_across_two_servers(project_dir: Path, pg_url: str,
                                                         start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/ticks.py": TICKS})
    one = start(project_dir, state_url=pg_url)
    start(project_dir, state_url=pg_url, warehouse=second_warehouse(one))
    done = wait_runs(one, 3, workflow="every_second", timeout=20)
    time.sleep(0.5)
    ticks = [r.output for r in runs_of(one, "every_second") if r.output is not None]
    assert len(ticks) == len(set(ticks))  # no tick fired twice
    assert all(float(t).is_integer() for t in ticks) and len(done) >= 3


YEARLY = '''
from opsloop import workflow, Context

@workflow(schedule="0 0 1 1 *", timezone="UTC", catch_up="{policy}")
async def yearly(ctx: Context) -> dict:
    return ctx.event["data"]
'''


@pytest.mark.parametrize("policy", ["skip", "run_once"])
def test_catch_up_after_downtime(project_dir: Path, start: Callable[..., ServerThread], policy: str) -> None:
    write_files(project_dir, {"workflows/yearly.py": YEARLY.replace("{policy}", policy)})
    srv = start(project_dir)
    store = srv.app.store
    wait_for(lambda: store.query("SELECT 1 FROM wf_workflows WHERE name = 'yearly'"), what="the workflow row")
    # pretend the server was down since before New Year 2025: two ticks were missed
    with store.transaction() as cur:
        store.execute(cur, "INSERT INTO wf_schedule_ticks (schedule, tick, run_id, created_at) VALUES (?, ?, NULL, ?)",
                      ("yearly", 1703980800.0, time.time()))  # 2023-12-31
    engine = srv.app.services["workflows"]
    engine.scheduler.fire_due()
    engine.scheduler.fire_due()  # a second pass (or a second server) fires nothing more
    if policy == "skip":
        time.sleep(0.3)
        assert runs_of(srv, "yearly") == []
    else:
        [run] = wait_runs(srv, 1, workflow="yearly")
        year = time.gmtime().tm_year
        assert run.output["missed"] == year - 2023  # New Year 2024 ... this year, all late
        assert run.output["at"] == f"{year}-01-01T00:00:00+00:00"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_retention_purges_finished_runs_and_old_ticks(project_dir: Path, request: pytest.FixtureRequest,
                                                      backend: str) -> None:
    from opsloop.state import open_store

    url = request.getfixturevalue("pg_url") if backend == "postgres" else "sqlite:///state/t.sqlite"
    store = open_store(url, project_dir)
    try:
        old = time.time() - 40 * 86400
        with store.transaction() as cur:
            for status in ("completed", "waiting"):
                runs.insert_run(store, cur, "wf", None, dedupe_key=status, start_seq=0, run_id=f"run_{status}")
                store.execute(cur, "UPDATE wf_runs SET status = ?, created_at = ? WHERE id = ?",
                              (status, old, f"run_{status}"))
            for tick in (1.0, 2.0, 3.0):
                store.execute(cur, "INSERT INTO wf_schedule_ticks (schedule, tick, run_id, created_at) "
                                   "VALUES ('s', ?, NULL, ?)", (tick, old))
        assert runs.purge_runs(store, time.time() - 30 * 86400) == 1
        assert [r.id for r in runs.list_runs(store)] == ["run_waiting"]  # unfinished runs are kept
        assert store.query("SELECT tick FROM wf_schedule_ticks") == [(3.0,)]
    finally:
        store.close()


def test_a_paused_schedule_does_not_fire_and_catches_up_on_resume(project_dir: Path,
                                                                 start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/yearly.py": YEARLY.replace("{policy}", "run_once")})
    srv = start(project_dir)
    store = srv.app.store
    wait_for(lambda: store.query("SELECT 1 FROM wf_workflows WHERE name = 'yearly'"), what="the workflow row")
    runs.set_paused(store, "yearly", True)
    with store.transaction() as cur:
        store.execute(cur, "INSERT INTO wf_schedule_ticks (schedule, tick, run_id, created_at) VALUES (?, ?, NULL, ?)",
                      ("yearly", 1703980800.0, time.time()))
    engine = srv.app.services["workflows"]
    engine.scheduler.fire_due()
    assert runs_of(srv, "yearly") == []
    runs.set_paused(store, "yearly", False)
    engine.scheduler.fire_due()
    [run] = wait_runs(srv, 1, workflow="yearly")
    assert run.output["missed"] == time.gmtime().tm_year - 2023
