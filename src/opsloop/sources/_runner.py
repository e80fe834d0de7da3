"""One pull of one source: connector pages -> Arrow -> dlt (extract, normalize, load) -> commit cursors.

Order of commits, so a crash at any point neither skips nor duplicates records:

1. dlt loads every page of the run into the warehouse (merge by primary key, in dlt's load step);
2. then one state-store transaction writes the streams' new cursors, the run's outcome and the change
   events. A crash before (2) leaves the old cursors: the next run reads those pages again and the merge
   makes the second copy replace the first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from .._halt import Interrupted
from .._ids import new_id
from ..state import NewEvent
from ._arrow import json_columns, records_to_arrow
from ._drift import DLT_TYPES, DriftNote, field_kind, reconcile
from ._errors import QuotaExhausted, SourceError
from ._http import Budget
from ._state import RunRecord, SourceState
from ._target import LoadTarget, load_target
from .connectors import Connector, PullContext, Stream, make_connector
from .project_files import SOURCES

if TYPE_CHECKING:
    from dlt.extract.resource import DltResource

    from ..app import App

log = logging.getLogger("opsloop.sources")

StreamStatus = Literal["running", "loading", "done", "partial", "failed"]


@dataclass(frozen=True)
class StreamProgress:
    """What a pull tells its ``progress`` callback about one stream: after each page it read (``running``),
    when its pages are being loaded into the warehouse (``loading``) and at its end (``done``, ``partial``
    after a quota stop, ``failed``)."""

    stream: str
    status: StreamStatus
    rows: int
    """Records read so far."""
    pages: int
    """Pages (API responses, file chunks) read so far."""


Progress = Callable[[StreamProgress], None]
"""``pull(..., progress=callback)``: ``callback(StreamProgress(...))``, called on the pulling thread."""


@dataclass
class PullResult:
    run: RunRecord
    drift: list[str] = field(default_factory=list)
    events: int = 0

    @property
    def status(self) -> str:
        return self.run.status


def _configure_dlt() -> None:
    """dlt reads these at import: call before the first ``import dlt``."""
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("DATA_WRITER__ARROW_CONCAT_PROMOTE_OPTIONS", "default")
    os.environ.setdefault("EXTRACT__NEXT_ITEM_MODE", "fifo")


def _resource(pages: Iterator[object], **hints: Any) -> DltResource:
    """``dlt.resource`` over a stream's pages. The hints are what a ``Stream`` says (``primary_key`` None when
    it has none, ``write_disposition`` as the source's YAML wrote it): dlt checks them at run time, while its
    type hints admit neither None nor an unchecked string."""
    import dlt

    resource: DltResource = dlt.resource(pages, **hints)
    return resource


class _StreamRun:
    def __init__(self, stream: Stream, table: str, cursor: object) -> None:
        self.stream = stream
        self.table = table
        self.cursor = cursor
        self.new_cursor: object = None
        self.cursor_moved = False
        self.rows = 0
        self.pages = 0
        self.status: StreamStatus = "running"
        self.json_columns: set[str] = set()
        self.changes: int | None = None
        """Records created, updated or deleted by this run, when the run compared them with the stored rows
        (an incremental run with events on); None when it did not, or stopped counting at the event cap."""


class Puller:
    """Runs one pull. Use ``pull(app, name)``."""

    def __init__(self, app: App, name: str, full_refresh: bool = False, progress: Progress | None = None) -> None:
        sources = SOURCES.of(app.project)
        if name not in sources:
            known = ", ".join(sorted(sources)) or "none (add sources/<name>.yml)"
            raise SourceError(f"no source named {name!r}; sources: {known}")
        self.app = app
        self.config = sources[name]
        self.name = name
        self.full_refresh = full_refresh
        self.progress = progress
        self.state = SourceState(app.store)
        self.events: list[NewEvent] = []
        self.drift: list[DriftNote] = []
        self.widened: dict[str, dict[str, str]] = {}
        self.quota: QuotaExhausted | None = None
        self.error: BaseException | None = None
        self.runs: dict[str, _StreamRun] = {}
        self.target: LoadTarget | None = None

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> PullResult:
        with self.app.halt.busy(), _pull_lock(self.app.project.root / "state" / "dlt", self.name):
            # owed from its start: a pull cut off anywhere (a stop past its bound, a crash) runs again at start
            self.app.halt.owe(f"pull:{self.name}", {"full_refresh": self.full_refresh}, announce=False)
            return self._run()

    def _run(self) -> PullResult:
        config = self.config
        run = RunRecord(new_id("run_"), self.name, time.time(), None, "running", self.full_refresh, 0)
        self.state.start_run(run.id, self.name, self.full_refresh)
        budget = Budget(self.state.requests_today(self.name), config.max_requests_per_day)
        ctx = PullContext(
            source=self.name, project_root=self.app.project.root, env=self.app.project.env, budget=budget,
            full_refresh=self.full_refresh, lag=config.effective_lag, retry_attempts=config.retry_attempts,
            max_retry_delay=config.max_retry_delay,
        )
        try:
            connector = make_connector(config, ctx)
            try:
                self._extract_and_load(connector)
            finally:
                connector.close()
                if self.target is not None:
                    self.target.close()
        except Exception as exc:
            run.status = "failed"
            run.requests = budget.count
            run.message = str(exc) if isinstance(exc, SourceError | Interrupted) else f"{type(exc).__name__}: {exc}"
            run.streams = {s.stream.name: {"rows": 0, "status": "failed"} for s in self.runs.values()}
            run.events = [] if isinstance(exc, Interrupted) else [  # a stop is not the source's failure
                self._event(f"source.{self.name}.failed", {"source": self.name, "run_id": run.id,
                                                            "error": run.message})]
            for stream_run in self.runs.values():
                self._report(stream_run, "failed")
            self.state.add_requests(self.name, budget.count)
            if not isinstance(exc, Interrupted):  # a failed pull ran; one a stop interrupted stays owed
                self.app.halt.settle(f"pull:{self.name}")
            else:
                self.app.halt.interrupted(f"pull:{self.name}")
            self.state.fail_run(run)
            self.app.bus.notify()
            if isinstance(exc, SourceError | Interrupted):
                raise
            raise SourceError(f"source {self.name!r} failed: {run.message}") from exc
        run.requests = budget.count
        run.rows = sum(s.rows for s in self.runs.values())
        run.streams = {
            s.stream.name: {"rows": s.rows, "status": s.status, "table": f"{config.schema_name}.{s.table}"}
            for s in self.runs.values()
        }
        if self.quota is not None:
            run.status = "partial"
            run.resume_at = self.quota.resume_at
            run.message = f"{self.quota}; resumes at {_iso(self.quota.resume_at)}"
        else:
            run.status = "succeeded"
        if ctx.warnings or self.drift:
            notes = "; ".join([*ctx.warnings, *(str(d) for d in self.drift)])
            run.message = f"{run.message}; {notes}" if run.message else notes
        if run.rows:
            self.events.append(self._event(f"source.{self.name}.loaded", {
                "source": self.name, "run_id": run.id, "status": run.status, "rows": run.rows,
                "streams": {k: v["rows"] for k, v in run.streams.items()},
                "tables": {k: v["table"] for k, v in run.streams.items()},
                # the tables whose rows this run compared and found unchanged (re-read in the lag window)
                "unchanged": sorted(f"{config.schema_name}.{s.table}" for s in self.runs.values() if s.changes == 0),
            }))
        cursors = {s.stream.name: s.new_cursor for s in self.runs.values() if s.cursor_moved}
        rows = {s.stream.name: s.rows for s in self.runs.values()}
        self.state.add_requests(self.name, budget.count)
        run.finished_at = time.time()
        self.state.finish_run(run, cursors, rows, self.events, reset=self.full_refresh)
        self.app.bus.notify()
        self.app.halt.settle(f"pull:{self.name}")
        return PullResult(run, [str(d) for d in self.drift], len(self.events))

    def _extract_and_load(self, connector: Connector) -> None:
        _configure_dlt()
        import dlt
        from dlt.common.normalizers.naming.snake_case import NamingConvention

        self.target = target = load_target(self.app.warehouse, self.name)
        config = self.config
        self.dataset = config.schema_name
        pipelines_dir = self.app.project.root / "state" / "dlt"
        pipeline = dlt.pipeline(
            pipeline_name=f"opsloop_{self.name}", destination=target.destination(),
            dataset_name=self.dataset, pipelines_dir=str(pipelines_dir),
        )
        logging.getLogger("dlt").setLevel(logging.ERROR)
        if pipeline.has_pending_data:
            # a package from a run that crashed: its cursors were never committed, so this run reads the
            # same records again; the old package would only repeat them
            pipeline.abort_packages()
        # dlt's snake_case naming: the same column names dlt gives the tables
        normalize = NamingConvention().normalize_identifier
        self.normalize = normalize
        known = {} if self.full_refresh else self.state.streams(self.name)
        resources = []
        for stream in connector.streams():
            previous = known.get(stream.name)
            table = normalize(stream.name)
            stream_run = _StreamRun(stream, table, previous.cursor if previous else None)
            self.runs[stream.name] = stream_run
            resources.append(
                _resource(
                    self._pages(connector, stream_run), name=table, table_name=table,
                    primary_key=[normalize(k) for k in stream.primary_key] if stream.primary_key else None,
                    write_disposition=stream.write_disposition if stream.primary_key else (
                        "append" if stream.write_disposition == "merge" else stream.write_disposition),
                )
            )
        try:
            pipeline.extract(resources, refresh="drop_resources" if self.full_refresh else None)
        except Exception as exc:
            if pipeline.has_pending_data:
                pipeline.abort_packages()
            raise _unwrap(exc) from exc
        if self.error is not None:
            if pipeline.has_pending_data:
                pipeline.abort_packages()
            raise self.error
        if self.widened:
            schema = pipeline.default_schema
            for table, columns in self.widened.items():
                for column, kind in columns.items():
                    if table in schema.tables and column in schema.tables[table]["columns"]:
                        schema.tables[table]["columns"][column]["data_type"] = DLT_TYPES[kind]
            schema._bump_version()
            pipeline.schemas.save_schema(schema)
        for stream_run in self.runs.values():
            if stream_run.status == "running":
                self._report(stream_run, "loading")
        try:
            pipeline.normalize()
            pipeline.load()
        except Exception as exc:
            raise _unwrap(exc) from exc
        for stream_run in self.runs.values():
            if stream_run.status == "running":
                stream_run.status = "done"
            self._report(stream_run, stream_run.status)

    # -- pages --------------------------------------------------------------------------------
    def _pages(self, connector: Connector, sr: _StreamRun) -> Iterator[object]:
        """The stream's pages as Arrow tables (with dlt's column hints where JSON is text) for ``dlt.resource``."""
        stream = sr.stream
        existing = self._describe(sr.table)
        known = dict(existing)
        first_load = self.full_refresh or sr.cursor is None or not existing
        emit = self.config.emit_events and not first_load and bool(stream.primary_key)
        sr.changes = 0 if emit else None
        if self.quota is not None or self.error is not None:
            sr.status = "partial" if self.quota is not None else "failed"
            self._report(sr, sr.status)
            return
        self._report(sr, "running")
        batch: list[pa.Table] = []
        batched = 0
        batch_json: set[str] = set()
        try:
            for page in connector.read(stream, sr.cursor):
                if self.app.halt.tripped:  # a safe point: nothing of this run is loaded or committed yet
                    self.error = Interrupted(f"the pull of {self.name!r} was interrupted because opsloop is "
                                             "stopping; it runs again at the next start")
                if self.quota is not None or self.error is not None:
                    sr.status = "partial" if self.quota is not None else "failed"
                    break
                table = page.records if isinstance(page.records, pa.Table) else records_to_arrow(page.records)
                text_json = {self.normalize(c) for c in json_columns(table)}
                table = table.rename_columns([self.normalize(c) for c in table.column_names])
                if table.num_rows:
                    # align with the warehouse table, and with earlier pages of this run (dlt buffers them
                    # together, so one stream's pages must agree on every column's type)
                    table, widen_to, notes = reconcile(table, sr.table, known)
                    in_warehouse = {c: k for c, k in widen_to.items() if c in existing}
                    if in_warehouse:
                        sr.changes = None  # the stored column's type changed: the table did
                        self._widen(sr.table, in_warehouse)
                        existing.update(in_warehouse)
                        self.widened.setdefault(sr.table, {}).update(in_warehouse)
                    known.update(widen_to)
                    for field in table.schema:
                        kind = "JSON" if field.name in text_json else field_kind(field)
                        if field.name not in known and kind is not None:
                            known[field.name] = kind
                    self.drift.extend(n for n in notes if str(n) not in {str(d) for d in self.drift})
                sr.json_columns.update(c for c, k in known.items() if k == "JSON")
                if emit and table.num_rows:
                    self._diff(sr, table, set(page.deleted))
                if emit and page.deleted:
                    self._deleted(sr, page.deleted)
                if page.cursor is not None:
                    sr.new_cursor = page.cursor
                    sr.cursor_moved = True
                sr.rows += table.num_rows
                sr.pages += 1
                self._report(sr, "running")
                if table.num_rows:
                    batch.append(table)
                    batched += table.num_rows
                    batch_json.update(c for c in text_json if c in table.column_names)
                if batched >= BATCH_ROWS:
                    yield self._hinted(_concat(batch), batch_json)
                    batch, batched, batch_json = [], 0, set()
        except QuotaExhausted as exc:
            self.quota = exc
            sr.status = "partial"
        except Exception as exc:
            self.error = exc
            sr.status = "failed"
        if batch and self.error is None:
            # pages read before a quota stop are loaded: their cursor is committed with them
            yield self._hinted(_concat(batch), batch_json)

    def _report(self, sr: _StreamRun, status: StreamStatus) -> None:
        if self.progress is not None:
            self.progress(StreamProgress(sr.stream.name, status, sr.rows, sr.pages))

    def _hinted(self, table: pa.Table, text_json: set[str]) -> object:
        """JSON-text columns land as DuckDB ``JSON`` (as nested Arrow columns would)."""
        if not text_json:
            return table
        import dlt

        hints = dlt.mark.make_hints(columns={c: {"name": c, "data_type": "json"} for c in text_json})
        return dlt.mark.with_hints(table, hints)

    def _describe(self, table: str) -> dict[str, str]:
        assert self.target is not None
        return self.target.describe(self.dataset, table)

    def _widen(self, table: str, columns: dict[str, str]) -> None:
        assert self.target is not None
        for schema in (self.dataset, f"{self.dataset}_staging"):
            self.target.widen(schema, table, columns)

    # -- change events ------------------------------------------------------------------------
    def _event_name(self, stream: Stream, action: str) -> str:
        noun = stream.noun or stream.name
        prefix = self.config.type if self.config.type in ("hubspot", "stripe", "salesforce", "zendesk") \
            else self.name
        return f"{prefix}.{noun}.{action}"

    def _event(self, name: str, payload: object) -> NewEvent:
        return NewEvent(id=new_id("evt_"), name=name, received_at=time.time(), payload=payload,
                        source=f"source:{self.name}",
                        expires_at=time.time() + self.app.settings.retention_days * 86400.0)

    def _room(self) -> bool:
        return len(self.events) < int(self.config.max_record_events)

    def _diff(self, sr: _StreamRun, table: pa.Table, deleted: set[str]) -> None:
        keys = [self.normalize(k) for k in sr.stream.primary_key or []]
        if any(k not in table.column_names for k in keys):
            sr.changes = None
            return
        assert self.target is not None
        old_rows = self.target.old_rows(self.dataset, sr.table, keys, table)
        id_field = self.normalize(sr.stream.id_field) if sr.stream.id_field else keys[0]
        for record in table.to_pylist():
            if not self._room():
                sr.changes = None  # past the cap: not compared
                return
            key = tuple(record.get(k) for k in keys)
            if str(record.get(id_field)) in deleted:
                continue  # reported as .deleted
            old = old_rows.get(key)
            base = {"source": self.name, "stream": sr.stream.name, "id": record.get(id_field)}
            if old is None:
                self.events.append(self._event(self._event_name(sr.stream, "created"),
                                               {**base, "record": _jsonable(record)}))
                sr.changes = None if sr.changes is None else sr.changes + 1
                continue
            changed: dict[str, object] = {}
            for column, new in record.items():
                if column.startswith("_dlt_") or column not in old:
                    if column not in old and new is not None and not column.startswith("_dlt_"):
                        changed[column] = {"old": None, "new": _jsonable(new)}
                    continue
                before = old[column]
                if column in sr.json_columns or isinstance(new, list | dict) or isinstance(before, list | dict):
                    # JSON is text in DuckDB and in the page, parsed values from Postgres' jsonb
                    before, new = _parsed(before), _parsed(new)
                if _jsonable(before) != _jsonable(new) and not (_blank(before) and _blank(new)):
                    changed[column] = {"old": _jsonable(before), "new": _jsonable(new)}
            if changed:
                self.events.append(self._event(self._event_name(sr.stream, "updated"), {**base, "changed": changed}))
                sr.changes = None if sr.changes is None else sr.changes + 1

    def _deleted(self, sr: _StreamRun, ids: list[str]) -> None:
        for record_id in ids:
            if not self._room():
                sr.changes = None
                return
            sr.changes = None if sr.changes is None else sr.changes + 1
            self.events.append(self._event(self._event_name(sr.stream, "deleted"),
                                           {"source": self.name, "stream": sr.stream.name, "id": record_id}))


@contextlib.contextmanager
def _pull_lock(folder: Path, name: str) -> Iterator[None]:
    """One pull of a source at a time on this machine: dlt's working folder for it is shared, and a second
    pull would abort the first one's pending load package. (Inside `opsloop up` pulls already queue.)"""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"opsloop_{name}.lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SourceError(
                f"source {name!r} is being pulled by another process on this machine (`opsloop up` or "
                "another `opsloop pull`); run it again when that pull has finished"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _parsed(value: object) -> object:
    import json

    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if value is not None and not isinstance(value, str | int | float | bool):
        return str(value)
    return value


BATCH_ROWS = 50_000
"""Pages are handed to dlt in Arrow batches of about this many rows (fewer, larger parquet writes)."""


def _concat(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def _blank(value: object) -> bool:
    return value is None or value == [] or value == {} or value == ""


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _unwrap(exc: BaseException) -> BaseException:
    """dlt wraps errors raised inside our generators; hand back the SourceError a user should see."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SourceError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def pull(app: App, name: str, full_refresh: bool = False, progress: Progress | None = None) -> PullResult:
    """Pull one source into the warehouse; returns the run's outcome (raises ``SourceError`` on failure)."""
    return Puller(app, name, full_refresh, progress).run()
