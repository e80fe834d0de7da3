"""Postgres state store: several opsloop processes share it.

The URL may carry ``?schema=NAME`` to keep opsloop's tables in their own schema (created if missing).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import StateStoreError
from ._search import SEARCH_CURSOR, search_forms
from .base import Cursor, StateStore, any_like, like_patterns

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import TupleRow

    PgConnection = Connection[TupleRow]


log = logging.getLogger("opsloop.state")


def _split_schema(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


def bytea_escape(text: str) -> str:
    """``text`` as ``encode(body, 'escape')`` shows its UTF-8 bytes: each byte past ASCII as ``\\ooo``, a
    backslash doubled (so a body holding ``é`` is found by searching ``é``)."""
    return "".join(f"\\{b:03o}" if b > 127 else ("\\\\" if b == 92 else chr(b)) for b in text.encode("utf-8"))


class PostgresStateStore(StateStore):
    backend = "postgres"
    BODY_TEXT = "encode(body, 'escape')"  # BYTEA as text; bytes past ASCII come out as \ooo, never an error
    placeholder = "%s"
    TEXT_HOLDS_NUL = False
    TEXT_INDEX = "pg_trgm"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url, self.schema = _split_schema(url)
        self._local = threading.local()
        self._writer: PgConnection | None = None
        self._conns: list[PgConnection] = []
        self._closed = False
        self._leading: dict[str, PgConnection] = {}
        self._listeners: list[Connection[TupleRow]] = []
        self._lanes: dict[str, tuple[threading.Lock, PgConnection | None]] = {}
        self._lanes_lock = threading.Lock()
        if self.schema:
            conn = self._open(with_schema=False)
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.commit()
            conn.close()

    def _open(self, with_schema: bool = True) -> PgConnection:
        import psycopg

        try:
            conn = psycopg.connect(self.url, connect_timeout=10)
        except psycopg.OperationalError as exc:
            where = urlsplit(self.url).hostname or "localhost"
            raise StateStoreError(
                f"cannot connect to the Postgres state store at {where}: {str(exc).strip().splitlines()[0]} "
                "(check state.url in opsloop.yml or OPSLOOP_STATE_URL)"
            ) from exc
        if with_schema and self.schema:
            conn.execute(f'SET search_path TO "{self.schema}"')
            conn.commit()
        self._conns.append(conn)
        return conn

    def _write_conn(self) -> PgConnection:
        if self._closed:
            raise StateStoreError("the state store is closed")
        if self._writer is None:
            self._writer = self._open()
        return self._writer

    def _lane_lock(self, lane: str | None) -> threading.Lock:
        if lane is None:
            return self._write_lock
        with self._lanes_lock:
            if lane not in self._lanes:
                self._lanes[lane] = (threading.Lock(), None)
            return self._lanes[lane][0]

    def _lane_conn(self, lane: str | None) -> PgConnection:
        if lane is None:
            return self._write_conn()
        lock, conn = self._lanes[lane]
        if conn is None or conn.closed:
            if self._closed:
                raise StateStoreError("the state store is closed")
            conn = self._open()
            self._lanes[lane] = (lock, conn)
        return conn

    def _read_conn(self) -> PgConnection:
        conn: PgConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
        return conn

    def _end_read(self, conn: PgConnection) -> None:  # type: ignore[override]  # only its own connections
        try:
            conn.rollback()
        except Exception:
            # a broken connection: this thread opens a new one for its next read
            self._local.conn = None
            with contextlib.suppress(Exception):
                conn.close()
            with contextlib.suppress(ValueError):
                self._conns.remove(conn)

    def pipeline(self, cur: Cursor) -> AbstractContextManager[object]:
        import psycopg

        assert isinstance(cur, psycopg.Cursor)  # this store's transactions yield psycopg's cursors
        return cur.connection.pipeline()

    def _before_append(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(726917002)")
        cur.execute("SELECT pg_notify(%s, '')", (self._channel,))

    @property
    def _channel(self) -> str:
        return f"opsloop_events_{self.schema or 'public'}"[:63]

    def try_lead(self, role: str) -> bool:
        if role in self._leading:
            return True
        conn = self._open()
        key = int.from_bytes(hashlib.sha256(f"{self.schema}:{role}".encode()).digest()[:8], "big", signed=True)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        got = bool(row and row[0])
        conn.commit()
        if got:
            self._leading[role] = conn
            return True
        conn.close()
        self._conns.remove(conn)
        return False

    def listen(self, callback: Callable[[], None]) -> None:
        import psycopg

        def run() -> None:
            while not self._closed:
                try:
                    conn = psycopg.connect(self.url, autocommit=True)
                    conn.execute(f'LISTEN "{self._channel}"')
                    self._listeners.append(conn)
                    for _ in conn.notifies():
                        callback()
                        if self._closed:
                            break
                except Exception:
                    if self._closed:
                        return
                    time.sleep(1.0)

        thread = threading.Thread(target=run, name="opsloop-pg-listen", daemon=True)
        thread.start()

    # -- text search (migration 0005; _search.py) ----------------------------------------------
    _SEARCH_TEXT = "CASE WHEN payload = '' THEN encode(body, 'escape') ELSE payload END"
    """What ``event_search.doc`` holds of an event: its payload, or the body it is the same as (read as the scan
    reads it)."""

    def _has_table(self, name: str) -> bool:
        return self.query("SELECT to_regclass(?)", (name,))[0][0] is not None

    def _prepare_search(self) -> bool:
        """The pg_trgm GIN indexes over ``event_search.doc`` and ``events.error`` (and the runs' over
        ``wf_run_search.doc`` and ``wf_runs.error``, migration 0102), made here rather than in
        migration 0005 because they need the extension: created (in schema ``public``) when this user may,
        else searched by a scan. An extension installed later (``CREATE EXTENSION pg_trgm`` by a superuser or
        the database owner) is used from the next start."""
        import psycopg

        with self.transaction() as cur:
            if self.execute(cur, "SELECT to_regclass('event_search')").fetchone() in (None, (None,)):
                return False
            found = self.execute(cur, "SELECT extnamespace::regnamespace::text FROM pg_extension "
                                      "WHERE extname = 'pg_trgm'").fetchone()
            if found is None:
                cur.execute("SAVEPOINT trgm")
                try:
                    cur.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
                except psycopg.Error as exc:
                    cur.execute("ROLLBACK TO SAVEPOINT trgm")
                    log.warning("text search scans the event log: the pg_trgm extension cannot be created (%s); "
                                "a superuser can run CREATE EXTENSION pg_trgm SCHEMA public in this database",
                                str(exc).strip().splitlines()[0])
                    return False
                cur.execute("RELEASE SAVEPOINT trgm")
                found = ("public",)
            ops = f"{found[0]}.gin_trgm_ops"
            wanted = [
                ("event_search_doc_trgm", f"CREATE INDEX IF NOT EXISTS event_search_doc_trgm ON event_search USING gin "
                                          f"(doc {ops})"),
                ("events_error_trgm", f"CREATE INDEX IF NOT EXISTS events_error_trgm ON events USING gin "
                                      f"(LOWER(error) {ops}) WHERE error IS NOT NULL"),
            ]
            if self.execute(cur, "SELECT to_regclass('wf_run_search')").fetchone() not in (None, (None,)):
                wanted += [
                    ("wf_run_search_doc_trgm", f"CREATE INDEX IF NOT EXISTS wf_run_search_doc_trgm ON wf_run_search "
                                               f"USING gin (doc {ops})"),
                    ("wf_runs_error_trgm", f"CREATE INDEX IF NOT EXISTS wf_runs_error_trgm ON wf_runs USING gin "
                                           f"(LOWER(error) {ops}) WHERE error IS NOT NULL"),
                ]
        # Each missing index in a transaction of its own, one creator at a time (an advisory lock), and none
        # touched when it exists: CREATE INDEX locks its table against writes, and holding several such locks in
        # one transaction deadlocked with a running process's writes when a second process started.
        for name, statement in wanted:
            with self.transaction() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(726917004)")
                if self.execute(cur, "SELECT to_regclass(?)", (name,)).fetchone() in (None, (None,)):
                    cur.execute(statement)
        return True

    def _body_forms(self, forms: list[str]) -> list[str]:
        return [bytea_escape(form) for form in forms]

    def _search_arms(self, text: str) -> list[tuple[str, str, list[object], str]]:
        forms = search_forms(text)
        docs = like_patterns([*forms, *self._body_forms(forms)])  # a doc is a payload or an escaped body
        errors = like_patterns(forms)  # Postgres LIKE's default escape is the backslash
        return [
            ("event_search JOIN events ON events.seq = event_search.event_seq",
             any_like("event_search.doc", docs, "ILIKE ?"), list[object](docs), "event_search.event_seq"),
            ("events", f"error IS NOT NULL AND {any_like('error', errors, 'LIKE ?')}", list[object](errors),
             "events.seq"),
        ]

    def _index_batch(self, limit: int) -> int:
        with self.transaction(lane="search") as cur:
            locked = self.execute(cur, "SELECT pg_try_advisory_xact_lock(726917003)").fetchone()
            if not (locked and locked[0]):
                return 0  # another process is indexing
            after, top, count = self._next_batch(cur, limit)
            if count:
                self.execute(cur, f"INSERT INTO event_search (event_seq, doc) SELECT seq, {self._SEARCH_TEXT} "
                                  f"FROM events WHERE seq > ? AND seq <= ? AND {self._SEARCH_TEXT} IS NOT NULL "
                                  "ON CONFLICT (event_seq) DO NOTHING", (after, top))
                self.set_cursor(SEARCH_CURSOR, top, cur)
            return count

    def _lock_migrations(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(726917001)")

    def close(self) -> None:
        self._stop_indexer()
        self._closed = True
        for conn in [*self._listeners, *self._conns]:
            try:
                conn.close()
            except Exception:  # noqa: S110 - closing best-effort
                pass
        self._conns.clear()
        self._listeners.clear()
        self._leading.clear()
        self._lanes.clear()
        self._writer = None
