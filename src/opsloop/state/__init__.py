"""The operational state store: event log, cursors, runs, timers, snapshots."""

from __future__ import annotations

from pathlib import Path

from ..errors import StateStoreError
from ._search import MIN_INDEXED, SCAN_FIRST, fts_query, search_forms
from .base import (
    ACCEPTED_STATUSES,
    ALL_STATUSES,
    AppendResult,
    EventRecord,
    NewEvent,
    StateStore,
    payload_text_of,
)


def open_store(url: str, root: Path | None = None, fsync: bool = True) -> StateStore:
    """Open (and migrate) the store at ``url``: ``sqlite:///relative/or/absolute.sqlite`` or ``postgresql://``."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStateStore

        raw = url[len("sqlite:///") :]
        path = Path(raw)
        if not path.is_absolute() and not raw.startswith("/"):
            path = (root or Path.cwd()) / path
        store: StateStore = SQLiteStateStore(path, fsync=fsync)
    elif url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStateStore

        store = PostgresStateStore(url)
    else:
        raise StateStoreError(
            f"unknown state store URL {url!r}: use sqlite:///path/to/file.sqlite or postgresql://user@host/db"
        )
    store.migrate()
    return store


__all__ = [
    "ACCEPTED_STATUSES",
    "ALL_STATUSES",
    "MIN_INDEXED",
    "SCAN_FIRST",
    "AppendResult",
    "EventRecord",
    "NewEvent",
    "StateStore",
    "fts_query",
    "open_store",
    "payload_text_of",
    "search_forms",
]
