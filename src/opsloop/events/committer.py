"""Group commit: many concurrent requests share one durable transaction.

Requests put their event on a bounded queue and await a future; one writer thread drains the queue,
appends the whole batch in one transaction (one fsync), then resolves every future at once. A full queue
is back-pressure: the caller answers 503 with Retry-After instead of dropping anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ..errors import ServerBusy
from ..state import AppendResult, NewEvent, StateStore
from .clock import StageClock

_STOP = object()
Outcome = AppendResult | BaseException


class Sink(Protocol):
    """Receives the outcomes of its events after each commit (called on the writer thread), each with the
    key its event was put with (``GroupCommitter.put``): the sink's own, handed back as it came."""

    def deliver(self, outcomes: list[tuple[object, Outcome]]) -> None: ...


class _LoopSink:
    """Resolves futures on their event loop, one thread hop per commit."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def deliver(self, outcomes: list[tuple[object, Outcome]]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(_resolve, outcomes)


_Item = tuple[NewEvent, Sink, object]


class GroupCommitter:
    def __init__(
        self,
        store: StateStore,
        max_pending: int = 20000,
        max_batch: int = 1000,
        on_commit: Callable[[list[AppendResult]], None] | None = None,
        prepare: Callable[[NewEvent], None] | None = None,
        clock: StageClock | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or StageClock()
        """Where each commit's CPU is added (stage ``append``: preparing, writing and answering a batch)."""
        self.prepare = prepare
        self.max_batch = max_batch
        self.on_commit = on_commit
        self.max_pending = max_pending
        # A deque and an Event instead of queue.Queue: appends take no lock, and the writer thread is
        # woken only when it is waiting.
        self._queue: deque[_Item | object] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._sinks: dict[asyncio.AbstractEventLoop, _LoopSink] = {}
        self.batches = 0
        self.committed = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="opsloop-group-commit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Commit everything queued, then stop the writer thread."""
        if self._thread is not None:
            self._queue.append(_STOP)
            self._wake.set()
            self._thread.join()
            self._thread = None

    async def submit(self, event: NewEvent) -> AppendResult:
        """Append ``event`` durably; returns once its transaction has committed."""
        loop = asyncio.get_running_loop()
        sink = self._sinks.get(loop)
        if sink is None:
            sink = self._sinks[loop] = _LoopSink(loop)
        future: asyncio.Future[AppendResult] = loop.create_future()
        self.put(event, sink, future)
        return await future

    def put(self, event: NewEvent, sink: Sink, key: object) -> None:
        """Queue ``event``; after its commit ``sink.deliver`` gets ``(key, result or error)``. From any thread."""
        if self._thread is None:
            raise ServerBusy("the server is shutting down", retry_after=2.0)
        if len(self._queue) >= self.max_pending:
            raise ServerBusy("the event log is saturated; retry shortly", retry_after=1.0)
        self._queue.append((event, sink, key))
        if not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        stopping = False
        pending = self._queue
        while not stopping:
            if not pending:
                self._wake.wait()
            self._wake.clear()  # before draining: an append after this sets it again
            items: list[_Item] = []
            while pending and len(items) < self.max_batch:
                item = pending.popleft()
                if item is _STOP:
                    stopping = True
                    continue
                items.append(item)  # type: ignore[arg-type]
            if items:
                start = time.thread_time()
                self._commit(items)
                self.clock.add("append", time.thread_time() - start, len(items))

    def _commit(self, items: list[_Item]) -> None:
        events = [item[0] for item in items]
        if self.prepare is not None:
            for event in events:
                self.prepare(event)
        outcomes: list[Outcome]
        try:
            results = self.store.append_events(events)
            outcomes = list(results)
        except Exception as exc:  # every waiter gets the failure; nothing was acknowledged
            results, outcomes = [], [exc] * len(items)
        by_sink: dict[int, tuple[Sink, list[tuple[object, Outcome]]]] = {}
        for (_, sink, key), outcome in zip(items, outcomes, strict=True):
            by_sink.setdefault(id(sink), (sink, []))[1].append((key, outcome))
        for sink, pairs in by_sink.values():
            sink.deliver(pairs)
        if not results:
            return
        self.batches += 1
        self.committed += len(results)
        if self.on_commit is not None:
            self.on_commit(results)


def _resolve(pairs: list[tuple[object, Outcome]]) -> None:
    for future, outcome in pairs:
        assert isinstance(future, asyncio.Future)  # _LoopSink's keys are the futures ``submit`` awaits
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
