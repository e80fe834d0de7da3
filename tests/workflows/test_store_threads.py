"""The engine's store calls run on its own threads (workflows/_threads.py): with the event loop's default
thread pool taken by blocking work (a long DuckDB query, a model build), events still start runs, their
steps commit and their Slack posts go out."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from opsloop._ids import new_id
from opsloop.app import App
from opsloop.state import NewEvent
from opsloop.workflows import runs

from ..conftest import make_app
from .conftest import use_slack, write_files
from .fake_slack import FakeSlack

FLOW = '''
from opsloop import workflow, Context

def count(n: int) -> int:
    return n + 1

@workflow(on="load.ping")
async def ping(ctx: Context) -> str:
    n = ctx.event["data"]["n"]
    handle = await ctx.action("slack.post", step="post", channel="#ops", text=f"ping {n}")
    bumped = await ctx.step("count", count, n)
    return f"{handle['ts']}:{bumped}"
'''

BLOCKERS = 40
"""More than the default pool's threads can ever be (min(32, CPUs + 4))."""


async def off_the_default_pool(side: ThreadPoolExecutor, fn: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(side, fn)


async def completed(app: App, side: ThreadPoolExecutor, count: int, timeout: float) -> list[runs.RunRow]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await off_the_default_pool(side, lambda: runs.list_runs(app.store, workflow="ping", limit=100))
        done = [r for r in found if r.status == "completed"]
        if len(done) >= count:
            return done
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {count} completed runs (have {len(done)})")


async def emit(app: App, side: ThreadPoolExecutor, n: int) -> None:
    event = NewEvent(id=new_id("evt_"), name="load.ping", received_at=time.time(), payload={"n": n}, source="test")
    await off_the_default_pool(side, lambda: app.store.append_events([event]))
    app.bus.notify()


def test_runs_commit_while_the_default_thread_pool_is_saturated(project_dir: Path, fake_slack: FakeSlack) -> None:
    write_files(project_dir, {"workflows/ping.py": FLOW})
    use_slack(project_dir, fake_slack)
    app = make_app(project_dir)
    release = threading.Event()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        side = ThreadPoolExecutor(2, thread_name_prefix="test-side")
        blockers: list[asyncio.Future[bool]] = []
        await app.start()
        try:
            await emit(app, side, 0)
            await completed(app, side, 1, timeout=20)  # the engine is up and leading
            # every thread of the default pool blocks until released; calls queued after them wait
            blockers += [loop.run_in_executor(None, release.wait, 60.0) for _ in range(BLOCKERS)]
            probe = loop.run_in_executor(None, lambda: None)
            for n in range(1, 6):
                await emit(app, side, n)
            done = await completed(app, side, 6, timeout=15)
            assert not probe.done(), "the default pool was not saturated: the test proves nothing"
            assert sorted(int(str(r.output).rsplit(":", 1)[1]) for r in done) == [1, 2, 3, 4, 5, 6]
        finally:
            release.set()
            await asyncio.gather(*blockers)
            await app.stop()
            side.shutdown()

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        app.close()
    assert sorted(p["text"] for p in fake_slack.posts()) == [f"ping {n}" for n in range(6)]
