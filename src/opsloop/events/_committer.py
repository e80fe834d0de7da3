"""Group commit: many concurrent requests share one durable transaction.

Requests put their event on a bounded queue and await a future; one writer thread drains the queue,
appends the whole batch in one transaction (one fsync), then resolves every future at once. A full queue
is back-pressure: the caller answers 503 with Retry-After instead of dropping anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable

from ..errors import ServerBusy
from ..state import AppendResult, NewEvent, StateStore

_STOP = object()
_Item = tuple[NewEvent, "asyncio.Future[AppendResult]", asyncio.AbstractEventLoop]


class GroupCommitter:
    def __init__(
        self,
        store: StateStore,
        max_pending: int = 20000,
        max_batch: int = 1000,
        on_commit: Callable[[list[AppendResult]], None] | None = None,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.on_commit = on_commit
        self._queue: queue.Queue[_Item | object] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.committed = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="opsloop-group-commit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Commit everything queued, then stop the writer thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    async def submit(self, event: NewEvent) -> AppendResult:
        """Append ``event`` durably; returns once its transaction has committed."""
        if self._thread is None:
            raise ServerBusy("the server is shutting down", retry_after=2.0)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendResult] = loop.create_future()
        try:
            self._queue.put_nowait((event, future, loop))
        except queue.Full:
            raise ServerBusy("the event log is saturated; retry shortly", retry_after=1.0) from None
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            items: list[_Item] = []
            if first is _STOP:
                stopping = True
            else:
                items.append(first)  # type: ignore[arg-type]
            while len(items) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    continue
                items.append(item)  # type: ignore[arg-type]
            if items:
                self._commit(items)

    def _commit(self, items: list[_Item]) -> None:
        events = [item[0] for item in items]
        try:
            results = self.store.append_events(events)
        except Exception as exc:  # resolve every waiter with the failure; nothing was acknowledged
            error = exc
            for _, future, loop in items:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_fail, future, error)
            return
        self.batches += 1
        self.committed += len(results)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[AppendResult], AppendResult]]] = {}
        for (_, future, loop), result in zip(items, results, strict=True):
            by_loop.setdefault(loop, []).append((future, result))
        for loop, pairs in by_loop.items():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, pairs)
        if self.on_commit is not None:
            self.on_commit(results)


def _resolve(pairs: list[tuple[asyncio.Future[AppendResult], AppendResult]]) -> None:
    for future, result in pairs:
        if not future.done():
            future.set_result(result)


def _fail(future: asyncio.Future[AppendResult], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
