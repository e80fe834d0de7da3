"""Stopping long warehouse work at a safe point: ``App.halt``.

The long jobs (an identity build, a pull, a model build, a sync) run in worker threads, which asyncio
cannot cancel. At a stop the server trips the app's ``Halt``: each job checks it between its steps
(``halt.check()``), and a DuckDB statement still running is aborted with the connection's ``interrupt()``
(the job registers its connection with ``halt.watching(con)``). The job raises ``Interrupted``; its
transaction rolls back, so nothing half-done stays, and the job records that it is owed
(``halt.owe(job)``) so that the next start redoes it (``halt.owed()``, then ``halt.settle(job)``). Pulls
and syncs are owed from their start, so one cut off without reaching a safe point (a crash, a request
that hangs past the hard stop) runs again too. The owed jobs live in ``state/owed.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from ._json import JsonValue
from .errors import TransientError

log = logging.getLogger("opsloop")


class Interrupted(TransientError):
    """The server is stopping: the work was rolled back and is redone at the next start."""


class Interruptible(Protocol):
    """A connection whose running statement can be aborted from another thread (DuckDB's)."""

    def interrupt(self) -> None: ...


class Halt:
    """A stop flag shared by an App's long jobs, with the DuckDB connections to interrupt when it trips."""

    def __init__(self, owed_file: Path | None = None) -> None:
        self._event = threading.Event()
        self._lock = threading.RLock()  # trip() may run in a signal handler on a thread holding it
        self._watched: set[Interruptible] = set()
        self._owed_file = owed_file
        self._busy = 0
        self._idle = threading.Condition(self._lock)

    @property
    def tripped(self) -> bool:
        return self._event.is_set()

    def check(self, what: str = "the job") -> None:
        """Raise ``Interrupted`` when a stop has begun (call between steps)."""
        if self._event.is_set():
            raise Interrupted(f"{what} was interrupted because opsloop is stopping; it runs again at the next start")

    def trip(self) -> None:
        """Begin the stop: later ``check()`` calls raise, and every watched connection is interrupted."""
        self._event.set()
        with self._lock:
            watched = list(self._watched)
        for con in watched:
            with contextlib.suppress(Exception):
                con.interrupt()

    def sleep(self, seconds: float, what: str = "the job") -> None:
        """Sleep up to ``seconds`` (a retry's back-off); raise ``Interrupted`` as soon as a stop begins."""
        if self._event.wait(max(0.0, seconds)):
            self.check(what)

    def reset(self) -> None:
        """Clear the flag (an App that starts again after a stop)."""
        self._event.clear()

    @contextlib.contextmanager
    def watching(self, con: Interruptible | None) -> Iterator[None]:
        """While inside, a ``trip()`` interrupts the statement running on the DuckDB connection ``con``
        (None: a session without one, nothing to interrupt)."""
        if con is None:
            yield
            return
        with self._lock:
            self._watched.add(con)
        try:
            yield
        finally:
            with self._lock:
                self._watched.discard(con)

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark a long job running in a worker thread: the app's stop waits for it (``wait_idle``) before it
        closes the stores the job writes its outcome to."""
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every ``busy()`` job to end; False when some still run."""
        with self._lock:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    # -- work owed to the next start -------------------------------------------------------------
    def owe(self, job: str, detail: JsonValue = True, *, announce: bool = True) -> None:
        """Remember (in the project's state folder) that ``job`` was interrupted and must run at the next start.
        A job owed from its start (a pull, a sync: owed until it settles, so a crash anywhere redoes it) passes
        ``announce=False`` and calls ``interrupted(job)`` only when a stop really cuts it off."""
        if self._owed_file is None:
            return
        with self._lock:
            owed = self._read()
            owed[job] = detail
            self._write(owed)
        if announce:
            self.interrupted(job)

    @staticmethod
    def interrupted(job: str) -> None:
        """Say that a stop cut ``job`` off (it is owed, so the next start runs it again)."""
        log.info("%s was interrupted by the stop; it runs again at the next start", job)

    def owed(self) -> dict[str, JsonValue]:
        """The jobs owed from an interrupted run (each stays owed until ``settle(job)``)."""
        if self._owed_file is None:
            return {}
        with self._lock:
            return self._read()

    def settle(self, job: str) -> None:
        """``job`` ran to the end: it is no longer owed."""
        if self._owed_file is None:
            return
        with self._lock:
            owed = self._read()
            if job in owed:
                del owed[job]
                self._write(owed)

    def _read(self) -> dict[str, JsonValue]:
        assert self._owed_file is not None
        try:
            data: JsonValue = json.loads(self._owed_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, owed: dict[str, JsonValue]) -> None:
        assert self._owed_file is not None
        if not owed:
            self._owed_file.unlink(missing_ok=True)
            return
        self._owed_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._owed_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(owed))
        tmp.replace(self._owed_file)
