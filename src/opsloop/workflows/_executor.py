"""The executor: claims runnable runs, replays each workflow function from its stored steps, and records
what it does through a journal bound to the run's lease.

Sleeps and waits park the run with an absolute wake time. Step results are written through a group
committer (one transaction for many runs' steps), each write fenced by the run's lease so that a worker
that lost its lease cannot write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from .._ids import new_id
from .._json import JsonObject, JsonValue
from ..state import NewEvent
from ..state.base import json_safe
from . import _templates
from ._api import WorkflowDef
from ._batch import WriteBatcher
from ._journal import WaitSpec
from ._runstore import Cursor, LeaseLost, RunRow, RunStore, StepMemo
from ._threads import StoreThreads
from .context import WAKE_EARLY, Context, Suspend, _describe, event_dict

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("opsloop.workflows")

LEASE_SECONDS = 15.0


class Executor:
    """Runs this worker's share of the runs, at most ``max_active`` at a time."""

    def __init__(self, runs: RunStore, owner: str, definitions: Callable[[], Mapping[str, WorkflowDef]],
                 app: App, time_scale: float, notify: Callable[[], None], threads: StoreThreads) -> None:
        self.runs = runs
        self.threads = threads
        """The engine's own threads for store calls (``_threads``)."""
        self.owner = owner
        self.definitions = definitions
        self.app = app
        self.time_scale = time_scale
        self.notify = notify
        """Called after an emitted event commits: wakes this process's log consumers."""
        self.retention_days = float(app.settings.retention_days)
        self.max_active = 256
        self.poll = 0.25
        self.batch: WriteBatcher | None = None
        self.active: dict[str, asyncio.Task[None]] = {}
        self.stopping = False
        self._kick: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, claim: bool = True) -> list[asyncio.Task[None]]:
        """Start the group committer; returns the claim loop and the lease heartbeat as tasks (none when
        ``claim`` is False: a process that runs no workflows)."""
        self.stopping = False
        self._kick = asyncio.Event()
        runs, owner = self.runs, self.owner
        self.batch = WriteBatcher(runs.store, fence=lambda cur, ids: runs.fence_many(cur, ids, owner), lane=runs.lane,
                                  threads=self.threads)
        self.batch.start()
        if not claim:
            return []
        return [
            asyncio.create_task(self._claim_loop(), name="workflows:worker"),
            asyncio.create_task(self._heartbeat(), name="workflows:heartbeat"),
        ]

    def cancel_runs(self) -> list[asyncio.Task[None]]:
        """Cancel every run task (their leases stay until ``close``); returns them to await."""
        tasks = list(self.active.values())
        for task in tasks:
            task.cancel()
        return tasks

    async def close(self) -> None:
        self.active.clear()
        if self.batch is not None:
            await self.batch.stop()
            self.batch = None
        with contextlib.suppress(Exception):
            await self.threads.run(self.runs.release, self.owner)

    def kick(self) -> None:
        """Claim now (a run may have become runnable)."""
        if self._kick is not None:
            self._kick.set()

    def room(self) -> int:
        return self.max_active - len(self.active)

    def spawn(self, run: RunRow, memo: dict[str, StepMemo]) -> None:
        """Run a run this worker holds the lease of."""
        if not self.stopping:
            self.active[run.id] = asyncio.create_task(self._execute(run, memo), name=f"run:{run.id}")

    # -- claiming ----------------------------------------------------------------------------
    def _concurrency(self, workflow: str) -> int | None:
        wf = self.definitions().get(workflow)
        return wf.concurrency if wf is not None else None

    async def _claim_loop(self) -> None:
        assert self._kick is not None
        while not self.stopping:
            self._kick.clear()
            free = self.room()
            next_due: float | None = None
            if free > 0:
                try:
                    claimed, next_due = await self.threads.run(
                        self.runs.claim, self.owner, free, LEASE_SECONDS, set(self.active), self._concurrency,
                        WAKE_EARLY)
                except Exception:
                    log.exception("claiming workflow runs failed; retrying")
                    await asyncio.sleep(1.0)
                    continue
                for run, memo in claimed:
                    self.spawn(run, memo)
                if len(claimed) == free:
                    await asyncio.sleep(0)
                    continue
            timeout = self.poll
            if next_due is not None:
                timeout = max(0.0, min(timeout, next_due - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=timeout)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            if not self.active:
                continue
            with contextlib.suppress(Exception):
                await self.threads.run(self.runs.renew, self.owner, LEASE_SECONDS)

    # -- running -----------------------------------------------------------------------------
    async def _execute(self, run: RunRow, memo: dict[str, StepMemo]) -> None:
        journal = RunJournal(self, run, waited=any(m.kind == "wait" for m in memo.values()))
        try:
            wf = self.definitions().get(run.workflow)
            if wf is None:
                await journal.finish("failed", None,
                                     f"workflow {run.workflow!r} is no longer defined in this project's workflows/")
                return
            ctx = Context(self.app, run, memo, journal, wf, self.time_scale)
            try:
                result = await wf.fn(ctx)
            except Suspend as parked:
                await journal.park(parked)
                return
            except LeaseLost:
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("run %s of %s failed: %s", run.id, run.workflow, exc)
                await journal.finish("failed", None, _describe(exc))
                return
            try:
                output = json.dumps(result)
            except (TypeError, ValueError) as exc:
                await journal.finish("failed", None, f"the workflow returned a value that is not JSON: {exc}")
                return
            await journal.finish("completed", output, None)
        except LeaseLost:
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("run %s: the engine failed to record its state; it will be retried", run.id)
        finally:
            self.active.pop(run.id, None)
            self.kick()

    async def submit(self, write: Callable[[Cursor], object], fence: str, events: Sequence[NewEvent] = ()) -> object:
        """Commit ``write`` (and append ``events``) with the next batch of this worker's writes, if this
        worker still holds the lease on run ``fence``."""
        if self.batch is None:
            raise LeaseLost("the engine is stopping")
        try:
            return await self.batch.submit(write, fence=fence, events=events)
        except LeaseLost:
            raise
        except RuntimeError as exc:
            if self.stopping:
                raise LeaseLost("the engine is stopping") from exc
            raise


class RunJournal:
    """One run's journal (``_journal.Journal``): every write is fenced by this worker's lease on the run."""

    def __init__(self, executor: Executor, run: RunRow, waited: bool = True) -> None:
        self._ex = executor
        self._runs = executor.runs
        self._run = run
        self._waited = waited
        """Whether the run may have a wait registered (its end then removes it)."""

    async def _write(self, write: Callable[[Cursor], None], events: Sequence[NewEvent] = ()) -> None:
        await self._ex.submit(write, self._run.id, events)

    async def record_step(self, step_id: str, pos: int, kind: str, status: str, output: str | None,
                          error: str | None, attempts: int, started: float) -> None:
        run_id = self._run.id
        await self._write(lambda cur: self._runs.record_step(
            cur, run_id, step_id, pos, kind, status, output, error, attempts, started))

    async def register_wait(self, step_id: str, pos: int, spec: WaitSpec) -> None:
        run = self._run
        self._waited = True
        await self._write(lambda cur: self._runs.register_wait(cur, run.id, run.workflow, step_id, pos, spec))

    async def resolve_wait(self, step_id: str, event: JsonObject | None) -> None:
        run_id = self._run.id
        await self._write(lambda cur: self._runs.resolve_wait(cur, run_id, step_id, event))

    async def find_event(self, spec: WaitSpec, context: Mapping[str, object]) -> JsonObject | None:
        return await self._ex.threads.run(find_event, self._runs, spec, context)

    async def emit(self, step_id: str, pos: int, name: str, data: object) -> str:
        run = self._run
        event = NewEvent(
            id=new_id("evt_"), name=name, received_at=time.time(), payload=data, source=f"workflow:{run.workflow}",
            related_id=run.id, expires_at=time.time() + self._ex.retention_days * 86400.0,
        )
        await self._write(lambda cur: self._runs.record_emit(cur, run.id, step_id, pos, event), [event])
        self._ex.notify()
        return event.id

    async def finish(self, status: str, output: str | None, error: str | None) -> None:
        run_id, waited = self._run.id, self._waited
        await self._write(lambda cur: self._runs.finish(cur, run_id, status, output, error, waited))

    async def park(self, parked: Suspend) -> None:
        run = self._run
        await self._write(lambda cur: self._runs.park(cur, run.id, parked.status, parked.wake_at, run.pokes))


def find_event(runs: RunStore, spec: WaitSpec, context: Mapping[str, object]) -> JsonObject | None:
    """The first event after the wait's position that its match accepts (None: none yet)."""
    after = int(spec["after_seq"])
    match = spec.get("match")
    while True:
        rows = runs.events_after(spec["event"], after, 200)
        for r in rows:
            try:
                data = read_payload(r.payload_text) if r.payload_text else None
            except (ValueError, RecursionError) as exc:  # an odd event (marked failed by the consumer)
                log.warning("wait_for_event skips event %s: its payload cannot be read: %s", r.id, exc)
                continue
            evd = event_dict(r.seq, r.id, r.name, data, r.received_at, r.source, r.endpoint)
            if not match:
                return evd
            try:
                if _templates.truthy(_templates.evaluate(match, {**context, "event": _templates.wrap(evd)})):
                    return evd
            except Exception as exc:
                log.warning("match expression %r failed on event %s: %s", match, evd["id"], exc)
        if len(rows) < 200:
            return None
        after = rows[-1].seq


def read_payload(text: str) -> JsonValue:
    """A stored payload for a run. One the inbox would refuse (emitted by code, or stored by an older
    opsloop) has its NaN or lone surrogate made text, so that the run, its pages and its steps can write
    it as JSON."""
    payload: JsonValue = json.loads(text)
    if "NaN" in text or "Infinity" in text or "\\u" in text:
        payload = json_safe(payload)
    return payload
