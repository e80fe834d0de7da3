"""The connector contract: ``streams()`` and ``read(stream, cursor)`` yielding pages, plus ``close()``.

A page carries the cursor that becomes valid once that page and every page before it are loaded; the
runner commits it only after the warehouse load of the whole run has committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, TypeVar

from .._http import Budget

if TYPE_CHECKING:
    import pyarrow as pa

Record: TypeAlias = dict[str, object]
"""One record as a connector read it (parsed JSON, or a database row by column)."""

_T = TypeVar("_T")


@dataclass
class Stream:
    name: str
    """The warehouse table (and progress-bar label)."""
    primary_key: list[str] | None = None
    write_disposition: str = "merge"
    noun: str | None = None
    """Singular record noun for change events (``contact`` -> ``hubspot.contact.updated``)."""
    id_field: str | None = None
    """The record's id in change events (default: the first primary key)."""
    options: dict[str, object] = field(default_factory=dict)


@dataclass
class Page:
    records: list[Record] | pa.Table
    """A list of JSON records, or an Arrow table."""
    cursor: object = None
    """The stream's cursor once this page is loaded; None keeps the previous one."""
    deleted: list[str] = field(default_factory=list)
    """Ids of records the vendor reports deleted (they also appear in ``records`` with its flag)."""


@dataclass
class PullContext:
    source: str
    project_root: Path
    env: dict[str, str]
    budget: Budget
    full_refresh: bool
    lag: float
    retry_attempts: int = 6
    max_retry_delay: float = 300.0
    retry_backoff: float = 1.0
    warnings: list[str] = field(default_factory=list)
    """What the run could not do but did not fail for (an optional stream the token may not read)."""

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def secret(self, name: str | None) -> str | None:
        return self.env.get(name) if name else None


class Connector(Protocol):
    def streams(self) -> list[Stream]: ...

    def read(self, stream: Stream, cursor: object) -> Iterator[Page]: ...

    def close(self) -> None: ...


def prefetch(pages: Iterator[_T], depth: int = 3) -> Iterator[_T]:
    """Run ``pages`` in a worker thread, ``depth`` items ahead: the next request is in flight while the
    caller converts and writes the current page. Errors are re-raised in the caller, in order."""
    import queue
    import threading

    box: queue.Queue[tuple[Literal["item"], _T] | tuple[Literal["error"], BaseException] | tuple[Literal["end"], None]]
    box = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in pages:
                while not stop.is_set():
                    try:
                        box.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(("end", None))
        except BaseException as exc:
            box.put(("error", exc))

    thread = threading.Thread(target=work, name="opsloop-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            got = box.get()
            if got[0] == "item":
                yield got[1]
            elif got[0] == "error":
                raise got[1]
            else:
                return
    finally:
        stop.set()
        thread.join(timeout=5)
