"""The workflow engine's own threads for its blocking store calls.

``asyncio.to_thread`` runs on the event loop's default thread pool, which every subsystem shares: a model
build, a DuckDB query or a slow alert there can take all its threads, and a run's step commit would wait
behind them. The engine's store calls (claims, group commits, the trigger's transactions, schedule ticks)
run on this small pool instead, so they wait only for each other.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

STORE_THREADS = 4
"""Threads for the engine's store calls: the group committer, the claim loop, the trigger and the
scheduler each have one to use while another is busy."""


class StoreThreads:
    """A named pool of ``STORE_THREADS`` threads, made on first use, ended by ``close`` (made again if used
    after)."""

    def __init__(self, workers: int = STORE_THREADS, name: str = "opsloop-workflows-store") -> None:
        self.workers = workers
        self.name = name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self.name)
            return self._pool

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on one of these threads (with the caller's context variables, as
        ``asyncio.to_thread`` would)."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.pool, call)

    def close(self) -> None:
        """Let the threads end once their calls return (a call in flight is not interrupted)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
