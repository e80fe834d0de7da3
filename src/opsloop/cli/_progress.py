"""The long verbs' progress: Rich rows on a terminal, a line per step otherwise, nothing with ``--json``.

Every verb that runs long (pull, build, identity build, deps, sync, demo) opens one ``Progress`` and feeds
it from the subsystem's own callback:

- ``add(key, label, total)`` and ``update(key, ...)`` drive the live display: a row per key with a
  spinner, the label, a bar and ``done/total`` when the total is known, a detail text and the time;
- ``step(text)`` is a line on stderr when stderr is not a terminal (CI, pipes, ``2> log``); on a terminal
  the live rows carry the same news, so it writes nothing there.

Everything goes to stderr, so stdout holds only the verb's own output (its table, its JSON). The live
display is transient: it is cleared when the verb's work ends. Rich is imported only for the live mode.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

Mode = Literal["live", "lines", "off"]

STEP_INTERVAL = 1.0
"""Seconds between two throttled lines of one key (pages of a stream, batches of a sync) in lines mode."""


def progress_mode(quiet: bool = False) -> Mode:
    """``off`` for ``--json`` (and other quiet output), ``live`` when stderr is a terminal, else ``lines``."""
    if quiet:
        return "off"
    if sys.stderr.isatty() and os.environ.get("TERM") != "dumb":
        return "live"
    return "lines"


def count(n: float) -> str:
    """A count as the progress shows it: ``12,345``."""
    return f"{n:,.0f}"


def seconds(s: float) -> str:
    """A duration as the progress shows it: ``0.42s``, ``12s``, ``3m05s``."""
    if s < 10:
        return f"{s:.2f}s"
    if s < 60:
        return f"{s:.0f}s"
    return f"{int(s // 60)}m{int(s % 60):02d}s"


class Progress:
    """The progress of one verb's work; a context manager (``with Progress(json_out) as progress:``)."""

    def __init__(self, quiet: bool = False, mode: Mode | None = None) -> None:
        self.mode: Mode = mode or progress_mode(quiet)
        self._bar: RichProgress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._counts: dict[str, tuple[int, int | None]] = {}
        self._last_line: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def live(self) -> bool:
        """True while a live display is on the terminal."""
        return self._bar is not None

    def __enter__(self) -> Progress:
        if self.mode == "live":
            self._start_live()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Clear the live display (idempotent); later updates are ignored, steps still print in lines mode."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.stop()

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            SpinnerColumn(finished_text="✓"), TextColumn("{task.description}"), BarColumn(bar_width=24),
            TextColumn("{task.fields[count]}"), TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
            console=Console(stderr=True, highlight=False), transient=True,
        )
        self._bar.start()

    # -- the live rows ------------------------------------------------------------------------------
    def add(self, key: str, label: str, total: int | None = None, detail: str = "") -> None:
        """A row for ``key`` (once; later calls change nothing)."""
        with self._lock:
            if self._bar is None or key in self._tasks:
                return
            self._tasks[key] = self._bar.add_task(label, total=total, count=_count(0, total), detail=detail)
            self._counts[key] = (0, total)

    def update(self, key: str, *, completed: int | None = None, total: int | None = None, label: str | None = None,
               detail: str | None = None, finished: bool = False) -> None:
        """Change ``key``'s row (added with ``label`` or the key when it has none yet); ``finished`` fills
        its bar and turns its spinner into a tick."""
        if self._bar is None:
            return
        self.add(key, label or key, total)
        with self._lock:
            if self._bar is None:
                return
            done, whole = self._counts[key]
            done = done if completed is None else completed
            whole = whole if total is None else total
            if finished and whole is not None:
                done = whole
            self._counts[key] = (done, whole)
            shown = _count(done, whole)
            # a row without a total ("until done") gets one when it finishes, so its spinner turns to a tick
            bar_done, bar_total = (max(done, 1), max(done, 1)) if finished and whole is None else (done, whole)
            task_id = self._tasks[key]
            if detail is None:
                self._bar.update(task_id, completed=bar_done, total=bar_total, description=label, count=shown)
            else:
                self._bar.update(task_id, completed=bar_done, total=bar_total, description=label, count=shown,
                                 detail=detail)

    # -- lines ---------------------------------------------------------------------------------------
    def step(self, text: str, throttle: str | None = None) -> None:
        """One line on stderr in lines mode. With ``throttle`` (a key), at most one line per
        ``STEP_INTERVAL`` seconds for that key: the first always prints; pass ``None`` for the last."""
        if self.mode != "lines":
            return
        with self._lock:
            now = time.monotonic()
            if throttle is not None:
                last = self._last_line.get(throttle)
                if last is not None and now - last < STEP_INTERVAL:
                    return
                self._last_line[throttle] = now
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


def _count(done: float, total: float | None) -> str:
    return f"{count(done)}/{count(total)}" if total is not None else ""
