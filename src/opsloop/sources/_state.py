"""Source cursors, run history and request budgets in the state store (SQLite or Postgres)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypedDict

from ..narrow import as_float, as_int, as_str, opt_float, opt_str
from ..state import NewEvent, StateStore


class StreamOutcome(TypedDict, total=False):
    """One stream's part of a run (``RunRecord.streams``)."""

    rows: int
    status: str
    table: str
    """``schema.table`` it loaded into (absent when the run failed)."""


@dataclass
class StreamState:
    source: str
    stream: str
    cursor: object
    rows_total: int
    last_rows: int
    last_run_id: str | None
    updated_at: float


@dataclass
class RunRecord:
    id: str
    source: str
    started_at: float
    finished_at: float | None
    status: str
    full_refresh: bool
    rows: int
    streams: dict[str, StreamOutcome] = field(default_factory=dict)
    requests: int = 0
    message: str | None = None
    resume_at: float | None = None
    events: list[NewEvent] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "source": self.source, "started_at": self.started_at, "finished_at": self.finished_at,
            "status": self.status, "full_refresh": self.full_refresh, "rows": self.rows, "streams": self.streams,
            "requests": self.requests, "message": self.message, "resume_at": self.resume_at,
        }


def _day(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC).strftime("%Y-%m-%d")


class SourceState:
    """Reads and writes the ``source_*`` tables of one state store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def streams(self, source: str) -> dict[str, StreamState]:
        rows = self.store.query(
            "SELECT source, stream, cursor, rows_total, last_rows, last_run_id, updated_at FROM source_streams "
            "WHERE source = ?", (source,),
        )
        return {
            as_str(r[1], "source_streams.stream"): StreamState(
                as_str(r[0], "source_streams.source"), as_str(r[1], "source_streams.stream"),
                json.loads(as_str(r[2], "source_streams.cursor")) if r[2] else None,
                as_int(r[3], "source_streams.rows_total"), as_int(r[4], "source_streams.last_rows"),
                opt_str(r[5], "source_streams.last_run_id"), as_float(r[6], "source_streams.updated_at"))
            for r in rows
        }

    def start_run(self, run_id: str, source: str, full_refresh: bool) -> None:
        with self.store.transaction() as cur:
            # a run still "running" here was cut short by a crash; its cursors were never committed
            self.store.execute(
                cur,
                "UPDATE source_runs SET status = 'interrupted', finished_at = ?, message = ? "
                "WHERE source = ? AND status = 'running'",
                (time.time(), "the process stopped during this run; the next run read its records again", source),
            )
            self.store.execute(
                cur,
                "INSERT INTO source_runs (id, source, started_at, status, full_refresh) VALUES (?, ?, ?, ?, ?)",
                (run_id, source, time.time(), "running", 1 if full_refresh else 0),
            )

    def finish_run(
        self, run: RunRecord, cursors: dict[str, object], rows: dict[str, int], events: list[NewEvent],
        reset: bool = False,
    ) -> None:
        """Commit the run's outcome, the streams' new cursors and the change events in one transaction."""
        now = time.time()
        with self.store.transaction() as cur:
            if reset:
                self.store.execute(cur, "DELETE FROM source_streams WHERE source = ?", (run.source,))
            for stream in set(cursors) | set(rows):
                count = rows.get(stream, 0)
                has_cursor = stream in cursors
                self.store.execute(
                    cur,
                    "INSERT INTO source_streams (source, stream, cursor, rows_total, last_rows, last_run_id, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, stream) DO UPDATE SET "
                    "cursor = CASE WHEN ? = 1 THEN excluded.cursor ELSE source_streams.cursor END, "
                    "rows_total = source_streams.rows_total + excluded.last_rows, last_rows = excluded.last_rows, "
                    "last_run_id = excluded.last_run_id, updated_at = excluded.updated_at",
                    (run.source, stream, json.dumps(cursors.get(stream)) if has_cursor else None, count, count,
                     run.id, now, 1 if has_cursor else 0),
                )
            self.store.execute(
                cur,
                "UPDATE source_runs SET finished_at = ?, status = ?, rows = ?, streams = ?, requests = ?, "
                "message = ?, resume_at = ? WHERE id = ?",
                (now, run.status, run.rows, json.dumps(run.streams), run.requests, run.message, run.resume_at,
                 run.id),
            )
            if events:
                self.store.append_events_in(cur, events)

    def fail_run(self, run: RunRecord) -> None:
        with self.store.transaction() as cur:
            self.store.execute(
                cur,
                "UPDATE source_runs SET finished_at = ?, status = ?, rows = 0, streams = ?, requests = ?, "
                "message = ?, resume_at = ? WHERE id = ?",
                (time.time(), run.status, json.dumps(run.streams), run.requests, run.message, run.resume_at, run.id),
            )
            if run.events:
                self.store.append_events_in(cur, run.events)

    def runs(self, source: str | None = None, limit: int = 20) -> list[RunRecord]:
        where, params = ("WHERE source = ?", [source]) if source else ("", [])
        rows = self.store.query(
            "SELECT id, source, started_at, finished_at, status, full_refresh, rows, streams, requests, message, "
            f"resume_at FROM source_runs {where} ORDER BY started_at DESC LIMIT ?", (*params, limit),
        )
        return [
            RunRecord(as_str(r[0], "source_runs.id"), as_str(r[1], "source_runs.source"),
                      as_float(r[2], "source_runs.started_at"), opt_float(r[3], "source_runs.finished_at"),
                      as_str(r[4], "source_runs.status"), bool(r[5]), as_int(r[6], "source_runs.rows"),
                      json.loads(opt_str(r[7], "source_runs.streams") or "{}"), as_int(r[8], "source_runs.requests"),
                      opt_str(r[9], "source_runs.message"), opt_float(r[10], "source_runs.resume_at"))
            for r in rows
        ]

    def last_run(self, source: str) -> RunRecord | None:
        runs = self.runs(source, 1)
        return runs[0] if runs else None

    def requests_today(self, source: str) -> int:
        rows = self.store.query("SELECT count FROM source_requests WHERE source = ? AND day = ?", (source, _day()))
        return as_int(rows[0][0], "source_requests.count") if rows else 0

    def add_requests(self, source: str, count: int) -> None:
        if count <= 0:
            return
        with self.store.transaction() as cur:
            self.store.execute(
                cur,
                "INSERT INTO source_requests (source, day, count) VALUES (?, ?, ?) ON CONFLICT (source, day) "
                "DO UPDATE SET count = source_requests.count + excluded.count",
                (source, _day(), count),
            )
