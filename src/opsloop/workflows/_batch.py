"""Group commit for workflow state: many runs' step writes share one transaction.

Each write is a function of a cursor; ``await batch.submit(fn)`` returns once the transaction holding it
has committed. A write may name the run whose lease it needs (``fence``) and the events it appends
(``events``): a batch checks every lease in one statement at its start and appends every event in one go
at its end, so that the log's append lock (Postgres) is held for a moment, not for the whole batch, and
a batch costs a few round trips to the store rather than a few per run (the writes are pipelined on
Postgres: a write in a batch should not read what it writes). Writes run in run-id order, so
two processes' transactions take the runs' row locks in the same order (no deadlock). If a batch fails,
its writes are retried one transaction each so that one bad write cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..state import NewEvent, StateStore
from ._runstore import Cursor, LeaseLost
from ._threads import StoreThreads

log = logging.getLogger("opsloop.workflows")

Write = Callable[[Cursor], object]
Fence = Callable[[Cursor, list[str]], set[str]]
"""``fence(cur, run_ids)``: the runs among ``run_ids`` whose lease this worker still holds (locked)."""
_FATAL = (KeyboardInterrupt, SystemExit)


@dataclass
class _Pending:
    write: Write
    fence: str | None
    events: Sequence[NewEvent]
    future: asyncio.Future[object]


class WriteBatcher:
    def __init__(self, store: StateStore, max_batch: int = 512, fence: Fence | None = None,
                 lane: str | None = None, threads: StoreThreads | None = None) -> None:
        self.store = store
        self.threads = threads or StoreThreads(1, "opsloop-workflows-commit")
        """Where the transactions run: the engine's store threads, not the loop's shared default pool."""
        self.lane = lane
        self.max_batch = max_batch
        self.fence = fence
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="workflows:batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(RuntimeError("the workflow engine stopped"))
        self._queue.clear()

    async def submit(self, write: Write, *, fence: str | None = None, events: Sequence[NewEvent] = ()) -> object:
        """Commit ``write`` (after checking the lease on run ``fence``; raises ``LeaseLost`` when it is
        gone) and append ``events`` in the same transaction."""
        if fence is not None and self.fence is None:
            raise ValueError("this batcher was made without a fence")
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        item = _Pending(write, fence, events, fut)
        if self._task is None:
            return await self.threads.run(self._run_one, item)
        self._queue.append(item)
        self._wake.set()
        return await fut

    def _run_one(self, item: _Pending) -> object:
        with self.store.transaction(lane=self.lane) as cur:
            if item.fence is not None and self.fence is not None and not self.fence(cur, [item.fence]):
                raise LeaseLost(item.fence)
            result = item.write(cur)
            if item.events:
                self.store.append_events_in(cur, item.events)
            return result

    def _run_batch(self, items: list[_Pending]) -> list[tuple[bool, object]]:
        out: list[tuple[bool, object]] = [(False, None)] * len(items)
        order = sorted(range(len(items)), key=lambda i: items[i].fence or "")
        with self.store.transaction(lane=self.lane) as cur:
            fenced = sorted({item.fence for item in items if item.fence is not None})
            held = self.fence(cur, fenced) if fenced and self.fence is not None else set()
            events: list[NewEvent] = []
            with self.store.pipeline(cur):
                for i in order:
                    item = items[i]
                    if item.fence is not None and item.fence not in held:
                        out[i] = (False, LeaseLost(item.fence))
                        continue
                    out[i] = (True, item.write(cur))
                    events += item.events
            if events:
                self.store.append_events_in(cur, events)
        return out

    def _run_many(self, items: list[_Pending]) -> list[tuple[bool, object]]:
        """Every write's outcome. A write may raise a BaseException that is not an error of the process
        (the engine's LeaseLost): it belongs to that write's run alone and must not end this batcher, or
        every later write would wait for ever while the heartbeat kept the runs leased."""
        if len(items) > 1:
            try:
                return self._run_batch(items)
            except _FATAL:
                raise
            except BaseException as exc:
                # one of them failed: run each alone so that one bad write cannot fail the others
                log.debug("a batch of %d writes failed (%r); retrying them one by one", len(items), exc)
        out: list[tuple[bool, object]] = []
        for item in items:
            try:
                out.append((True, self._run_one(item)))
            except _FATAL:
                raise
            except BaseException as exc:
                out.append((False, exc))
        return out

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                taken, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                try:
                    results = await self.threads.run(self._run_many, taken)
                except Exception as exc:
                    results = [(False, exc)] * len(taken)
                for item, (ok, value) in zip(taken, results, strict=True):
                    if item.future.done():
                        continue
                    if ok:
                        item.future.set_result(value)
                    else:
                        assert isinstance(value, BaseException)  # a failed write's outcome is its exception
                        item.future.set_exception(value)
