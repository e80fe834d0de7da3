"""The sync runner: plan (diff), the delete breaker, batching, pacing, retries, splitting, results, events.

``SyncRunner(app).run("crm_contacts")`` runs one sync to completion in the calling thread; the service
runs it in a worker thread from triggers, the CLI calls it directly.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from .._halt import Interrupted
from .._ids import new_id
from ..destinations import Destination, DestinationContext, RowOp, RowResult, get_destination
from ..errors import DeliveryError, OpsloopError, TerminalDeliveryError, TransientDeliveryError, WarehouseError
from ..narrow import as_int
from ..state import NewEvent
from ._status import QuotaExhausted, SyncStatus
from .diff import Enforcement, PlanColumns, SyncTables, ensure_tables
from .enforce import corrections, enforcement_for
from .project_files import LoadedSync, source_sql

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

    from ..app import App

log = logging.getLogger("opsloop.syncs")

MAX_ROW_EVENTS = 1000
"""At most this many ``sync.<name>.row_failed`` events per run (the rest are in ``row_results``)."""
SEND_RETRIES = 5
"""Attempts for a batch that fails transiently (429, 5xx, timeouts) within one run."""
PAGE = 5000

Progress = Callable[[int, int], None]


class SyncError(OpsloopError):
    """A sync cannot run as configured; the message says what to change."""


@dataclass
class RunResult:
    sync: str
    run_id: str
    status: str
    """ok, partial (some rows failed), failed, stopped (delete breaker), quota, dry_run, reset, interrupted
    (the server stopped; the next start runs it again)."""
    planned: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unconfirmed: int = 0
    corrected: int = 0
    """Rows sent to correct a losing value their system held (``sync.<name>.corrected`` has each field)."""
    error: str | None = None
    samples: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _opt_str(value: object) -> str | None:
    """A plan column that is text when set (``__fp``, ``__batch``, ``__dest_id``); None stays None."""
    return None if value is None else str(value)


def _jsonable(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID | bytes):
        return str(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class _Pacer:
    def __init__(self, per_second: float | None, time_scale: float) -> None:
        self.interval = (1.0 / per_second) if per_second else 0.0
        self.next_at = 0.0
        self.scale = time_scale

    def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if now < self.next_at:
            time.sleep(self.next_at - now)
        self.next_at = max(now, self.next_at) + self.interval


class SyncRunner:
    """Runs syncs of one App."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.status = SyncStatus(app.store)
        self._jinja: SandboxedEnvironment | None = None

    @property
    def syncs(self) -> dict[str, LoadedSync]:
        from .project_files import SYNCS

        return dict(SYNCS.of(self.app.project))

    def get(self, name: str) -> LoadedSync:
        sync = self.syncs.get(name)
        if sync is None:
            raise SyncError(f"no sync {name!r}; syncs: {', '.join(sorted(self.syncs)) or 'none (add syncs/*.yml)'}")
        return sync

    def context(self, name: str) -> DestinationContext:
        from ..channels import channels_of

        project = self.app.project
        return DestinationContext(sync=name, root=project.root, secret=project.secret,
                                  store=self.app.store, time_scale=self.app.settings.time_scale,
                                  channels_from=lambda: channels_of(project))

    # -- one run -----------------------------------------------------------------------------------
    def run(self, name: str, *, dry_run: bool = False, full: bool = False, confirm_deletes: bool = False,
            reset: bool = False, trigger: str = "manual", progress: Progress | None = None) -> RunResult:
        sync = self.get(name)
        started = time.time()
        run_id = new_id("run_")
        result = RunResult(name, run_id, "running")
        with self.app.halt.busy():
            if not (dry_run or reset):
                # owed from its start: a run cut off anywhere (a stop past its bound, a crash) runs again at start
                self.app.halt.owe(f"sync:{name}", announce=False)
            return self._run(sync, result, started, dry_run, full, confirm_deletes, reset, trigger, progress)

    def _run(self, sync: LoadedSync, result: RunResult, started: float, dry_run: bool, full: bool,
             confirm_deletes: bool, reset: bool, trigger: str, progress: Progress | None) -> RunResult:
        name = sync.config.name
        self.status.acquire(name)
        dest: Destination | None = None
        try:
            if not self.app.warehouse.RUNS_SYNCS:
                raise SyncError(
                    f"{sync.file}: syncs run on a DuckDB, Postgres, Snowflake or ClickHouse warehouse; this project's "
                    f"is {self.app.warehouse.dialect} (warehouse: in opsloop.yml), where syncs are not supported yet"
                )
            tables = SyncTables(self.app.warehouse, name)
            tables.ensure()
            self._interrupt_stale_runs(name)
            cls = get_destination(str(sync.config.destination["type"]))
            dest = cls(sync.destination, self.context(name))
            if not dry_run:
                result.unconfirmed = tables.settle_inflight(cls.IDEMPOTENT) if not cls.IDEMPOTENT else 0
                tables.fold()
            source = source_sql(self.app.project, sync, self.app.warehouse)
            columns = tables.columns(source)
            pc = tables.plan_columns(sync.specs, columns, sync.config.system)
            enforcement = enforcement_for(self.app.project, sync, columns, pc, self.app.warehouse)
            if reset:
                result.planned = {"reset": tables.reset(source, sync.config.key, pc)}
                result.status = "reset"
                return result
            if not dry_run:
                self._record_run_start(result, trigger, started)
            tables.build_plan(source, sync.config.key, pc, sync.config.mode, full, sync.config.max_retries,
                              enforcement)
            try:
                dupes = tables.duplicate_keys()
                if dupes:
                    raise SyncError(
                        f"{sync.file}:{sync.line('key')}: the key {sync.config.key!r} is not unique in the source "
                        f"(e.g. {', '.join(dupes)}); make it unique (deduplicate the model) and run again"
                    )
                result.planned = counts = tables.plan_counts()
                if sync.config.mode != "mirror":
                    counts["forget"] += counts.pop("delete")
                    counts["delete"] = 0
                if enforcement is not None:
                    counts["correct"] = tables.correction_count(enforcement)
                if dry_run:
                    result.samples = self._samples(sync, tables, pc, enforcement)
                    result.status = "dry_run"
                    return result
                if counts["delete"] and not confirm_deletes:
                    owned = max(tables.owned_count(), 1)
                    share = counts["delete"] / owned
                    if share > sync.config.max_delete_share:
                        result.status = "stopped"
                        result.error = (
                            f"this run would delete {counts['delete']} of the {owned} records opsloop created in "
                            f"{cls.type} ({share:.0%}, over max_delete_share {sync.config.max_delete_share:.0%}); "
                            f"nothing was sent. Check the source, then run `opsloop sync {name} --confirm-deletes`"
                        )
                        return result
                self._send_plan(sync, tables, pc, dest, result, progress, enforcement)
            finally:
                tables.drop_plan()
            tables.fold()
            result.status = "partial" if result.failed else "ok"
            return result
        except QuotaExhausted as exc:
            result.status, result.error = "quota", str(exc)
            return result
        except Interrupted as exc:
            # sent batches are journaled; the rest (and a batch in flight) go out when the next start runs it again
            result.status, result.error = "interrupted", str(exc)
            self.app.halt.interrupted(f"sync:{name}")
            return result
        except OpsloopError as exc:
            result.status, result.error = "failed", str(exc)
            return result
        finally:
            result.seconds = time.time() - started
            if dest is not None:
                dest.close()
            try:
                if result.status not in ("dry_run", "reset"):
                    self._finish(sync, result, started)
                if result.status not in ("dry_run", "reset", "interrupted"):
                    self.app.halt.settle(f"sync:{name}")
            finally:
                self.status.release(name)

    # -- sending -----------------------------------------------------------------------------------
    def _send_plan(self, sync: LoadedSync, tables: SyncTables, pc: PlanColumns, dest: Destination, result: RunResult,
                   progress: Progress | None, enforcement: Enforcement | None = None) -> None:
        cfg = sync.config
        total = sum(v for k, v in result.planned.items() if k != "correct")
        done = 0
        batch_size = cfg.batch_size or min(100, dest.MAX_BATCH)
        pacer = _Pacer(cfg.rate_limit.per_second or dest.REQUESTS_PER_SECOND, self.app.settings.time_scale)
        emitted = 0
        pending: dict[str, list[tuple[RowOp, str | None, str]]] = {}
        pending_batch: dict[str, str | None] = {}
        carry: list[dict[str, object]] = []
        """Finished rows not yet journaled: written in the same commit as the next batch's ``sending`` marks
        (one warehouse commit per batch). A crash loses at most their results; their rows count as in flight."""
        fixes: dict[str, list[dict[str, object]]] = {}
        """Key -> the ``sync.<name>.corrected`` payloads of a row that corrects its system, emitted once sent."""

        def flush(kind: str) -> None:
            nonlocal done, emitted
            self.app.halt.check(f"the sync {cfg.name!r}")  # a safe point: between batches
            items = pending.pop(kind, [])
            pending_batch.pop(kind, None)
            if not items:
                return
            ops = [op for op, _, _ in items]
            fps = {op.key: fp for op, _, fp in items}
            batch_id = items[0][1] or _batch_id(cfg.name, ops)
            now = dt.datetime.now(dt.UTC)
            tables.journal([*carry, *(
                {"sync": cfg.name, "run_id": result.run_id, "batch_id": batch_id, "key": op.key, "fp": fps[op.key],
                 "op": op.op, "status": "sending", "recorded_at": now} for op in ops
            )])
            carry.clear()
            try:
                results = self._deliver(dest, ops, pacer, cfg.rate_limit.per_day, str(cfg.destination["type"]))
            except QuotaExhausted:
                tables.journal([{"sync": cfg.name, "run_id": result.run_id, "batch_id": batch_id, "key": op.key,
                                 "fp": fps[op.key], "op": op.op, "status": "cancelled",
                                 "recorded_at": dt.datetime.now(dt.UTC)} for op in ops])
                raise
            by_key = {r.key: r for r in results}
            rows: list[dict[str, object]] = []
            failures: list[NewEvent] = []
            fixed: list[NewEvent] = []
            now = dt.datetime.now(dt.UTC)
            for op in ops:
                r = by_key.get(op.key) or RowResult(op.key, False, "the destination returned no result for this row")
                status = ("deleted" if op.op == "delete" else "ok") if r.ok else "failed"
                rows.append({"sync": cfg.name, "run_id": result.run_id, "batch_id": batch_id, "key": op.key,
                             "fp": fps[op.key], "op": op.op, "status": status, "error": r.error,
                             "dest_id": r.dest_id, "created": r.created, "recorded_at": now})
                if r.ok:
                    result.sent += 1
                    if op.key in fixes:
                        result.corrected += 1
                        fixed += [self._event(f"sync.{cfg.name}.corrected", {**p, "run_id": result.run_id},
                                              related=result.run_id) for p in fixes[op.key]]
                else:
                    result.failed += 1
                    if emitted < MAX_ROW_EVENTS:
                        emitted += 1
                        failures.append(self._event(
                            f"sync.{cfg.name}.row_failed",
                            {"sync": cfg.name, "run_id": result.run_id, "key": op.key, "op": op.op,
                             "error": r.error, "transient": r.transient}, related=result.run_id))
            for op in ops:
                fixes.pop(op.key, None)
            carry.extend(rows)
            self._emit([*fixed, *failures])
            done += len(ops)
            if progress:
                progress(done, total)

        def skipped(count: int) -> None:
            nonlocal done
            done += count

        def correcting(row: dict[str, object], op: RowOp) -> None:
            found = corrections(sync, enforcement, pc, row, _jsonable) if enforcement is not None else []
            if found:
                fixes[op.key] = found
                # not the key of the delivery this corrects (a destination may drop a repeated key)
                op.idempotency_key = _idem(cfg.name, op.key, f"{row['__fp']}|corrects|"
                                           + json.dumps([[f["field"], f["old"]] for f in found], default=str))

        try:
            self._pages(sync, tables, pc, result, pending, pending_batch, batch_size, flush, carry, skipped,
                        correcting)
        finally:
            tables.journal(carry)

    def _pages(self, sync: LoadedSync, tables: SyncTables, pc: PlanColumns, result: RunResult,
               pending: dict[str, list[tuple[RowOp, str | None, str]]], pending_batch: dict[str, str | None],
               batch_size: int, flush: Callable[[str], None], carry: list[dict[str, object]],
               skipped: Callable[[int], None], correcting: Callable[[dict[str, object], RowOp], None]) -> None:
        cfg = sync.config
        after = 0
        while True:
            page = tables.plan_page(after, PAGE)
            if not page:
                break
            after = as_int(page[-1]["__n"])
            direct: list[dict[str, object]] = []
            for row in page:
                op, fp, note = self._row_op(sync, pc, row)
                if op is None:
                    direct.append({"sync": cfg.name, "run_id": result.run_id, "key": row["__key"], "fp": fp,
                                   "op": "none", "status": note, "recorded_at": dt.datetime.now(dt.UTC)})
                    result.skipped += 1
                    continue
                kind = "delete" if op.op == "delete" else "write"
                if kind == "write":
                    correcting(row, op)
                batch = _opt_str(row.get("__batch"))
                if kind in pending and (pending_batch.get(kind) != batch or len(pending[kind]) >= batch_size):
                    flush(kind)
                pending.setdefault(kind, []).append((op, batch, fp or ""))
                pending_batch[kind] = batch
            if direct:
                carry.extend(direct)
                skipped(len(direct))
            for kind in list(pending):
                if len(pending[kind]) >= batch_size:
                    flush(kind)
        for kind in list(pending):
            flush(kind)

    def _row_op(self, sync: LoadedSync, pc: PlanColumns,
                row: dict[str, object]) -> tuple[RowOp | None, str | None, str]:
        cfg = sync.config
        key = str(row["__key"])
        fp = _opt_str(row["__fp"])
        dest_id = _opt_str(row["__dest_id"])
        if row["__op"] == "delete":
            if cfg.mode == "mirror" and row["__created"]:
                return RowOp(key, "delete", {}, _idem(cfg.name, key, "delete"), dest_id=dest_id), None, ""
            return None, None, "forgotten"
        fields: dict[str, object] = {}
        for i, spec in enumerate(pc.specs):
            if i in pc.origin_cols and cfg.system and row[pc.origin_cols[i]] == cfg.system:
                continue
            if spec.kind == "jinja":
                value: object = self._render(spec.source, {col: row[alias] for col, alias in pc.jinja_cols[i]})
            else:
                value = row[pc.value_cols[i]]
            if value is None and cfg.null_policy == "skip":
                continue
            fields[spec.name] = _jsonable(value)
        new = row["__op"] == "create"
        if not fields and not new:
            return None, fp, "skipped"
        mode_op = {"upsert": "upsert", "mirror": "upsert", "update": "update", "insert": "insert"}[cfg.mode]
        return RowOp(key, mode_op, fields, _idem(cfg.name, key, fp), dest_id=dest_id, new=new), fp, ""  # type: ignore[arg-type]

    def _render(self, template: str, variables: dict[str, object]) -> str:
        if self._jinja is None:
            from jinja2.sandbox import SandboxedEnvironment

            self._jinja = SandboxedEnvironment()
        return str(self._jinja.from_string(template).render(**variables))

    def _deliver(self, dest: Destination, batch: list[RowOp], pacer: _Pacer, per_day: int | None,
                 quota_key: str) -> list[RowResult]:
        attempt = 0
        while True:
            pacer.wait()
            if per_day:
                self.status.take_quota(quota_key, per_day)
            try:
                return dest.send(batch)
            except TransientDeliveryError as exc:
                attempt += 1
                if attempt >= SEND_RETRIES:
                    return [RowResult(r.key, False, str(exc), transient=True) for r in batch]
                wait = exc.retry_after if exc.retry_after is not None else min(2.0 ** attempt, 60.0)
                log.info("%s: %s; retrying in %.1fs", dest.ctx.sync, exc, wait)
                self.app.halt.sleep(wait * self.app.settings.time_scale, f"the sync {dest.ctx.sync!r}")
            except (TerminalDeliveryError, DeliveryError) as exc:
                if len(batch) == 1 or (isinstance(exc, TerminalDeliveryError) and exc.every_request):
                    return [RowResult(r.key, False, str(exc)) for r in batch]
                mid = len(batch) // 2
                return [*self._deliver(dest, batch[:mid], pacer, per_day, quota_key),
                        *self._deliver(dest, batch[mid:], pacer, per_day, quota_key)]

    # -- results -----------------------------------------------------------------------------------
    def _samples(self, sync: LoadedSync, tables: SyncTables, pc: PlanColumns,
                 enforcement: Enforcement | None = None) -> dict[str, list[dict[str, object]]]:
        out: dict[str, list[dict[str, object]]] = {}
        if enforcement is not None:
            out["correct"] = []
            for row in tables.correction_sample(enforcement, 5):
                row_op, _, _ = self._row_op(sync, pc, row)
                out["correct"].append({"key": row["__key"], "fields": row_op.fields if row_op else {},
                                       "corrects": corrections(sync, enforcement, pc, row, _jsonable)})
        for label, op, created in (("create", "create", None), ("update", "update", None),
                                   ("delete", "delete", True)):
            if label == "delete" and sync.config.mode != "mirror":
                continue
            rows = []
            for row in tables.plan_sample(op, created, 5):
                row_op, _, _ = self._row_op(sync, pc, row)
                rows.append({"key": row["__key"], "fields": row_op.fields if row_op else {}})
            out[label] = rows
        return out

    def _event(self, name: str, payload: dict[str, object], related: str | None = None) -> NewEvent:
        return NewEvent(id=new_id("evt_"), name=name, received_at=time.time(), payload=payload, source="sync",
                        related_id=related, expires_at=time.time() + self.app.settings.retention_days * 86400.0)

    def _emit(self, events: list[NewEvent]) -> None:
        if events:
            self.app.store.append_events(events)
            self.app.bus.notify()

    def _interrupt_stale_runs(self, name: str) -> None:
        wh = self.app.warehouse
        wh.execute(wh.portable("UPDATE opsloop_sync.runs SET status = 'interrupted', finished_at = now() "
                               "WHERE sync = ? AND status = 'running'"), (name,))

    def _record_run_start(self, result: RunResult, trigger: str, started: float) -> None:
        wh = self.app.warehouse
        wh.execute(wh.portable("INSERT INTO opsloop_sync.runs (run_id, sync, trigger, started_at, status) "
                               "VALUES (?, ?, ?, to_timestamp(?), 'running')"),
                   (result.run_id, result.sync, trigger, started))

    def _record_run_end(self, result: RunResult, started: float) -> None:
        p = result.planned
        wh = self.app.warehouse
        ensure_tables(wh)
        wh.execute(wh.portable(
            "INSERT INTO opsloop_sync.runs (run_id, sync, trigger, started_at, status) "
            "SELECT ?, ?, 'manual', to_timestamp(?), 'running' WHERE NOT EXISTS "
            "(SELECT 1 FROM opsloop_sync.runs WHERE run_id = ?)"),
            (result.run_id, result.sync, started, result.run_id),
        )
        wh.execute(wh.portable(
            "UPDATE opsloop_sync.runs SET finished_at = now(), status = ?, planned_creates = ?, "
            "planned_updates = ?, planned_deletes = ?, sent = ?, failed = ?, skipped = ?, unconfirmed = ?, "
            "error = ? WHERE run_id = ?"),
            (result.status, p.get("create", 0), p.get("update", 0), p.get("delete", 0), result.sent,
             result.failed, result.skipped, result.unconfirmed, result.error, result.run_id),
        )

    def _finish(self, sync: LoadedSync, result: RunResult, started: float) -> None:
        wh = self.app.warehouse
        try:
            if wh.RUNS_SYNCS:
                self._record_run_end(result, started)
        except WarehouseError as exc:
            # the warehouse itself is what failed (unreachable): the event, the health and the alert still go out
            log.warning("sync %s: run %s not recorded in opsloop_sync.runs: %s", result.sync, result.run_id, exc)
        payload = {k: v for k, v in result.as_dict().items() if k != "samples"}
        self._emit([self._event(f"sync.{result.sync}.completed", payload, related=result.run_id)])
        health = {"ok": "healthy", "partial": "failing", "failed": "failing"}.get(result.status)
        previous = self.status.record_run(result.sync, result.run_id, result.status, health)
        if health and previous != health and (health == "failing" or previous == "failing"):
            from .alerts import send_alert

            send_alert(self, sync, result, health)


def _idem(sync: str, key: str, fp: str | None) -> str:
    return hashlib.md5(f"{sync}|{key}|{fp}".encode(), usedforsecurity=False).hexdigest()


def _batch_id(sync: str, ops: list[RowOp]) -> str:
    text = json.dumps([sync, sorted(o.idempotency_key for o in ops)])
    return "b_" + hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
