"""Subscribing to the event log: a consumer reads accepted events in order and keeps a durable cursor.

Workflows, the warehouse loader and dashboards are all consumers. A consumer is woken by the in-process
bus when an append commits, and polls as a fallback (another process may have appended).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import ParamSpec, TypeVar

from ..errors import TransientError
from ..state import EventRecord, StateStore
from .clock import StageClock

log = logging.getLogger("opsloop.events")

Handler = Callable[[list[EventRecord]], Awaitable[None]]
P = ParamSpec("P")
T = TypeVar("T")


class EventBus:
    """Wakes consumers in one event loop when the log grows; safe to poke from any thread.

    ``clock`` adds up the CPU of each stage of the event path in this App (``events.clock``)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: set[asyncio.Event] = set()
        self.clock = StageClock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    def waiter(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def drop(self, event: asyncio.Event) -> None:
        self._waiters.discard(event)


class Consumer:
    """Feeds ``handler`` every accepted event after the cursor, in log order, at least once.

    Records come without raw body and headers unless ``with_body=True``. Its store calls run on
    ``executor`` when one is given (a subsystem's own threads), else on the loop's default pool.
    """

    def __init__(
        self,
        name: str,
        store: StateStore,
        bus: EventBus,
        handler: Handler,
        batch: int = 500,
        poll: float = 1.0,
        load_cursor: Callable[[], int] | None = None,
        save_cursor: bool = True,
        min_interval: float = 0.0,
        with_body: bool = False,
        parse: Callable[[], bool] | bool = True,
        drain: float = 0.0,
        executor: Executor | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.bus = bus
        self.handler = handler
        self.batch = batch
        self.poll = poll
        self.load_cursor = load_cursor
        self.save_cursor = save_cursor
        self.min_interval = min_interval
        """After a partial batch, wait this long so that the next batch is larger (cheaper per event)."""
        self.with_body = with_body
        self.parse = parse
        self.drain = drain
        """At stop, keep handling what is already in the log for up to this many seconds."""
        self.executor = executor
        self.position = 0
        self._stop = asyncio.Event()

    async def _blocking(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if self.executor is None:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        self.position = self.load_cursor() if self.load_cursor else self.store.get_cursor(self.name)
        wake = self.bus.waiter()
        try:
            while not self._stop.is_set():
                wake.clear()
                processed = await self.step()
                if 0 < processed < self.batch and self.min_interval > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=self.min_interval)
                elif processed == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(_first(wake, self._stop), timeout=self.poll)
            deadline = time.monotonic() + self.drain
            while time.monotonic() < deadline and await self.step() > 0:
                pass
        finally:
            self.bus.drop(wake)

    async def step(self) -> int:
        """Handle one batch; returns how many events it saw."""
        parse = self.parse() if callable(self.parse) else self.parse
        position, clock = self.position, self.bus.clock

        def read() -> list[EventRecord]:
            start = time.thread_time()
            found = self.store.read_events(position, self.batch, self.with_body, parse)
            clock.add(f"{self.name}: read", time.thread_time() - start, len(found))
            return found

        events = await self._blocking(read)
        if not events:
            return 0
        try:
            await clock.on_loop(f"{self.name}: handle", len(events), self.handler(events))
        except Exception as exc:
            if await self._contain(events, exc) < len(events):
                return 0
        self.position = events[-1].seq
        if self.save_cursor:
            await self._blocking(self.store.set_cursor, self.name, self.position)
        return len(events)


    async def _contain(self, events: list[EventRecord], exc: Exception) -> int:
        """``events`` failed with ``exc``. A systemic error (the warehouse or the store is down) is retried
        later. Otherwise one of the events is bad: find it by halving the batch (a few calls instead of one
        per event), mark each event that fails on its own ``failed`` with the error, and go on, so that one
        poison event stops nothing. Events are handled in log order. Returns how many were dealt with."""
        if systemic(exc):
            log.exception("consumer %s failed on events %s..%s; retrying", self.name, events[0].id, events[-1].id)
            await asyncio.sleep(1.0)
            return 0
        if len(events) == 1:
            await self._fail(events[0], exc)
            return 1
        mid = len(events) // 2
        stack = [events[mid:], events[:mid]]
        done = 0
        while stack:
            chunk = stack.pop()
            try:
                await self.handler(chunk)
            except Exception as err:
                if systemic(err):
                    log.exception("consumer %s failed on event %s; retrying", self.name, chunk[0].id)
                    if done:
                        await self._advance(events[done - 1].seq)
                    await asyncio.sleep(1.0)
                    return done
                if len(chunk) > 1:
                    half = len(chunk) // 2
                    stack += [chunk[half:], chunk[:half]]
                    continue
                await self._fail(chunk[0], err)
            done += len(chunk)
        return done

    async def _fail(self, event: EventRecord, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("consumer %s failed on event %s (marked failed; replay it once fixed): %s",
                    self.name, event.id, reason)
        await self._blocking(self.store.fail_event, event.id, self.name, reason)

    async def _advance(self, seq: int) -> None:
        self.position = seq
        if self.save_cursor:
            await self._blocking(self.store.set_cursor, self.name, self.position)


_SYSTEMIC_NAMES = {"IOException", "ConnectionException", "OperationalError", "InterfaceError"}


def systemic(exc: BaseException) -> bool:
    """Whether ``exc`` says something is down rather than that one event is bad: such a failure is
    retried, never pinned on the event."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TransientError | OSError | TimeoutError | MemoryError):
            return True
        if any(cls.__name__ in _SYSTEMIC_NAMES for cls in type(seen).__mro__):
            return True
        seen = seen.__cause__
    return False


async def _first(*events: asyncio.Event) -> None:
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
