"""The durable workflow engine, on opsloop's state store: its parts, put together for one App.

- ``_trigger.TriggerHandler``: the consumer over the event log (durable cursor ``workflows``) that
  starts, wakes and cancels runs.
- ``_executor.Executor``: claims runnable runs with a lease and replays each workflow function from its
  stored steps; ``Context`` writes through a journal (``_journal.Journal``) bound to the run's lease.
- ``_scheduler.Scheduler``: fires schedule ticks, once per tick across processes.
- ``_runstore.RunStore``: the one owner of the ``wf_*`` tables; every statement over them is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from .._ids import new_id
from ._api import WorkflowDef
from ._executor import LEASE_SECONDS, Executor
from ._runstore import LeaseLost, RunStore
from ._scheduler import SCHEDULE_GRACE, Scheduler
from ._templates import truthy
from ._threads import StoreThreads
from ._trigger import TriggerHandler
from .project_files import WORKFLOWS

if TYPE_CHECKING:
    from ..app import App

__all__ = ["LEASE_SECONDS", "SCHEDULE_GRACE", "Engine", "LeaseLost", "truthy"]

log = logging.getLogger("opsloop.workflows")


class Engine:
    """One App's workflow engine: ``app.services["workflows"]``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.owner = new_id("wkr_")
        self._runs: RunStore | None = None
        self._executor: Executor | None = None
        self._trigger: TriggerHandler | None = None
        self._scheduler: Scheduler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.threads = StoreThreads()
        """Every store call of the engine runs here, not on the loop's shared default pool (``_threads``)."""

    # -- configuration -----------------------------------------------------------------------
    @property
    def definitions(self) -> dict[str, WorkflowDef]:
        return WORKFLOWS.of(self.app.project)

    def definition(self, name: str) -> WorkflowDef:
        wf = self.definitions.get(name)
        if wf is None:
            raise LookupError(f"no workflow {name!r} in this project")
        return wf

    def _defs(self) -> dict[str, WorkflowDef]:
        return self.definitions

    # -- the parts (made on first use: the App opens its store lazily) -----------------------
    @property
    def runs(self) -> RunStore:
        if self._runs is None:
            # its own writer connection on Postgres: its batches do not queue behind the inbox's commits
            self._runs = RunStore(self.app.store, lane="workflows")
        return self._runs

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = Executor(self.runs, self.owner, self._defs, self.app, float(self.app.settings.time_scale),
                                      self.app.bus.notify, self.threads)
        return self._executor

    @property
    def trigger(self) -> TriggerHandler:
        if self._trigger is None:
            self._trigger = TriggerHandler(self.runs, self.app.bus, self._defs, self.executor,
                                           float(self.app.settings.time_scale))
        return self._trigger

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            self._scheduler = Scheduler(self.runs, self._defs, self.kick, self.threads)
        return self._scheduler

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        settings = self.app.settings
        sqlite = self.runs.backend == "sqlite"
        self.trigger.since = await self.threads.run(self.runs.register_workflows, list(self.definitions), sqlite)
        # Process roles (docs/deploy.md): receivers run no workflows; a scheduler fires schedule ticks only.
        self._tasks = []
        if settings.has_role("worker"):
            self.trigger.prepare()
            self._tasks = [
                asyncio.create_task(self.app.as_leader("workflows", self.trigger.run)(), name="workflows:consumer"),
                *self.executor.start(),
                asyncio.create_task(self._housekeeping(), name="workflows:housekeeping"),
            ]
        else:
            self.executor.start(claim=False)
        runs_schedules = settings.has_role("worker") or settings.role == "scheduler"
        if runs_schedules and any(wf.schedule for wf in self.definitions.values()):
            self._tasks.append(asyncio.create_task(self.scheduler.run(), name="workflows:scheduler"))

    async def stop(self) -> None:
        executor = self.executor
        executor.stopping = True
        self.trigger.stop()
        tasks = [*self._tasks, *executor.cancel_runs()]
        for task in self._tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.threads.run(self.trigger.save_position, True)
        await executor.close()
        self.threads.close()

    def kick(self) -> None:
        """Look for runnable runs now (a user resumed, reran or cancelled one)."""
        if self._executor is not None:
            self._executor.kick()

    # -- retention ---------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                days = self.app.settings.retention_days
                await self.threads.run(self.runs.purge, time.time() - days * 86400.0)
            await asyncio.sleep(3600)
