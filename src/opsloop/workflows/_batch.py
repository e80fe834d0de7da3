"""Group commit for workflow state: many runs' step writes share one transaction.

Each write is a function of a cursor; ``await batch.submit(fn)`` returns once the transaction holding it
has committed. If a batch fails, its writes are retried one transaction each so that one bad write cannot
fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..state import StateStore

log = logging.getLogger("opsloop.workflows")

Write = Callable[[Any], Any]
_FATAL = (KeyboardInterrupt, SystemExit)


class WriteBatcher:
    def __init__(self, store: StateStore, max_batch: int = 512) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: list[tuple[Write, asyncio.Future[Any]]] = []
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
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(RuntimeError("the workflow engine stopped"))
        self._queue.clear()

    async def submit(self, write: Write) -> Any:
        if self._task is None:
            return await asyncio.to_thread(self._run_one, write)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((write, fut))
        self._wake.set()
        return await fut

    def _run_one(self, write: Write) -> Any:
        with self.store.transaction() as cur:
            return write(cur)

    def _run_many(self, writes: list[Write]) -> list[tuple[bool, Any]]:
        """Every write's outcome. A write may raise a BaseException that is not an error of the process
        (the engine's LeaseLost): it belongs to that write's run alone and must not end this batcher, or
        every later write would wait for ever while the heartbeat kept the runs leased."""
        if len(writes) > 1:
            try:
                with self.store.transaction() as cur:
                    return [(True, w(cur)) for w in writes]
            except _FATAL:
                raise
            except BaseException as exc:
                # one of them failed: run each alone so that one bad write cannot fail the others
                log.debug("a batch of %d writes failed (%r); retrying them one by one", len(writes), exc)
        out: list[tuple[bool, Any]] = []
        for w in writes:
            try:
                out.append((True, self._run_one(w)))
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
                    results = await asyncio.to_thread(self._run_many, [w for w, _ in taken])
                except Exception as exc:
                    results = [(False, exc)] * len(taken)
                for (_, fut), (ok, value) in zip(taken, results, strict=True):
                    if fut.done():
                        continue
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
