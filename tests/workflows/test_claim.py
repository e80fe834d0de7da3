"""Claiming runs: a look that finds nothing takes no write lock; timers are claimed just before they are due
and wait out the rest in the process, so the claim's own latency does not make them late."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opsloop._ids import new_id
from opsloop.state import StateStore, open_store
from opsloop.workflows import runs
from opsloop.workflows._runstore import RunStore

from ..conftest import ServerThread
from .conftest import emit, wait_runs, write_files


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    url = f"sqlite:///{tmp_path}/state.sqlite" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_store(url)
    s.migrate()
    yield s
    s.close()


def _parked(runstore: RunStore, status: str, wake_at: float) -> str:
    with runstore.transaction() as cur:
        run_id = runstore.insert_run(cur, "flow", None, dedupe_key=new_id("k_"), start_seq=0)
        assert run_id is not None
        runstore.park(cur, run_id, status, wake_at, 0)
    return run_id


def _no_limit(workflow: str) -> int | None:
    return None


def test_a_claim_that_finds_nothing_does_not_wait_for_the_write_lock(store: StateStore) -> None:
    runstore = RunStore(store)
    later = time.time() + 3600
    _parked(runstore, "sleeping", later)
    held, release = threading.Event(), threading.Event()

    def writer() -> None:  # another writer (the inbox, say) holds the write transaction
        with store.transaction() as cur:
            store.execute(cur, "UPDATE wf_runs SET updated_at = updated_at")
            held.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert held.wait(10)
        answer: list[object] = []
        look = threading.Thread(target=lambda: answer.append(runstore.claim("wkr_a", 10, 15, set(), _no_limit)))
        look.start()
        look.join(10)  # before: the look began a write transaction and waited until the writer let go
        assert not look.is_alive(), "a claim with nothing due waited for another writer's transaction"
        [(claimed, next_due)] = answer  # type: ignore[misc]
        assert claimed == [] and next_due == pytest.approx(later)
    finally:
        release.set()
        thread.join(10)


def test_timers_are_claimed_just_before_they_are_due(store: StateStore) -> None:
    runstore = RunStore(store)
    early = 10.0  # wide, so that a slow machine's inserts do not make the queued run due on their own
    now = time.time()
    sleeping = _parked(runstore, "sleeping", now + 5)
    waiting = _parked(runstore, "waiting", now + 6)
    later = _parked(runstore, "sleeping", now + 60)
    _parked(runstore, "queued", now + 5)  # a debounce window: it closes on time, not early
    claimed, next_due = runstore.claim("wkr_a", 10, 15, set(), _no_limit, early=early)
    assert sorted(run.id for run, _ in claimed) == sorted([sleeping, waiting])
    assert next_due == pytest.approx(now + 5)  # the queued run's wake; the later sleep's is 60 - early
    assert runstore.get(later).status == "sleeping"  # type: ignore[union-attr]
    # without ``early`` nothing is due yet
    assert runstore.claim("wkr_b", 10, 15, set(), _no_limit)[0] == []
    with runstore.transaction() as cur:
        store.execute(cur, "DELETE FROM wf_runs WHERE status = 'queued'")
    assert runstore.claim("wkr_b", 10, 15, set(), _no_limit, early=early)[1] == pytest.approx(now + 60 - early)


TIMERS = '''
import time
from opsloop import workflow, Context

@workflow(on="timer.start")
async def timer(ctx: Context) -> dict:
    deadline = await ctx.step("deadline", lambda: time.time() + 0.3)
    await ctx.sleep(until=deadline)
    woke = await ctx.step("woke", time.time)
    found = await ctx.wait_for_event("never.comes", timeout=0.3)
    timed_out = await ctx.step("timed_out", time.time)
    return {"deadline": deadline, "woke": woke, "found": found, "timed_out": timed_out}
'''


def test_a_timer_claimed_early_fires_at_its_deadline_not_before(project_dir: Path,
                                                                start: Callable[..., ServerThread]) -> None:
    write_files(project_dir, {"workflows/timer.py": TIMERS})
    srv = start(project_dir, time_scale=1.0)
    emit(srv, "timer.start", {})
    [done] = wait_runs(srv, 1, workflow="timer")
    out = done.output
    assert out["woke"] >= out["deadline"]  # the in-process wait of the early claim ends at the deadline
    assert out["found"] is None and out["timed_out"] >= out["woke"] + 0.3
    # two parks (the sleep, the wait), each woken by one claim: an early claim does not park the run again
    assert done.attempts == 3
    detail = runs.run_detail(srv.app.store, done.id)
    assert [s["step"] for s in detail["steps"]] == ["deadline", "sleep", "woke", "wait:never.comes", "timed_out"]
