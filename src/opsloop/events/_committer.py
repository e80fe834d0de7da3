"""Group commit: many concurrent requests share one durable transaction.

Requests put their event on a bounded queue and await a future; one writer thread drains the queue,
appends the whole batch in one transaction (one fsync), then resolves every future at once. A full queue
is back-pressure: the caller answers 503 with Retry-After instead of dropping anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
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
        self.max_pending = max_pending
        # A deque and an Event instead of queue.Queue: appends take no lock, and the writer thread is
        # woken only when it is waiting.
        self._queue: deque[_Item | object] = deque()
        self._wake = threading.Event()
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
            self._queue.append(_STOP)
            self._wake.set()
            self._thread.join()
            self._thread = None

    async def submit(self, event: NewEvent) -> AppendResult:
        """Append ``event`` durably; returns once its transaction has committed."""
        if self._thread is None:
            raise ServerBusy("the server is shutting down", retry_after=2.0)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendResult] = loop.create_future()
        if len(self._queue) >= self.max_pending:
            raise ServerBusy("the event log is saturated; retry shortly", retry_after=1.0)
        self._queue.append((event, future, loop))
        if not self._wake.is_set():
            self._wake.set()
        return await future

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
