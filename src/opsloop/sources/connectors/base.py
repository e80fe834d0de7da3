"""The connector contract: ``streams()`` and ``read(stream, cursor)`` yielding pages, plus ``close()``.

A page carries the cursor that becomes valid once that page and every page before it are loaded; the
runner commits it only after the warehouse load of the whole run has committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .._http import Budget


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
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Page:
    records: list[dict[str, Any]] | Any
    """A list of JSON records, or an Arrow table."""
    cursor: Any = None
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

    def secret(self, name: str | None) -> str | None:
        return self.env.get(name) if name else None


class Connector(Protocol):
    def streams(self) -> list[Stream]: ...

    def read(self, stream: Stream, cursor: Any) -> Iterator[Page]: ...

    def close(self) -> None: ...
