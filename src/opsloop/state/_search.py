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

The text is searched in every form it may have been stored in (``search_forms``): as typed, and as JSON
writes it (opsloop's own JSON escapes non-ASCII characters, ``é`` as ``\\u00e9``), each non-ASCII letter in
its lower and upper case (the stores' ``LOWER`` folds ASCII only on SQLite).

The indexer runs in a thread of the process that owns the store, after each append (or every half second),
``INDEX_BATCH`` events per transaction, so the inbox's appends never tokenize anything.
"""

from __future__ import annotations

import itertools
import json
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


MAX_CASE_FORMS = 8
"""How many lower/upper-case spellings of a text's non-ASCII letters a search tries (every mix of up to three
such letters); a text with more tries them all lower-case and all upper-case."""

_ASCII_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}


def ascii_lower(text: str) -> str:
    """``text`` with only A-Z lowered: what SQLite's ``LOWER`` does (Python's ``lower`` folds every letter)."""
    return text.translate(_ASCII_LOWER)


def _case_forms(text: str) -> list[str]:
    """``text`` with its non-ASCII letters in each mix of their lower and upper case (``é`` and ``É``)."""
    letters = sorted({c.lower() for c in text if ord(c) > 127 and len(c.lower()) == 1 and len(c.upper()) == 1
                      and c.lower() != c.upper()})
    if not letters:
        return [text]
    choices = [(low, low.upper()) for low in letters]
    mixes: list[tuple[str, ...]]
    if 2 ** len(letters) > MAX_CASE_FORMS:
        mixes = [tuple(low for low, _ in choices), tuple(up for _, up in choices)]
    else:
        mixes = list(itertools.product(*choices))
    forms = []
    for mix in mixes:
        spelled = dict(zip(letters, mix, strict=True))
        forms.append("".join(spelled.get(c.lower(), c) if ord(c) > 127 else c for c in text))
    return forms


def search_forms(text: str) -> list[str]:
    """Every spelling under which ``text`` may be stored, the text itself first, without repeats: its
    non-ASCII letters in lower and upper case, each as typed and as JSON writes it inside a string (with
    ``ensure_ascii``, as ``json.dumps`` does by default: ``é`` is ``\\u00e9``; and without: ``"`` is ``\\"``).

    >>> search_forms("Zoë")
    ['Zoë', 'ZoË', 'Zo\\\\u00eb', 'Zo\\\\u00cb']
    """
    found: dict[str, None] = {}
    for form in [text, *_case_forms(text)]:
        found[form] = None
    for form in list(found):
        found[json.dumps(form, ensure_ascii=False)[1:-1]] = None
        found[json.dumps(form)[1:-1]] = None
    return list(found)


def fts_phrase(text: str) -> str:
    """``text`` as one FTS5 string (a phrase: with the trigram tokenizer, the substring), whatever it holds:
    ``"`` is doubled, and ``*``, ``NEAR(``, ``AND``, ``:`` and the like are plain characters inside quotes."""
    return '"' + text.replace('"', '""') + '"'


def fts_query(forms: list[str]) -> str:
    """An FTS5 query finding any of ``forms`` (``search_forms``), each as a phrase."""
    return " OR ".join(fts_phrase(form) for form in forms)


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
