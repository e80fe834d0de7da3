"""The cron scheduler: fires each scheduled workflow's ticks, once per tick across every process.

A tick is claimed by inserting it (``wf_schedule_ticks`` has one row per schedule and tick), so two
processes sharing a Postgres store never both start its run. Missed ticks are handled by the schedule's
catch-up policy: the latest within ``SCHEDULE_GRACE`` runs; older ones run once (``run_once``) or not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from .._json import JsonObject
from ._api import WorkflowDef
from ._runstore import RunStore
from ._threads import StoreThreads

log = logging.getLogger("opsloop.workflows")

SCHEDULE_GRACE = 60.0


class Scheduler:
    def __init__(self, runs: RunStore, definitions: Callable[[], Mapping[str, WorkflowDef]],
                 kick: Callable[[], None], threads: StoreThreads) -> None:
        self.runs = runs
        self.threads = threads
        self.definitions = definitions
        self.kick = kick
        """Called after each pass: a fired tick made a run to claim."""

    async def run(self) -> None:
        while True:
            try:
                next_at = await self.threads.run(self.fire_due)
            except Exception:
                log.exception("the workflow scheduler failed; retrying")
                next_at = time.time() + 5
            self.kick()
            await asyncio.sleep(max(0.01, min(next_at - time.time(), 1.0)))

    def fire_due(self) -> float:
        """Fire every due tick; returns when the next one is due."""
        from croniter import croniter

        now = time.time()
        upcoming = now + 60
        paused = self.runs.paused()
        for wf in self.definitions().values():
            if wf.schedule is None or wf.name in paused:
                continue  # a paused schedule's ticks are handled on resume by its catch-up policy
            last = self.runs.last_tick(wf.name)
            if last is None:
                made = self.runs.created_at(wf.name)
                last = made if made is not None else now
            it = croniter(wf.schedule.cron, datetime.fromtimestamp(last, ZoneInfo(wf.schedule.timezone)))
            due: list[float] = []
            tick = float(it.get_next(float))
            while tick <= now and len(due) < 100000:
                due.append(tick)
                tick = float(it.get_next(float))
            upcoming = min(upcoming, tick)
            if not due:
                continue
            latest = due[-1]
            fire = now - latest <= SCHEDULE_GRACE or wf.schedule.catch_up == "run_once"
            self._fire_tick(wf, latest, fire, missed=len(due) - (1 if now - latest <= SCHEDULE_GRACE else 0))
        return upcoming

    def _fire_tick(self, wf: WorkflowDef, tick: float, fire: bool, missed: int) -> None:
        runs = self.runs
        with runs.transaction() as cur:
            if not runs.claim_tick(cur, wf.name, tick) or not fire:
                return
            zone = ZoneInfo(wf.schedule.timezone if wf.schedule else "UTC")
            at = datetime.fromtimestamp(tick, zone).isoformat()
            trigger: JsonObject = {"id": f"tick:{wf.name}:{tick:.0f}", "name": "schedule.tick", "seq": 0,
                       "data": {"schedule": wf.schedule.cron if wf.schedule else "", "tick": tick, "at": at,
                                "missed": missed},
                       "received_at": time.time(), "source": "schedule", "endpoint": None}
            run_id = runs.insert_run(cur, wf.name, trigger, dedupe_key=f"tick:{tick}", start_seq=runs.log_top(cur))
            runs.tick_ran(cur, wf.name, tick, run_id)
