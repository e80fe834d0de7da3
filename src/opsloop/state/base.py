"""The operational state store: the event log, consumer cursors, and (later) runs, timers, snapshots.

One interface, two implementations that share their SQL: SQLite (the embedded default) and Postgres
(several processes). Schema changes are numbered migrations under ``migrations/``, written once for both
stores (``_migrations.py`` says how, and which subsystem owns which numbers).
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol, cast

from .._json import JsonObject, JsonValue
from ..narrow import as_float, as_int, as_str, opt_bytes, opt_float, opt_str
from ._migrations import migrations
from ._search import INDEX_BATCH, MIN_INDEXED, SCAN_FIRST, SEARCH_CURSOR, SearchIndexer


class Cursor(Protocol):
    """A cursor of either store's driver (``sqlite3`` or ``psycopg``), as ``StateStore.transaction`` yields it.

    A row is a tuple of the column values the driver read (``str``, ``int``, ``float``, ``bytes`` or None
    for the store's own tables); both drivers type its items ``Any``, this Protocol ``object``, so a reader narrows
    each with ``opsloop.narrow`` as it uses it.
    """

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[object] = ..., /) -> Cursor: ...

    def fetchone(self) -> tuple[object, ...] | None: ...

    def fetchall(self) -> Sequence[tuple[object, ...]]: ...

    def close(self) -> None: ...


class Connection(Protocol):
    """A connection of either store's driver: what a transaction needs of it."""

    def cursor(self) -> Cursor: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


ACCEPTED_STATUSES = ("received", "dispatched", "failed")
ALL_STATUSES = ("received", "rejected", "duplicate", "quarantined", "dispatched", "failed", "replayed")


@dataclass
class NewEvent:
    """An event about to be appended. ``dedupe_until`` set means: dedupe on (endpoint, idempotency_key)."""

    id: str
    name: str
    received_at: float
    status: str = "received"
    endpoint: str | None = None
    idempotency_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    payload: object = None
    """What ``json.dumps`` writes as the stored payload (unless ``payload_text`` is given)."""
    error: object = None
    source: str = "webhook"
    related_id: str | None = None
    expires_at: float | None = None
    dedupe_until: float | None = None
    payload_text: str | None = None
    """The payload already serialised (the request body when nothing was redacted); saves a re-dump."""

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED_STATUSES


@dataclass
class AppendResult:
    event_id: str
    seq: int
    duplicate_of: str | None = None


@dataclass
class EventRecord:
    """An event as stored in the log."""

    seq: int
    id: str
    endpoint: str | None
    name: str
    received_at: float
    idempotency_key: str | None
    headers: dict[str, str]
    body: bytes | None
    payload: JsonValue
    status: str
    error: JsonValue
    source: str
    related_id: str | None
    expires_at: float | None
    dispatched_at: float | None
    payload_text: str | None = None
    """The payload as stored (JSON text), for consumers that pass it on unparsed."""

    def summary(self) -> JsonObject:
        """The fields a listing shows (no headers or body)."""
        return json_safe_object({
            "id": self.id,
            "seq": self.seq,
            "endpoint": self.endpoint,
            "name": self.name,
            "received_at": self.received_at,
            "status": self.status,
            "idempotency_key": self.idempotency_key,
            "source": self.source,
            "related_id": self.related_id,
            "error": self.error,
        })

    def detail(self) -> JsonObject:
        """Everything about the event, as JSON any encoder can write (odd stored values are shown, not
        raised: a body that is not UTF-8 comes as ``body_base64``, NaN or a lone surrogate as text)."""
        out: dict[str, object] = dict(self.summary())
        body = self.body or b""
        try:
            body_text: str | None = body.decode("utf-8")
        except UnicodeDecodeError:
            body_text = None
            out["body_base64"] = base64.b64encode(body).decode()
        payload = self.payload
        if payload is None and self.payload_text:
            out["payload_error"] = "the stored payload is not JSON that can be read back"
        out.update(
            headers=self.headers,
            payload=payload,
            body=body_text,
            dispatched_at=self.dispatched_at,
            expires_at=self.expires_at,
        )
        return json_safe_object(out)


def like_pattern(text: str) -> str:
    """``%text%`` for ``LOWER(column) LIKE ? ESCAPE '\\'``, with the text's own ``%``, ``_`` and ``\\`` escaped."""
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _strict_json(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError, RecursionError, TypeError):
        return False
    return True


def json_safe(value: object) -> JsonValue:
    """``value`` unchanged when strict JSON can carry it, else a copy whose non-finite numbers and lone
    surrogates are written as text (and nesting past 200 levels elided)."""
    if _strict_json(value):
        return cast("JsonValue", value)  # strict JSON just wrote it, so it reads back as this value
    return _mend(value, 0)


def json_safe_object(value: dict[str, object]) -> JsonObject:
    """``json_safe`` for an object: the same dict when strict JSON can carry it, else a mended copy."""
    if _strict_json(value):
        return cast("JsonObject", value)  # as in json_safe
    return {_mend_key(k): _mend(v, 1) for k, v in value.items()}


def _mend_key(key: object) -> str:
    return str(key).encode("utf-8", "backslashreplace").decode("utf-8")


def _mend(value: object, depth: int) -> JsonValue:
    if depth > 200:
        return "[nested too deep to show]"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_mend_key(k): _mend(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mend(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


_EVENT_COLUMNS = (
    "seq, id, endpoint, name, received_at, idempotency_key, headers, body, payload, status, error, source, "
    "related_id, expires_at, dispatched_at"
)


# An accepted webhook's payload is its body (unless fields were redacted): it is stored once, in ``body``,
# with ``payload = ''`` (never valid JSON) saying so. Light reads fetch the body only for those rows.
SAME_AS_BODY = ""
_LIGHT_COLUMNS = _EVENT_COLUMNS.replace("headers, body,", "NULL, CASE WHEN payload = '' THEN body END,")


def _stored_payload(ev: NewEvent) -> str | None:
    text = ev.payload_text
    if text is not None:
        body = ev.body
        if body is not None and len(body) >= len(text) and body == text.encode("utf-8"):
            return SAME_AS_BODY
        return text
    return json.dumps(ev.payload) if ev.payload is not None else None


def _json_or_none(text: str | None) -> JsonValue:
    """The stored JSON ``text`` parsed; None when it cannot be (an event stored before the inbox refused
    such bodies must not break a listing: ``EventRecord.detail`` says so instead)."""
    if text is None:
        return None
    try:
        value: JsonValue = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value


def payload_text_of(payload: str | None, body: bytes | memoryview | None) -> str | None:
    """The stored payload text of an event row (``payload``, or the body it is the same as)."""
    if payload == SAME_AS_BODY and body is not None:
        return bytes(body).decode("utf-8", "replace")
    return payload


def _row_to_event(row: tuple[object, ...], parse: bool = True, light: bool = False) -> EventRecord:
    body = opt_bytes(row[7], "events.body")
    text = payload_text_of(opt_str(row[8], "events.payload"), body)
    return EventRecord(
        seq=as_int(row[0], "events.seq"),
        id=as_str(row[1], "events.id"),
        endpoint=opt_str(row[2], "events.endpoint"),
        name=as_str(row[3], "events.name"),
        received_at=as_float(row[4], "events.received_at"),
        idempotency_key=opt_str(row[5], "events.idempotency_key"),
        headers=json.loads(opt_str(row[6], "events.headers") or "{}"),
        body=body if not light else None,
        payload=_json_or_none(text) if parse else None,
        payload_text=text,
        status=as_str(row[9], "events.status"),
        error=_json_or_none(opt_str(row[10], "events.error")),
        source=as_str(row[11], "events.source"),
        related_id=opt_str(row[12], "events.related_id"),
        expires_at=opt_float(row[13], "events.expires_at"),
        dispatched_at=opt_float(row[14], "events.dispatched_at"),
    )


class StateStore(ABC):
    """SQL shared by the backends; subclasses provide connections and placeholders."""

    backend: str = "?"
    placeholder: str = "?"
    BODY_TEXT: str = "CAST(body AS TEXT)"
    """SQL reading the raw body (bytes) as text, for searching events whose payload is stored as their body."""

    def __init__(self) -> None:
        self._write_lock = threading.Lock()

    # -- connections -------------------------------------------------------------------------
    @abstractmethod
    def _write_conn(self) -> Connection: ...

    @abstractmethod
    def _read_conn(self) -> Connection: ...

    @abstractmethod
    def close(self) -> None: ...

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _lane_lock(self, lane: str | None) -> threading.Lock:
        """The lock of a write lane: one lane (the single writer) unless a backend has more."""
        return self._write_lock

    def _lane_conn(self, lane: str | None) -> Connection:
        """The connection of a write lane (called holding its lock)."""
        return self._write_conn()

    @contextmanager
    def transaction(self, durable: bool = True, lane: str | None = None) -> Iterator[Cursor]:
        """A write transaction on the single writer connection: yields a cursor.

        ``durable=False`` is for bookkeeping that is safe to redo (dispatch marks, consumer cursors): on
        SQLite its commit skips the fsync, so it does not delay the durable commits of accepted events.
        ``lane``: on Postgres, a writer connection of its own for this kind of work (the workflow engine
        uses one), so that its transactions do not queue behind the event log's commits in this process;
        SQLite has one writer whatever the lane.
        """
        with self._lane_lock(lane):
            conn = self._lane_conn(lane)
            cur = conn.cursor()
            relaxed = not durable and self._relax(cur)
            try:
                self._begin(cur)
                yield cur
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                if relaxed:
                    self._unrelax(cur)
                cur.close()

    def pipeline(self, cur: Cursor) -> AbstractContextManager[object]:
        """Inside a transaction: send the statements that return nothing without waiting for each
        reply (Postgres pipeline mode; a no-op for SQLite). An error surfaces at the block's end, or at
        the first statement whose rows are fetched."""
        return nullcontext()

    def _relax(self, cur: Cursor) -> bool:
        """Make the next commit skip its fsync; returns whether anything changed."""
        return False

    def _unrelax(self, cur: Cursor) -> None:
        """Undo ``_relax``."""

    def _begin(self, cur: Cursor) -> None:
        """Start a write transaction (SQLite takes the write lock up front)."""

    def execute(self, cur: Cursor, sql: str, params: Sequence[object] = ()) -> Cursor:
        cur.execute(self._sql(sql), tuple(params))
        return cur

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Run a read-only query on this thread's read connection. A row's values are the driver's; a reader
        narrows each with ``opsloop.narrow`` (``as_int(rows[0][0], "the event count")``)."""
        conn = self._read_conn()
        cur = conn.cursor()
        try:
            cur.execute(self._sql(sql), tuple(params))
            rows = [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()
            # also after an error: a Postgres connection left in its failed transaction refuses every
            # later query of this thread ("current transaction is aborted")
            self._end_read(conn)
        return rows

    def _end_read(self, conn: Connection) -> None:
        """Finish a read (Postgres closes its implicit transaction so it sees new commits)."""

    # -- migrations --------------------------------------------------------------------------
    def migrate(self, upto: int | None = None) -> list[str]:
        """Apply every migration not applied yet (up to number ``upto``), in number order; returns the names
        applied."""
        applied: list[str] = []
        with self.transaction() as cur:
            self.execute(
                cur,
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at DOUBLE PRECISION NOT NULL)",
            )
            self._lock_migrations(cur)
            done = {row[0] for row in self.execute(cur, "SELECT version FROM schema_migrations").fetchall()}
            for migration in migrations(self.backend):
                if migration.version in done or (upto is not None and migration.version > upto):
                    continue
                self._run_script(cur, migration.sql)
                self.execute(
                    cur,
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
                applied.append(migration.name)
        self.search_index = self._prepare_search()
        self._start_indexer()
        return applied

    def _prepare_search(self) -> bool:
        """After migrating: whether the search index is there (making what the store makes outside the
        migrations); False leaves every search a scan."""
        return False

    def _before_append(self, cur: Cursor) -> None:
        """Called once per transaction that appends: Postgres serialises appenders here so that ``seq``
        order is commit order, and consumers reading ``seq > cursor`` never skip an event that commits
        late. Also announces the append to listeners in other processes."""

    def try_lead(self, role: str) -> bool:
        """Become the one process that runs ``role`` (warehouse loader, scheduler ...). SQLite: one
        process owns the store, so always True. Postgres: a session advisory lock, released when the
        holder's connection ends (so a killed leader is replaced)."""
        return True

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from another thread) when another process appends events. No-op on SQLite."""

    def _lock_migrations(self, cur: Cursor) -> None:
        """Serialise concurrent migrators (Postgres advisory lock)."""

    def _run_script(self, cur: Cursor, sql: str) -> None:
        for statement in (s.strip() for s in sql.split(";")):
            body = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
            if body.strip():
                cur.execute(body)

    # -- the event log -----------------------------------------------------------------------
    def append_events(self, batch: Sequence[NewEvent]) -> list[AppendResult]:
        """Append ``batch`` in one transaction, deduplicating on (endpoint, idempotency key)."""
        with self.transaction() as cur:
            results = self.append_events_in(cur, batch)
        if self._indexer is not None:
            self._indexer.kick()
        return results

    def append_events_in(self, cur: Cursor, batch: Sequence[NewEvent]) -> list[AppendResult]:
        """Append inside a caller's transaction (workflows write events with their step results)."""
        rows: list[tuple[object, ...]] = []
        dups: list[str | None] = []
        if batch:
            self._before_append(cur)
        for ev in batch:
            status = ev.status
            related = ev.related_id
            duplicate_of: str | None = None
            if ev.dedupe_until is not None and ev.idempotency_key and ev.accepted:
                row = self.execute(
                    cur,
                    "INSERT INTO idempotency (endpoint, key, event_id, expires_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (endpoint, key) DO UPDATE SET event_id = excluded.event_id, "
                    "expires_at = excluded.expires_at WHERE idempotency.expires_at <= ? RETURNING event_id",
                    (ev.endpoint or "", ev.idempotency_key, ev.id, ev.dedupe_until, ev.received_at),
                ).fetchone()
                if row is None:
                    found = self.execute(
                        cur,
                        "SELECT event_id FROM idempotency WHERE endpoint = ? AND key = ?",
                        (ev.endpoint or "", ev.idempotency_key),
                    ).fetchone()
                    duplicate_of = opt_str(found[0], "idempotency.event_id") if found else None
                    status, related = "duplicate", duplicate_of
            rows.append(self._event_row(ev, status, related))
            dups.append(duplicate_of)
        seqs = self._insert_events(cur, rows)
        return [AppendResult(event_id=str(row[0]), seq=seq, duplicate_of=dup)
                for row, seq, dup in zip(rows, seqs, dups, strict=True)]

    _EVENT_INSERT = ("INSERT INTO events (id, endpoint, name, received_at, idempotency_key, headers, body, payload, "
                     "status, accepted, error, source, related_id, expires_at, dispatched_at) VALUES ")

    def _insert_events(self, cur: Cursor, rows: list[tuple[object, ...]]) -> list[int]:
        """Insert event rows in order; returns their ``seq``s. Many rows go in one statement per 200 (one
        round trip to a server store instead of one per event); ``seq``s are matched back by event id."""
        seqs: list[int] = []
        for start in range(0, len(rows), 200):
            chunk = rows[start : start + 200]
            marks = ", ".join(["(" + ", ".join("?" * len(chunk[0])) + ")"] * len(chunk))
            found = self.execute(
                cur, f"{self._EVENT_INSERT}{marks} RETURNING id, seq", [v for row in chunk for v in row],
            ).fetchall()
            by_id = {str(r[0]): as_int(r[1], "events.seq") for r in found}
            seqs += [by_id[str(row[0])] for row in chunk]
        return seqs

    @staticmethod
    def _event_row(ev: NewEvent, status: str, related: str | None) -> tuple[object, ...]:
        return (
            ev.id,
            ev.endpoint,
            ev.name,
            ev.received_at,
            ev.idempotency_key,
            json.dumps(ev.headers),
            ev.body,
            _stored_payload(ev),
            status,
            1 if status in ACCEPTED_STATUSES else 0,
            json.dumps(ev.error) if ev.error is not None else None,
            ev.source,
            related,
            ev.expires_at,
            ev.received_at if status == "dispatched" else None,  # nothing to dispatch it to (App._settle)
        )

    def read_events(
        self, after_seq: int, limit: int = 500, with_body: bool = True, parse: bool = True
    ) -> list[EventRecord]:
        """Accepted events with ``seq > after_seq`` in log order: the subscription interface.

        ``with_body=False`` leaves out the raw body and headers (consumers that need only the payload);
        ``parse=False`` leaves ``payload`` None and gives the stored JSON text in ``payload_text``.
        """
        columns = _EVENT_COLUMNS if with_body else _LIGHT_COLUMNS
        rows = self.query(
            f"SELECT {columns} FROM events WHERE accepted = 1 AND seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [_row_to_event(r, parse, light=not with_body) for r in rows]

    def list_events(
        self,
        status: str | None = None,
        endpoint: str | None = None,
        since: float | None = None,
        until: float | None = None,
        name: str | None = None,
        limit: int = 100,
        before_seq: int | None = None,
        search: str | None = None,
    ) -> list[EventRecord]:
        """Newest first, filtered. ``before_seq`` pages on (keyset: the last ``seq`` shown); ``search`` finds
        the text in the payload (or the raw body it came as) or the error (case-insensitive), or an event id.

        A search of 3 characters or more reads the store's trigram index where it has one
        (``search_index``); what it finds is what the scan finds (``_search.py`` says how)."""
        where: list[str] = []
        params: list[object] = []
        for column, value in (("status", status), ("endpoint", endpoint), ("name", name)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("received_at >= ?")
            params.append(since)
        if until is not None:
            where.append("received_at <= ?")
            params.append(until)
        text = (search or "").strip()
        if search and "\x00" in text and not self.TEXT_HOLDS_NUL:
            return []  # no stored text holds it, and the driver refuses it as a parameter
        if search and self.search_index and len(text) >= MIN_INDEXED and "\x00" not in text:
            return self._search_events(text, where, params, before_seq, limit)
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        if search:
            where.append(f"({self._scan_predicate()} OR id = ?)")
            params += [*self._scan_params(text), text]
        rows = self.query(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where) or '1 = 1'} ORDER BY seq DESC LIMIT ?",
            (*params, limit),
        )
        return [_row_to_event(r) for r in rows]

    # -- text search -------------------------------------------------------------------------
    TEXT_HOLDS_NUL: bool = True
    """Whether a text value (and so a search) may hold the NUL character (Postgres refuses it)."""

    search_index: bool = False
    """Whether this store has a trigram index for ``list_events(search=...)`` (set by ``migrate``; False:
    every search scans the log). Setting it False on an instance makes its searches scan (bench/pages.py
    compares the two)."""

    search_scan_first: int = SCAN_FIRST
    """How many of the newest events a search scans before it reads the index (``_search.SCAN_FIRST``)."""

    def _scan_predicate(self) -> str:
        """The search as a scan: the text in the payload, in the body stored as the payload, or the error."""
        return (f"(LOWER(payload) LIKE ? ESCAPE '\\' OR (payload = ? AND LOWER({self.BODY_TEXT}) LIKE ? "
                "ESCAPE '\\') OR LOWER(error) LIKE ? ESCAPE '\\')")

    @staticmethod
    def _scan_params(text: str) -> list[object]:
        pattern = like_pattern(text)
        return [pattern, SAME_AS_BODY, pattern, pattern]

    def _search_arms(self, text: str) -> list[tuple[str, str, list[object], str]]:
        """The indexed lookups of a search, each ``(from, condition, params, seq column)``: rows of
        ``events`` (joined to an index) whose text may hold ``text``, newest first by the seq column."""
        return []

    def _search_events(self, text: str, where: list[str], params: list[object], before_seq: int | None,
                       limit: int) -> list[EventRecord]:
        """The id, a scan of the newest events (``search_scan_first`` of them, and every one past the index's
        cursor) and, when that scan did not fill the page, each indexed arm below it: each newest first and
        cut to ``limit``, so that the newest ``limit`` of them all are the newest ``limit`` matches."""
        newest = before_seq - 1 if before_seq is not None else self.max_seq()
        bound = min(self.get_cursor(SEARCH_CURSOR), newest - self.search_scan_first)
        scan = [self._scan_predicate(), *where]
        scan_params = [*self._scan_params(text), *params]
        columns = ", ".join(f"events.{c.strip()}" for c in _EVENT_COLUMNS.split(","))

        def newest_first(source: str, conditions: list[str], arm_params: list[object],
                         seq: str) -> list[tuple[object, ...]]:
            if before_seq is not None:
                conditions, arm_params = [*conditions, f"{seq} < ?"], [*arm_params, before_seq]
            return self.query(f"SELECT {columns} FROM {source} WHERE {' AND '.join(conditions)} "
                              f"ORDER BY {seq} DESC LIMIT ?", (*arm_params, limit))

        by_id = newest_first("events", ["id = ?", *where], [text, *params], "seq")
        found = {as_int(r[0], "events.seq"): r for r in by_id}
        scanned = newest_first("events", ["seq > ?", *scan], [bound, *scan_params], "seq")
        found.update((as_int(r[0], "events.seq"), r) for r in scanned)
        if len(scanned) < limit:  # a full page from the scan is newer than anything the index holds
            for source, condition, arm_params, seq in self._search_arms(text):
                rows = newest_first(source, [condition, f"{seq} <= ?", *scan], [*arm_params, bound, *scan_params],
                                    seq)
                found.update((as_int(r[0], "events.seq"), r) for r in rows)
        return [_row_to_event(found[seq]) for seq in sorted(found, reverse=True)[:limit]]

    def index_search(self, limit: int = INDEX_BATCH) -> int:
        """Index the next ``limit`` events past the search cursor for text search, in one transaction;
        returns how many it indexed (0: the log is indexed). The store's background indexer calls it."""
        if not self.search_index or self.max_seq() <= self.get_cursor(SEARCH_CURSOR):
            return 0
        return self._index_batch(limit)

    def _index_batch(self, limit: int) -> int:
        """``index_search`` once there is something to index."""
        return 0

    def _next_batch(self, cur: Cursor, limit: int) -> tuple[int, int, int]:
        """In an indexing transaction: (the search cursor, the last seq of the next ``limit`` events past
        it, how many they are)."""
        start = self.execute(cur, "SELECT seq FROM cursors WHERE consumer = ?", (SEARCH_CURSOR,)).fetchone()
        after = as_int(start[0], "cursors.seq") if start else 0
        row = self.execute(cur, "SELECT MAX(seq), COUNT(*) FROM (SELECT seq FROM events WHERE seq > ? ORDER BY seq "
                                "LIMIT ?) batch", (after, limit)).fetchone()
        if row is None or not row[1]:
            return after, after, 0
        return after, as_int(row[0], "events.seq"), as_int(row[1], "the batch size")

    def search_indexed_upto(self) -> int:
        """The ``seq`` up to which every event is in the search index (later ones are scanned)."""
        return self.get_cursor(SEARCH_CURSOR)

    _indexer: SearchIndexer | None = None

    def _start_indexer(self) -> None:
        if self.search_index and self._indexer is None:
            self._indexer = SearchIndexer(self.index_search)

    def _stop_indexer(self) -> None:
        if self._indexer is not None:
            self._indexer.stop()
            self._indexer = None

    def _search_errors_changed(self, cur: Cursor, condition: str, params: Sequence[object]) -> None:
        """In the transaction that set the error of the events matching ``condition``: bring the search
        index's copy of their errors up to date (a store that indexes ``events.error`` itself needs nothing)."""

    def _search_forget(self, cur: Cursor, condition: str, params: Sequence[object]) -> None:
        """In the transaction about to delete the events matching ``condition``: take them out of the
        search index (a store whose index rows go with the event needs nothing)."""

    def get_event(self, event_id: str) -> EventRecord | None:
        rows = self.query(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,))
        return _row_to_event(rows[0]) if rows else None

    def count_events(self, status: str | None = None) -> int:
        if status is None:
            return as_int(self.query("SELECT COUNT(*) FROM events")[0][0], "the event count")
        return as_int(self.query("SELECT COUNT(*) FROM events WHERE status = ?", (status,))[0][0], "the event count")

    def mark_events(self, ids: Sequence[str], status: str, error: object = None,
                    cursor: tuple[str, int] | None = None) -> None:
        """Set the dispatch outcome of accepted events; ``cursor`` (consumer, seq) moves in the same commit."""
        if not ids and cursor is None:
            return
        error_text = json.dumps(error) if error is not None else None
        now = time.time()
        with self.transaction(durable=False) as cur:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                marks = ", ".join("?" for _ in chunk)
                # a consumer that marked one failed (fail_event) is not overruled by one that succeeded
                keep = " AND status <> 'failed'" if status == "dispatched" else ""
                self.execute(
                    cur,
                    f"UPDATE events SET status = ?, error = ?, dispatched_at = ? WHERE id IN ({marks}){keep}",
                    (status, error_text, now, *chunk),
                )
                if error_text is not None:
                    self._search_errors_changed(cur, f"id IN ({marks})", chunk)
            if cursor is not None:
                self.set_cursor(cursor[0], cursor[1], cur)

    def fail_event(self, event_id: str, consumer: str, reason: str) -> None:
        """Mark an accepted event failed by ``consumer`` (the loader, workflows ...): it shows in
        ``opsloop events --status failed`` with the reason, and a replay sends it through again."""
        error = json.dumps({"reason": reason[:2000], "consumer": consumer})
        with self.transaction(durable=False) as cur:
            self.execute(
                cur,
                "UPDATE events SET status = 'failed', error = ?, dispatched_at = COALESCE(dispatched_at, ?) "
                "WHERE id = ? AND accepted = 1",
                (error, time.time(), event_id),
            )
            self._search_errors_changed(cur, "id = ? AND accepted = 1", [event_id])

    def set_event_status(self, cur: Cursor, event_id: str, status: str, related_id: str | None = None) -> None:
        self.execute(
            cur,
            "UPDATE events SET status = ?, related_id = COALESCE(?, related_id), accepted = ? WHERE id = ?",
            (status, related_id, 1 if status in ACCEPTED_STATUSES else 0, event_id),
        )

    def get_cursor(self, consumer: str) -> int:
        rows = self.query("SELECT seq FROM cursors WHERE consumer = ?", (consumer,))
        return as_int(rows[0][0], "cursors.seq") if rows else 0

    def set_cursor(self, consumer: str, seq: int, cur: Cursor | None = None) -> None:
        sql = (
            "INSERT INTO cursors (consumer, seq, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at"
        )
        if cur is not None:
            self.execute(cur, sql, (consumer, seq, time.time()))
            return
        with self.transaction(durable=False) as c:
            self.execute(c, sql, (consumer, seq, time.time()))

    def max_seq(self) -> int:
        return as_int(self.query("SELECT COALESCE(MAX(seq), 0) FROM events")[0][0], "the newest event's seq")

    def purge_expired(self, now: float | None = None) -> int:
        """Delete events past retention. Quarantined and failed events are kept until resolved."""
        now = time.time() if now is None else now
        expired = "expires_at IS NOT NULL AND expires_at < ? AND status NOT IN ('quarantined', 'failed')"
        with self.transaction() as cur:
            self._search_forget(cur, expired, [now])
            cur2 = self.execute(cur, f"DELETE FROM events WHERE {expired}", (now,))
            count = int(cur2.rowcount or 0)
            self.execute(cur, "DELETE FROM idempotency WHERE expires_at < ?", (now,))
        return count

    def kv_get(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM kv WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def kv_set(self, key: str, value: str) -> None:
        with self.transaction() as cur:
            self.execute(
                cur,
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
