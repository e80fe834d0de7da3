"""Scheduled pulls inside ``opsloop up``: each source with a ``schedule:`` (cron) runs when due.

A source whose last run is older than its most recent scheduled time (never run, or missed while the
server was down) runs once at start-up. A partial run (daily quota) is retried at the first scheduled
time after the vendor's quota resets. Pulls run one at a time, in a worker thread, and with several worker
processes (docs/deploy.md) only the one leading the warehouse loader runs the schedules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .._halt import Interrupted
from .project_files import SOURCES

if TYPE_CHECKING:
    from ..app import App
    from ._runner import PullResult

log = logging.getLogger("opsloop.sources")


def _previous(schedule: str, now: float) -> float:
    from croniter import croniter

    return float(croniter(schedule, datetime.fromtimestamp(now, tz=UTC)).get_prev(float))


def _next(schedule: str, after: float) -> float:
    from croniter import croniter

    return float(croniter(schedule, datetime.fromtimestamp(after, tz=UTC)).get_next(float))


class SourceScheduler:
    """Runs scheduled pulls, and pulls asked for over the API (``POST /api/sources/{name}/pull``), one at
    a time: while ``opsloop up`` owns the DuckDB file, ``opsloop pull`` goes through here."""

    def __init__(self, app: App, schedules: dict[str, str]) -> None:
        import threading

        self.app = app
        self.schedules = schedules
        self.lock = threading.Lock()
        self.running: str | None = None
        self.completed: list[tuple[str, str]] = []
        """(source, status) of every scheduled pull this process ran, oldest first."""

    def due_at(self, name: str, now: float) -> float:
        from ._state import SourceState

        schedule = self.schedules[name]
        last = SourceState(self.app.store).last_run(name)
        missed = last is None or last.started_at < _previous(schedule, now)
        due = now if missed or last is None else _next(schedule, last.started_at)
        if last is not None and last.status == "partial" and last.resume_at:
            due = max(due, _next(schedule, last.resume_at - 1))
        return due

    def pull(self, name: str, full_refresh: bool = False) -> PullResult:
        from ._runner import pull

        with self.lock:
            return pull(self.app, name, full_refresh)

    async def resume(self) -> None:
        """At start, in the process leading the warehouse: pull again what the last stop interrupted."""
        for job, detail in self.app.halt.owed().items():
            name = job.removeprefix("pull:")
            if not job.startswith("pull:"):
                continue
            if name not in SOURCES.of(self.app.project):
                self.app.halt.settle(job)
                continue
            log.info("pulling %s again: the last stop interrupted its pull", name)
            full = bool(detail.get("full_refresh")) if isinstance(detail, dict) else False
            try:
                await asyncio.to_thread(self.pull, name, full)
            except Interrupted:
                return
            except Exception as exc:
                log.warning("the pull of %s owed from the last stop failed: %s", name, exc)

    async def run(self) -> None:
        from ._errors import SourceError

        while True:
            now = time.time()
            dues = {name: await asyncio.to_thread(self.due_at, name, now) for name in self.schedules}
            name, due = min(dues.items(), key=lambda kv: kv[1])
            if due > now:
                await asyncio.sleep(min(due - now, 30.0))
                continue
            self.running = name
            try:
                result = await asyncio.to_thread(self.pull, name)
                self.completed.append((name, result.status))
                log.info("scheduled pull of %s: %s, %s rows", name, result.status, result.run.rows)
            except Interrupted:
                return
            except SourceError as exc:
                self.completed.append((name, "failed"))
                log.warning("scheduled pull of %s failed: %s", name, exc)
            except Exception:
                self.completed.append((name, "failed"))
                log.exception("scheduled pull of %s crashed", name)
            finally:
                self.running = None


def attach(app: App) -> None:
    sources = SOURCES.of(app.project)
    if not sources:
        return
    schedules = {name: cfg.schedule for name, cfg in sources.items() if cfg.schedule}
    scheduler = SourceScheduler(app, schedules)
    app.services["sources"] = scheduler
    app.background.append(app.as_leader(app.WAREHOUSE_ROLE, scheduler.resume))
    if schedules:
        # one scheduler among the workers (two would pull each source twice and write its change events twice),
        # in the process that owns the warehouse work
        app.background.append(app.as_leader(app.WAREHOUSE_ROLE, scheduler.run))
