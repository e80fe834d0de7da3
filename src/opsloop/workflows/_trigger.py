"""Trigger handling: the workflows' consumer of the event log.

It starts runs, wakes waiting runs whose match holds, and applies ``cancel_on`` — in the same transaction
as its cursor advance, so an event starts a run exactly once per (workflow, trigger event) even though
delivery is at-least-once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .._json import JsonObject
from ..events.log import Consumer, EventBus
from ..state import EventRecord
from . import _templates
from ._api import CancelOn, WorkflowDef
from ._executor import LEASE_SECONDS, Executor, read_payload
from ._runstore import Cursor, NewRun, RunRow, RunStore
from .context import event_dict

log = logging.getLogger("opsloop.workflows")


@dataclass
class _Batch:
    """One trigger transaction's state."""

    cur: Cursor
    paused: set[str]
    waited: set[str]
    """Event names some run waited for when the batch was read."""
    room: int
    """How many more new runs this worker may lease directly."""
    starts: list[NewRun] = field(default_factory=list)
    fresh: list[RunRow] = field(default_factory=list)
    pokes: set[str] = field(default_factory=set)
    """Runs whose wait an event matched: made due at the end of the transaction."""


class TriggerHandler:
    """Turns events into runs, wake-ups and cancellations."""

    def __init__(self, runs: RunStore, bus: EventBus, definitions: Callable[[], Mapping[str, WorkflowDef]],
                 executor: Executor, time_scale: float) -> None:
        self.runs = runs
        self.bus = bus
        self.definitions = definitions
        self.executor = executor
        self.time_scale = time_scale
        self.since: dict[str, int] = {}
        """Each workflow's start position in the log: earlier events do not trigger it."""
        self.consumer: Consumer | None = None
        self._saved_seq = -1
        self._saved_at = 0.0
        self._waited: set[str] | None = None
        self._running = False

    def prepare(self) -> None:
        store = self.runs.store
        # Payloads are parsed only for the events a workflow cares about (see _on_events).
        self.consumer = Consumer(
            "workflows", store, self.bus, self._on_events, poll=0.5, batch=1000, min_interval=0.002,
            load_cursor=lambda: store.get_cursor("workflows"), save_cursor=False, parse=False,
            executor=self.executor.threads.pool,
        )
        self._saved_seq = -1
        self._saved_at = 0.0
        self._running = False

    async def run(self) -> None:
        """Consume the log from the shared cursor (in one process at a time: the engine runs this under
        the ``workflows`` lead, so several workers do not all handle every event)."""
        if self.consumer is None:
            self.prepare()
        assert self.consumer is not None
        self._running = True
        await self.consumer.run()

    def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.stop()

    def _wanted(self, name: str, waited: set[str]) -> bool:
        """Whether an event of this name can start, wake or cancel a run."""
        if name in waited:
            return True
        for wf in self.definitions().values():
            if wf.on and wf.triggered_by(name):
                return True
            if any(c.event == name for c in wf.cancel_on):
                return True
        return False

    async def _on_events(self, events: list[EventRecord]) -> None:
        # Read outside the write transaction: a wait registered after this read scans the log itself
        # (find_event) from its after_seq, so an event passed over here is still seen by that run.
        waited = await self.executor.threads.run(self.runs.waited_names)
        self._waited = waited
        names: dict[str, bool] = {}
        wanted = [ev for ev in events if names.setdefault(ev.name, self._wanted(ev.name, waited))]
        if not wanted:
            # Nothing to do: advance the cursor without a write per batch (redoing these is harmless).
            await self.executor.threads.run(self.save_position, False, events[-1].seq)
            return
        for ev in wanted:
            if ev.payload is None and ev.payload_text is not None:
                ev.payload = read_payload(ev.payload_text)
        try:
            fresh = await self.executor.threads.run(self.handle, wanted, events[-1].seq)
        finally:
            self._waited = None
        for run in fresh:
            self.executor.spawn(run, {})
        self.executor.kick()

    def save_position(self, force: bool, seq: int | None = None) -> None:
        """Store the cursor after events no workflow wanted: at most once a second, and at stop."""
        if seq is None:
            if not self._running or self.consumer is None:
                return  # a standby never read the log: its position says nothing
            seq = self.consumer.position
        if seq <= self._saved_seq:
            return
        now = time.monotonic()
        if force or now - self._saved_at >= 1.0:
            self.runs.store.set_cursor("workflows", seq)
            self._saved_seq, self._saved_at = seq, now

    def handle(self, events: list[EventRecord], upto: int | None = None) -> list[RunRow]:
        """Start, wake and cancel runs for ``events`` in one transaction with the cursor advance (to ``upto``).

        New runs that need no queueing decision (no concurrency limit, debounce or pause) are leased to
        this worker in the same transaction and start at once, saving a claim round trip.
        """
        store = self.runs.store
        seq = upto if upto is not None else events[-1].seq
        waited = self.runs.waited_names() if self._waited is None else self._waited
        with self.runs.transaction() as cur:
            batch = _Batch(cur, self.runs.paused(cur), waited, self.executor.room())
            for ev in events:
                self._handle_event(batch, ev)
            self._flush(batch)
            # wake-ups last and in run-id order, the order every writer of wf_runs locks rows in
            for run_id in sorted(batch.pokes):
                self.runs.poke(cur, run_id)
            store.set_cursor("workflows", seq, cur)
        self._saved_seq, self._saved_at = max(self._saved_seq, seq), time.monotonic()
        return batch.fresh

    def _flush(self, batch: _Batch) -> None:
        """Insert the runs the batch's events started so far (before anything that reads runs)."""
        if not batch.starts:
            return
        inserted = self.runs.insert_runs(batch.cur, batch.starts)
        batch.starts = []
        batch.fresh += [run for run in inserted.values() if run.lease_owner == self.executor.owner]

    def _handle_event(self, batch: _Batch, ev: EventRecord) -> None:
        cur = batch.cur
        evd = event_dict(ev.seq, ev.id, ev.name, ev.payload, ev.received_at, ev.source, ev.endpoint)
        wrapped = _templates.wrap(evd)
        for wf in self.definitions().values():
            if wf.on and wf.triggered_by(ev.name) and ev.seq > self.since.get(wf.name, 0):
                self._start_from_event(batch, wf, ev, evd, wrapped)
            for cancel in wf.cancel_on:
                if cancel.event == ev.name:
                    self._flush(batch)
                    self._cancel_matching(cur, wf, cancel, ev, wrapped)
        if ev.name not in batch.waited:
            # no wait for this name when the batch began; one registered since scans the log itself
            return
        for run_id, match, trigger in self.runs.waits_for(cur, ev.name, ev.seq):
            if match and not matches(match, wrapped, trigger):
                continue
            batch.pokes.add(run_id)

    def _start_from_event(self, batch: _Batch, wf: WorkflowDef, ev: EventRecord, evd: JsonObject,
                          wrapped: object) -> None:
        """Add the run an event asks for to the batch (a debounced one is made or extended at once).

        Runs that need no queueing decision (no concurrency limit, debounce or pause) are leased to this
        worker in the same transaction and start at once, saving a claim round trip."""
        context = {"event": wrapped, "trigger": wrapped}
        try:
            if wf.when and not _templates.truthy(_templates.evaluate(wf.when, context)):
                return
            key = str(_templates.render(wf.idempotency, context)) if wf.idempotency else ev.id
            priority = (_priority(_templates.render(wf.priority, context)) if isinstance(wf.priority, str)
                        else wf.priority)
            ckey = str(_templates.render(wf.concurrency_key, context)) if wf.concurrency_key else None
            dkey = str(_templates.render(wf.debounce_key, context)) if wf.debounce_key else "-"
        except Exception as exc:
            log.warning("workflow %s: cannot evaluate its trigger options on event %s: %s", wf.name, ev.id, exc)
            return
        cur = batch.cur
        if wf.debounce is not None:
            self._flush(batch)
            due = time.time() + wf.debounce * self.time_scale
            queued = self.runs.queued_debounce(cur, wf.name, dkey)
            if queued is not None:
                run_id, held = queued
                if all(e["id"] != ev.id for e in held):
                    held.append(evd)
                    self.runs.hold_events(cur, run_id, held, due)
                return
            self.runs.insert_run(cur, wf.name, evd, dedupe_key=ev.id, start_seq=ev.seq, priority=priority,
                                 concurrency_key=ckey, debounce_key=dkey, wake_at=due)
            return
        direct = not wf.concurrency and wf.name not in batch.paused and batch.room > 0
        if direct:
            batch.room -= 1
        batch.starts.append(NewRun(
            wf.name, evd, key, ev.seq, priority, ckey,
            lease_owner=self.executor.owner if direct else None, lease=LEASE_SECONDS,
        ))

    def _cancel_matching(self, cur: Cursor, wf: WorkflowDef, cancel: CancelOn, ev: EventRecord,
                         wrapped: object) -> None:
        for run_id, trigger in self.runs.cancellable(cur, wf.name, ev.seq):
            if cancel.match and not matches(cancel.match, wrapped, trigger):
                continue
            self.runs.cancel(cur, run_id, f"cancelled by event {ev.name} {ev.id}")


def _priority(value: object) -> int:
    """A rendered ``priority`` as a number (``int()`` of what the template gave)."""
    if isinstance(value, int | float | str):
        return int(value)
    raise ValueError(f"priority must be a number, not {value!r}")


def matches(match: str, event: object, trigger_json: str | None) -> bool:
    """Whether a wait's or a ``cancel_on``'s match holds for ``event`` (``trigger``: the run's trigger)."""
    trigger = _templates.wrap(json.loads(trigger_json)) if trigger_json else None
    try:
        return _templates.truthy(_templates.evaluate(match, {"event": event, "trigger": trigger}))
    except Exception as exc:
        log.warning("match expression %r failed: %s", match, exc)
        return False
