"""SQLite state store (the embedded default): one writer connection, one reader per thread, WAL.

Durability: with ``fsync=True`` (``synchronous=FULL``) a committed event survives power loss; with
``fsync=False`` (``synchronous=NORMAL`` in WAL mode) it survives a crash of the process, not of the machine.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from ..errors import StateStoreError
from ..narrow import as_int
from ._search import SEARCH_CURSOR, fts_phrase
from .base import Connection, Cursor, StateStore


class SQLiteStateStore(StateStore):
    backend = "sqlite"
    _SEARCH_TEXT = "CASE WHEN payload = '' THEN CAST(body AS TEXT) ELSE payload END"
    """What ``events_search`` indexes of an event (migration 0005): its payload, or the body it is the same as."""

    def __init__(self, path: Path | str, fsync: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.fsync = fsync
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateStoreError(f"cannot create {self.path.parent}: {exc.strerror}") from exc
        self._local = threading.local()
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._closed = False

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot open the state store {self.path}: {exc}") from exc
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _write_conn(self) -> Connection:
        if self._closed:
            raise StateStoreError("the state store is closed")
        if self._writer is None:
            self._writer = self._open()
        return _AutoBegin(self._writer)

    def _begin(self, cur: Cursor) -> None:
        cur.execute("BEGIN IMMEDIATE")

    def _insert_events(self, cur: Cursor, rows: list[tuple[object, ...]]) -> list[int]:
        """One multi-row INSERT per 500 events with the seqs given explicitly: far fewer round trips into
        SQLite (each releases and retakes the GIL, slow while the event loop is busy). The write lock is
        held (BEGIN IMMEDIATE), and sqlite_sequence holds the highest seq ever used, so seqs stay unique
        and increasing even after retention deleted the newest events."""
        if not rows:
            return []
        found = cur.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        highest = cur.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        top = max(as_int(found[0], "sqlite_sequence.seq") if found else 0,
                  as_int(highest[0], "events.seq") if highest else 0)
        seqs = list(range(top + 1, top + 1 + len(rows)))
        for start in range(0, len(rows), 500):
            chunk = rows[start : start + 500]
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            params = [v for seq, row in zip(seqs[start : start + 500], chunk, strict=True) for v in (seq, *row)]
            cur.execute(self._EVENT_INSERT.replace("(id,", "(seq, id,", 1) + values, params)
        return seqs

    def _relax(self, cur: Cursor) -> bool:
        if not self.fsync:
            return False
        cur.execute("PRAGMA synchronous=NORMAL")
        return True

    def _unrelax(self, cur: Cursor) -> None:
        cur.execute("PRAGMA synchronous=FULL")

    # -- text search (migration 0005; _search.py) ----------------------------------------------
    _search_tables = False
    """Whether migration 0005's tables are there: kept current even while ``search_index`` is set False."""

    def _prepare_search(self) -> bool:
        self._search_tables = bool(self.query("SELECT 1 FROM sqlite_master WHERE name = 'events_search'"))
        return self._search_tables

    def _search_arms(self, text: str) -> list[tuple[str, str, list[object], str]]:
        phrase = fts_phrase(text)
        return [(f"{table} CROSS JOIN events ON events.seq = {table}.rowid", f"{table} MATCH ?", [phrase],
                 f"{table}.rowid") for table in ("events_search", "events_search_errors")]

    def _index_batch(self, limit: int) -> int:
        with self.transaction(durable=False) as cur:
            after, top, count = self._next_batch(cur, limit)
            if count:
                self.execute(cur, f"INSERT INTO events_search (rowid, txt) SELECT seq, {self._SEARCH_TEXT} FROM events "
                                  f"WHERE seq > ? AND seq <= ? AND {self._SEARCH_TEXT} IS NOT NULL", (after, top))
                self.execute(cur, "INSERT INTO events_search_errors (rowid, txt) SELECT seq, error FROM events "
                                  "WHERE seq > ? AND seq <= ? AND error IS NOT NULL", (after, top))
                self.set_cursor(SEARCH_CURSOR, top, cur)
            return count

    def _indexed_upto(self, cur: Cursor) -> int | None:
        if not self._search_tables:
            return None
        row = self.execute(cur, "SELECT seq FROM cursors WHERE consumer = ?", (SEARCH_CURSOR,)).fetchone()
        return as_int(row[0], "cursors.seq") if row else 0

    def _search_errors_changed(self, cur: Cursor, condition: str, params: Sequence[object]) -> None:
        upto = self._indexed_upto(cur)
        if upto is None:
            return
        self.execute(cur, f"DELETE FROM events_search_errors WHERE rowid IN (SELECT seq FROM events WHERE {condition} "
                          "AND seq <= ?)", (*params, upto))
        self.execute(cur, "INSERT INTO events_search_errors (rowid, txt) SELECT seq, error FROM events "
                          f"WHERE {condition} AND seq <= ? AND error IS NOT NULL", (*params, upto))

    def _search_forget(self, cur: Cursor, condition: str, params: Sequence[object]) -> None:
        upto = self._indexed_upto(cur)
        if upto is None:
            return
        # a contentless FTS5 table forgets a row when told the text it indexed for it (the same expression)
        self.execute(cur, f"INSERT INTO events_search (events_search, rowid, txt) SELECT 'delete', seq, "
                          f"{self._SEARCH_TEXT} FROM events WHERE {condition} AND seq <= ? "
                          f"AND {self._SEARCH_TEXT} IS NOT NULL", (*params, upto))
        self.execute(cur, f"DELETE FROM events_search_errors WHERE rowid IN (SELECT seq FROM events WHERE {condition} "
                          "AND seq <= ?)", (*params, upto))

    def _read_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            self._readers.append(conn)
        return conn

    def close(self) -> None:
        self._stop_indexer()
        self._closed = True
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        for conn in self._readers:
            try:
                conn.close()
            except sqlite3.ProgrammingError:
                pass
        self._readers.clear()


class _AutoBegin:
    """Connection wrapper whose commit/rollback work with explicit BEGIN in autocommit mode."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def cursor(self) -> sqlite3.Cursor:
        return self.conn.cursor()

    def commit(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
