"""Runs syncs from triggers inside ``opsloop up``: after their model builds, on a cron schedule, on events.

A sync that enforces the hierarchy in a system (``system:``, ``enforce:`` on) and runs by itself (any trigger
but manual) also runs after an ``identity.built`` whose ``systems`` include that system: a losing edit there
changes no golden value, so no other trigger would fire. The run that follows the pull of the correction's
echo finds the system holding the golden value and sends nothing, so this never loops.

A trigger only asks for a run; it never carries rows. The diff is computed from the data at run time, so a
trigger lost in a crash costs nothing: the next run sends everything that changed. Runs of one sync never
overlap: a trigger arriving during a run queues exactly one more run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .project_files import SYNCS
from .runner import RunResult, SyncRunner

if TYPE_CHECKING:
    from ..app import App
    from ..state import EventRecord
    from .project_files import LoadedSync

log = logging.getLogger("opsloop.syncs")


class SyncService:
    """``app.services["syncs"]``: ``await service.trigger(name, reason)`` runs a sync in a worker thread."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.runner = SyncRunner(app)
        self._running: dict[str, asyncio.Task[object]] = {}
        self._again: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._enforcing: dict[str, str] | None = None
        self.results: list[RunResult] = []
        """The results of runs started by triggers, newest last (bounded)."""

    @property
    def syncs(self) -> dict[str, LoadedSync]:
        return self.runner.syncs

    def trigger(self, name: str, reason: str) -> None:
        """Start a run of ``name`` now, or queue one more when a run is in progress."""
        if name in self._running and not self._running[name].done():
            self._again.add(name)
            return
        self._running[name] = asyncio.get_running_loop().create_task(self._run(name, reason), name=f"sync:{name}")

    def lock(self, name: str) -> asyncio.Lock:
        """Held while ``name`` runs in this process (triggers and API calls take turns)."""
        return self._locks.setdefault(name, asyncio.Lock())

    async def run_now(self, name: str, *, dry_run: bool = False, full: bool = False, confirm_deletes: bool = False,
                      reset: bool = False, trigger: str = "manual") -> RunResult:
        """Run ``name`` once, after any run in progress (the API's ``POST /api/syncs/{name}/run``); the options
        are ``SyncRunner.run``'s."""
        async with self.lock(name):
            return await asyncio.to_thread(self.runner.run, name, dry_run=dry_run, full=full,
                                           confirm_deletes=confirm_deletes, reset=reset, trigger=trigger)

    async def _run(self, name: str, reason: str) -> None:
        while True:
            self._again.discard(name)
            try:
                async with self.lock(name):
                    result = await asyncio.to_thread(self.runner.run, name, trigger=reason)
                self.results = [*self.results[-99:], result]
                log.info("sync %s (%s): %s, sent %d, failed %d", name, reason, result.status, result.sent,
                         result.failed)
            except Exception:
                log.exception("sync %s failed to run", name)
            if name not in self._again:
                return

    async def wait_idle(self) -> None:
        while any(not t.done() for t in self._running.values()):
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def on_model_built(self, event: EventRecord) -> None:
        data = event.payload if isinstance(event.payload, dict) else {}
        model, relation = data.get("model"), data.get("relation")
        for name, sync in self.syncs.items():
            cfg = sync.config
            if cfg.triggers.after_build and (
                (cfg.model and cfg.model in (model, relation)) or (cfg.table and cfg.table == relation)
            ):
                self.trigger(name, f"model.built:{model}")

    def enforcing(self) -> dict[str, str]:
        """The syncs that react to identity builds: name -> the system whose records they correct (those that
        run by itself and where enforcement applies; see ``enforce.why_not``)."""
        if self._enforcing is None:
            from .enforce import why_not

            self._enforcing = {}
            for name, sync in self.syncs.items():
                cfg, t = sync.config, sync.config.triggers
                if cfg.system and (t.after_build or t.cron or t.event) and why_not(self.app.project, sync) is None:
                    self._enforcing[name] = cfg.system
        return self._enforcing

    async def on_identity_built(self, event: EventRecord) -> None:
        data = event.payload if isinstance(event.payload, dict) else {}
        changed = data.get("systems") or {}
        for name, system in self.enforcing().items():
            counts = changed.get(system) if isinstance(changed, dict) else None
            if isinstance(counts, dict) and (counts.get("changed") or counts.get("deleted")):
                self.trigger(name, f"identity.built:{system}")

    def on_event_for(self, pattern: str) -> Callable[[EventRecord], Awaitable[None]]:
        async def handle(event: EventRecord) -> None:
            for name, sync in self.syncs.items():
                if sync.config.triggers.event == pattern and not event.name.startswith(f"sync.{name}."):
                    self.trigger(name, f"event:{event.name}")

        return handle

    async def cron_loop(self) -> None:
        from croniter import croniter

        schedules = {name: croniter(str(s.config.triggers.cron), time.time())
                     for name, s in self.syncs.items() if s.config.triggers.cron}
        due = {name: it.get_next(float) for name, it in schedules.items()}
        while due:
            now = time.time()
            for name, at in list(due.items()):
                if at <= now:
                    self.trigger(name, "cron")
                    due[name] = schedules[name].get_next(float)
            await asyncio.sleep(max(0.05, min(60.0, min(due.values()) - time.time())))

    async def resume(self) -> None:
        """At start: run again the syncs that the last stop interrupted (``App.halt``)."""
        for job in self.app.halt.owed():
            if job.startswith("sync:") and job[5:] in self.syncs:
                self.trigger(job[5:], "resume")

    async def stop(self) -> None:
        self._again.clear()
        await self.wait_idle()


def attach(app: App) -> None:
    syncs = SYNCS.of(app.project)
    service = SyncService(app)
    app.services["syncs"] = service
    if not syncs:
        return
    if any(s.config.triggers.after_build for s in syncs.values()):
        app.on_event("model.built", service.on_model_built)
    if service.enforcing():
        app.on_event("identity.built", service.on_identity_built)
    for pattern in sorted({str(s.config.triggers.event) for s in syncs.values() if s.config.triggers.event}):
        app.on_event(pattern, service.on_event_for(pattern))
    app.background.append(app.as_leader(app.WAREHOUSE_ROLE, service.resume))
    if any(s.config.triggers.cron for s in syncs.values()):
        app.background.append(app.as_leader(app.WAREHOUSE_ROLE, service.cron_loop))
    app.on_stop.append(service.stop)
