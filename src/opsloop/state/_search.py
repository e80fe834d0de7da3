"""Text search over the event log: the background indexer and the pieces both stores' searches share.

A search (``StateStore.list_events(search=...)``) finds events whose payload (or the raw body it is stored
as), error or id contains the text, case-insensitive: exactly what ``LOWER(column) LIKE '%text%'`` finds.
The trigram indexes (FTS5 on SQLite, pg_trgm on Postgres) only narrow the rows that predicate is checked
on, so an index never changes what a search finds, only how fast:

- the newest ``SCAN_FIRST`` events, and every event past the ``search-index`` cursor (appended since the
  indexer last ran), are scanned, so a search is complete however far the indexer is behind, and a common
  text fills the page from the newest events;
- when that scan did not fill the page, the older events are found through the index, newest first;
- a text shorter than 3 characters has no trigram, and is searched by a scan of the whole log.

The indexer runs in a thread of the process that owns the store, after each append (or every half second),
``INDEX_BATCH`` events per transaction, so the inbox's appends never tokenize anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..errors import StateStoreError

log = logging.getLogger("opsloop.state")

SEARCH_CURSOR = "search-index"
"""The consumer cursor (``cursors`` table) of the search index: every event up to it is indexed."""

SCAN_FIRST = 2000
"""The newest events a search scans before it reads the index: a text that many events hold fills the page
from them (an index lookup of a common text reads every event holding it), and a rare one costs a few ms
more."""

MIN_INDEXED = 3
"""The shortest text a trigram index can find; shorter ones are searched by a scan."""

INDEX_BATCH = 500
"""Events ``index_search`` indexes per transaction unless told otherwise (the bench, a backfill by hand)."""

BATCH_SECONDS = 0.004
"""How long the background indexer's transactions aim to take: it sizes each batch from the last one (1 KB
payloads index at about 20-50 µs an event on SQLite, so some 100 events), so an append waiting for the
single writer waits no longer than that; after each batch it waits as long as the batch took, leaving the
writer to the appends at least half the time."""

_BATCH_RANGE = (10, 2000)

_IDLE = 0.5
"""Seconds the indexer waits for an append before it looks again (appends in other processes or inside
a caller's transaction do not wake it)."""


def fts_phrase(text: str) -> str:
    """``text`` as one FTS5 string (a phrase: with the trigram tokenizer, the substring), whatever it holds:
    ``"`` is doubled, and ``*``, ``NEAR(``, ``AND``, ``:`` and the like are plain characters inside quotes."""
    return '"' + text.replace('"', '""') + '"'


class SearchIndexer:
    """A daemon thread calling ``step(limit)`` (index up to ``limit`` events in one transaction, return how
    many it indexed) until the log is indexed, then waiting for ``kick`` (an append) or ``_IDLE`` seconds."""

    def __init__(self, step: Callable[[int], int], name: str = "opsloop-search-index") -> None:
        self._step = step
        self._batch = 100
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in progress (its transaction commits or rolls back whole)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(_IDLE)
            self._wake.clear()
            try:
                while not self._stopping.is_set() and self._index_one() > 0:
                    pass
            except StateStoreError:
                return  # the store was closed under it
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("indexing events for search failed; searches scan the events not indexed")
                self._stopping.wait(5.0)

    def _index_one(self) -> int:
        started = time.perf_counter()
        done = self._step(self._batch)
        took = time.perf_counter() - started
        if done >= self._batch:  # a full batch: size the next one to take BATCH_SECONDS
            low, high = _BATCH_RANGE
            self._batch = max(low, min(high, int(self._batch * BATCH_SECONDS / max(took, 1e-4))))
        if done:
            self._stopping.wait(took)  # the writer is the appends' at least half the time
        return done
