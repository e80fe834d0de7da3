"""Where the event path's CPU goes: each stage's CPU time and how many events it handled.

The server's stages (the append channel, the group commit, each consumer's reads and handling) add
to one ``StageClock``; ``GET /api/status`` shows it as ``ingest_cpu`` and ``bench/ingest.py`` prints it
per event, so the next stage to cut is visible. CPU is the thread's own (``time.thread_time``): a
stage's figure does not include time it spent waiting for the interpreter lock or for another thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TypedDict, TypeVar

T = TypeVar("T")


class StageFigures(TypedDict):
    """One stage's totals since the server started."""

    cpu_seconds: float
    events: int
    calls: int


class StageClock:
    """Totals per stage; safe to add to from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, StageFigures] = {}

    def add(self, stage: str, cpu_seconds: float, events: int) -> None:
        with self._lock:
            found = self._totals.get(stage)
            if found is None:
                self._totals[stage] = {"cpu_seconds": cpu_seconds, "events": events, "calls": 1}
            else:
                found["cpu_seconds"] += cpu_seconds
                found["events"] += events
                found["calls"] += 1

    def snapshot(self) -> dict[str, StageFigures]:
        with self._lock:
            return {stage: StageFigures(**figures) for stage, figures in self._totals.items()}

    def timed(self, stage: str, events: int, fn: Callable[[], T]) -> T:
        """``fn()``, its CPU added to ``stage`` (for code running in its own thread)."""
        start = time.thread_time()
        try:
            return fn()
        finally:
            self.add(stage, time.thread_time() - start, events)

    async def in_thread(self, stage: str, events: int, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread (``asyncio.to_thread``), its CPU there added to ``stage``."""
        return await asyncio.to_thread(self.timed, stage, events, fn)

    async def on_loop(self, stage: str, events: int, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` adding to ``stage`` the CPU of its own steps on the event loop (not that of
        the other tasks the loop runs while it waits)."""
        return await _Stepped(awaitable, self, stage, events)


class _Stepped(Awaitable[T]):
    """Drives an awaitable step by step, timing each step on the thread that runs it."""

    def __init__(self, awaitable: Awaitable[T], clock: StageClock, stage: str, events: int) -> None:
        self.awaitable, self.clock, self.stage, self.events = awaitable, clock, stage, events

    def __await__(self) -> Generator[object, None, T]:
        coro = self.awaitable.__await__()
        spent = 0.0
        sent: object = None
        thrown: BaseException | None = None
        try:
            while True:
                start = time.thread_time()
                try:
                    yielded = coro.send(sent) if thrown is None else coro.throw(thrown)
                except StopIteration as done:
                    result: T = done.value
                    return result
                finally:
                    spent += time.thread_time() - start
                try:
                    sent, thrown = (yield yielded), None
                except BaseException as exc:
                    sent, thrown = None, exc
        finally:
            self.clock.add(self.stage, spent, self.events)
