"""``App``: one opsloop instance, owning its stores, registries and background work.

No process-global state: two Apps can live in one process (the tests do this).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Unpack, cast

from ._halt import Halt
from ._ids import new_id
from ._subsystems import load_project, service_attachers
from .errors import OpsloopError
from .events.bodies import DEFAULT_MAX_DEPTH, BodyRefused, parse_body
from .events.committer import GroupCommitter
from .events.log import Consumer, EventBus
from .project import Project
from .settings import Settings, SettingsOverrides, resolve_settings
from .state import EventRecord, NewEvent, StateStore, open_store
from .warehouse import Warehouse, open_warehouse

if TYPE_CHECKING:  # the inbox (and jsonschema) is imported when first used, as is the raw.events loader
    from .events.inbox import Inbox
    from .identity.service import IdentityService
    from .metrics.alerts import AlertRunner
    from .metrics.service import MetricsService
    from .models.service import ModelService
    from .sources.service import SourceScheduler
    from .syncs.service import SyncService
    from .workflows.engine import Engine


log = logging.getLogger("opsloop")

Job = Callable[[], Coroutine[object, object, None]]
"""A background job: a coroutine function the app starts with its workers and cancels at stop."""

EventHandler = Callable[[EventRecord], Awaitable[None]]


class ReplayError(OpsloopError):
    """An event cannot be replayed; the message says why and what to do."""


class App:
    """One running opsloop: ``App(project, settings)``; ``await app.start()`` ... ``await app.stop()``.

    ``services=False`` attaches no subsystem (no ``app.services``, handlers or background jobs): an App for
    one job in this process that needs only the stores, the warehouse and the bus, such as `opsloop pull`.
    """

    def __init__(self, project: Project, settings: Settings | None = None, *, services: bool = True) -> None:
        self.project = project
        self.settings = settings or resolve_settings(project)
        self._store: StateStore | None = None
        self._warehouse: Warehouse | None = None
        self.bus = EventBus()
        self.handlers: list[tuple[str, EventHandler]] = []
        self.background: list[Job] = []
        """Coroutine factories started as tasks by ``start()`` and cancelled by ``stop()``."""
        self.on_start: list[Callable[[], Awaitable[None]]] = []
        """Awaited at the end of ``start()``, in order."""
        self.on_stop: list[Callable[[], Awaitable[None]]] = []
        """Awaited at the start of ``stop()``, in reverse order."""
        self.on_raw_loaded: list[Callable[[list[EventRecord]], Awaitable[None]]] = []
        """Awaited after each batch of events lands in the warehouse's ``raw.events`` (reactive models)."""
        self.services: dict[str, object] = {}
        """Subsystem objects by name (``app.services["workflows"]``)."""
        for attach in service_attachers() if services else ():
            attach(self)
        self._committer: GroupCommitter | None = None
        self._inbox: Inbox | None = None
        self._consumers: list[Consumer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._bg_tasks: list[asyncio.Task[None]] = []
        self._leading: set[str] = set()
        self.started = False
        self.stopping = asyncio.Event()
        """Set when the server begins to stop (before it drains requests): long-lived responses such as
        the dashboards' server push end on it instead of holding the shutdown."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.halt = Halt(project.root / "state" / "owed.json")
        """Tripped when the stop begins: long warehouse jobs (identity builds, pulls, model builds, syncs)
        stop at their next safe point, roll back, and are owed to the next start (see ``_halt.py``)."""

    @classmethod
    def from_path(cls, root: Path | str, **overrides: Unpack[SettingsOverrides]) -> App:
        project = load_project(root)
        return cls(project, resolve_settings(project, overrides))

    # -- the subsystems, typed ---------------------------------------------------------------
    def _service(self, name: str) -> object:
        found = self.services.get(name)
        if found is None:
            raise OpsloopError(f"this opsloop App has no {name} service (it was made with services=False)")
        return found

    @property
    def workflows(self) -> Engine:
        """The workflow engine (``opsloop.workflows.engine.Engine``)."""
        return cast("Engine", self._service("workflows"))

    @property
    def models(self) -> ModelService:
        """Builds, the model catalog and reactive rebuilds (``opsloop.models.service.ModelService``)."""
        return cast("ModelService", self._service("models"))

    @property
    def sources(self) -> SourceScheduler:
        """Scheduled pulls (``opsloop.sources.service.SourceScheduler``)."""
        return cast("SourceScheduler", self._service("sources"))

    @property
    def syncs(self) -> SyncService:
        """Reverse-ETL runs (``opsloop.syncs.service.SyncService``)."""
        return cast("SyncService", self._service("syncs"))

    @property
    def identity(self) -> IdentityService:
        """Identity resolution and segments (``opsloop.identity.service.IdentityService``)."""
        return cast("IdentityService", self._service("identity"))

    @property
    def metrics(self) -> MetricsService:
        """Metric queries and dashboards (``opsloop.metrics.service.MetricsService``)."""
        return cast("MetricsService", self._service("metrics"))

    @property
    def metrics_alerts(self) -> AlertRunner:
        """The dashboards' threshold alerts (``opsloop.metrics.alerts.AlertRunner``)."""
        return cast("AlertRunner", self._service("metrics_alerts"))

    # -- owned resources ---------------------------------------------------------------------
    @property
    def store(self) -> StateStore:
        if self._store is None:
            self._store = open_store(self.settings.state_url, self.project.root, self.settings.fsync_on_commit)
        return self._store

    @property
    def warehouse(self) -> Warehouse:
        if self._warehouse is None:
            self._warehouse = open_warehouse(self.settings.warehouse, self.project.root)
        return self._warehouse

    @property
    def committer(self) -> GroupCommitter:
        if self._committer is None:
            self._committer = GroupCommitter(
                self.store, max_pending=self.settings.max_pending, on_commit=lambda _r: self.bus.notify(),
                prepare=self._settle, clock=self.bus.clock,
            )
        return self._committer

    @property
    def inbox(self) -> Inbox:
        if self._inbox is None:
            from .events.inbox import Inbox

            self._inbox = Inbox(self.project, self.committer, self.settings.retention_days)
        return self._inbox

    def on_event(self, name: str, handler: EventHandler) -> None:
        """Call ``handler`` for every accepted event whose name matches ``name`` (``*`` for all)."""
        self.handlers.append((name, handler))

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self.started:
            return
        self._loop = asyncio.get_running_loop()
        self.halt.reset()
        self.bus.bind(self._loop)
        self.committer.start()
        _ = self.inbox
        self.store.listen(self.bus.notify)
        self._tasks = []
        if self.settings.has_role("worker"):
            from .events.loader import RawEventLoader

            loader = RawEventLoader(self.warehouse, self.bus.clock)
            self.loader = loader
            dispatcher = Consumer(
                "dispatcher", self.store, self.bus, self._dispatch, poll=0.5, batch=1000, min_interval=0.005,
                parse=False, save_cursor=False,  # payloads are parsed only for events a handler wants
            )
            warehouse_loader = Consumer(
                self.WAREHOUSE_ROLE,
                self.store,
                self.bus,
                self._load_raw,
                poll=self.settings.load_interval,
                load_cursor=loader.cursor,
                save_cursor=False,
                batch=5000,
                min_interval=0.2,
                parse=lambda: bool(self.on_raw_loaded),
                drain=10.0,  # a clean stop leaves raw.events complete
            )
            self._consumers = [dispatcher, warehouse_loader]
            self._tasks = [
                asyncio.create_task(self._as_leader(c.name, c.run), name=f"consumer:{c.name}") for c in self._consumers
            ]
            self._bg_tasks = [
                asyncio.create_task(factory(), name=f"bg:{i}") for i, factory in enumerate(self.background)
            ]
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        self.started = True
        for hook in self.on_start:
            await hook()

    WAREHOUSE_ROLE = "warehouse-loader"
    """The lead that warehouse work follows: the process loading ``raw.events`` also runs scheduled pulls,
    identity builds and sync schedules (with DuckDB it is the one process that may open the file)."""

    def as_leader(self, role: str, run: Job) -> Job:
        """A background job (for ``App.background``) that runs in one process at a time: past one machine,
        the worker holding the lead of ``role``; the others stand by and take over when it dies."""
        return lambda: self._as_leader(role, run)

    async def _as_leader(self, role: str, run: Job) -> None:
        """Run ``run`` only while this process leads ``role``; stand by and take over otherwise."""
        while not await asyncio.to_thread(self.store.try_lead, role):
            await asyncio.sleep(self.settings.lead_retry)
        first = role not in self._leading
        self._leading.add(role)
        if first and role == self.WAREHOUSE_ROLE:
            await asyncio.to_thread(self.loader.ensure_table)
        await run()

    STOP_WAIT = 5.0
    """Seconds ``stop()`` waits for long jobs to reach a safe point (they usually take milliseconds); with
    the 5 s for open responses this keeps a stop within systemd's TimeoutStopSec (20 s); ``_server.HARD_STOP``
    ends a stop that still runs at 18 s."""

    def begin_shutdown(self) -> None:
        """Announce the stop (safe from a signal handler or another thread); long jobs stop at a safe point."""
        self.halt.trip()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.stopping.set)

    async def stop(self) -> None:
        """Commit what is queued, let consumers finish their batch, close the stores."""
        self.halt.trip()
        for hook in reversed(self.on_stop):
            try:
                await hook()
            except Exception:
                log.exception("a shutdown hook failed")
        # long jobs in worker threads stop at their next safe point; wait for them to record their outcome
        if not await asyncio.to_thread(self.halt.wait_idle, self.STOP_WAIT):
            log.warning("a long job did not reach a safe point within %s s; stopping without it", self.STOP_WAIT)
        for task in self._bg_tasks:
            task.cancel()
        for task in self._bg_tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._bg_tasks = []
        if self._committer is not None:
            await asyncio.to_thread(self._committer.stop)
        for consumer in self._consumers:
            consumer.stop()
        for task in self._tasks:
            name = task.get_name().split(":", 1)[-1]
            if name not in self._leading:  # housekeeping, or standing by for a leader role
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.close()
        self.started = False

    def close(self) -> None:
        if self._warehouse is not None:
            self._warehouse.close()
            self._warehouse = None
        if self._store is not None:
            self._store.close()
            self._store = None

    async def _load_raw(self, events: list[EventRecord]) -> None:
        await self.loader.handle(events)
        for hook in self.on_raw_loaded:
            try:
                await hook(events)
            except Exception:
                log.exception("an on_raw_loaded hook failed")

    async def _housekeeping(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.purge_expired)
            await asyncio.sleep(3600)

    # -- dispatch ----------------------------------------------------------------------------
    @staticmethod
    def _matches(pattern: str, name: str) -> bool:
        return pattern in ("*", name) or (pattern.endswith(".*") and name.startswith(pattern[:-1]))

    def _settle(self, event: NewEvent) -> None:
        """Before an append: an accepted event that no handler wants is dispatched as it is stored, which
        spares the dispatcher a write per event (most webhooks feed workflows, loads and models, which
        read the log themselves, and have no handler)."""
        if event.status == "received" and not any(self._matches(p, event.name) for p, _ in self.handlers):
            event.status = "dispatched"

    @staticmethod
    def _failed_elsewhere(event: EventRecord) -> bool:
        """Marked failed by another consumer (the loader, workflows): its handlers still run (and it stays
        ``failed``, see ``StateStore.mark_events``)."""
        error = event.error if isinstance(event.error, dict) else {}
        return event.status == "failed" and error.get("consumer") not in (None, "dispatcher")

    async def _dispatch(self, events: list[EventRecord]) -> None:
        dispatched: list[str] = []
        for event in events:
            if event.status != "received" and not self._failed_elsewhere(event):
                continue
            error = None
            for pattern, handler in self.handlers:
                if self._matches(pattern, event.name):
                    try:
                        if event.payload is None and event.payload_text is not None:
                            event.payload = json.loads(event.payload_text)
                        await handler(event)
                    except Exception as exc:
                        log.exception("handler for %s failed on %s", pattern, event.id)
                        error = {"reason": f"{type(exc).__name__}: {exc}", "consumer": "dispatcher"}
                        if isinstance(exc, ValueError | RecursionError) and event.payload is None:
                            break  # its payload cannot be read: no other handler will do better
            if error is None:
                dispatched.append(event.id)
            else:
                await asyncio.to_thread(self.store.mark_events, [event.id], "failed", error)
        # The dispatcher's cursor moves in the same commit as the marks (its Consumer does not save it).
        await asyncio.to_thread(self.store.mark_events, dispatched, "dispatched", None, ("dispatcher", events[-1].seq))

    # -- writing events from code ------------------------------------------------------------
    async def emit(self, name: str, data: object, source: str = "internal", related_id: str | None = None) -> str:
        """Append an internal event (``model.built``, ``segment.entered`` ...) to the log."""
        event = NewEvent(
            id=new_id("evt_"), name=name, received_at=time.time(), payload=data, source=source, related_id=related_id,
            expires_at=time.time() + self.settings.retention_days * 86400.0,
        )
        if self.started:
            result = await self.committer.submit(event)
        else:
            result = (await asyncio.to_thread(self.store.append_events, [event]))[0]
            self.bus.notify()
        return result.event_id

    # -- replay ------------------------------------------------------------------------------
    def replay(self, event_id: str, payload: object = None) -> str:
        """Re-dispatch one event as a new log entry; returns the new event's id.

        A quarantined event is validated again (against the current schema, or ``payload`` when given);
        an event rejected for its signature, or a duplicate, is never replayed.
        """
        original = self.store.get_event(event_id)
        if original is None:
            raise ReplayError(f"no event {event_id!r}; list events with `opsloop events`")
        if original.status == "rejected":
            error = original.error if isinstance(original.error, dict) else {}
            reason = error.get("reason")
            if error.get("refused") != "body":
                raise ReplayError(f"event {event_id} was rejected ({reason}); "
                                  "a request that failed its signature is never processed")
            if payload is None:
                raise ReplayError(f"event {event_id} was refused at the door ({reason}); replay it with a "
                                  "corrected payload: opsloop replay ID --payload @fixed.json")
        if original.status == "duplicate":
            raise ReplayError(f"event {event_id} is a duplicate of {original.related_id}; replay that one instead")
        body = original.body
        data = original.payload if payload is None else payload
        name = original.name
        if payload is not None:
            body = self._replay_body(event_id, original.endpoint, payload)
        if original.endpoint:
            endpoint = self.inbox.endpoints.get(original.endpoint)
            if endpoint is not None:
                name = endpoint.config.event_name_for(data)
                if endpoint.validator is not None:
                    errors = endpoint.validator.errors(data)
                    if errors:
                        listed = "; ".join(f"{e.pointer}: {e.message}" for e in errors)
                        raise ReplayError(
                            f"event {event_id} still does not match the schema of endpoint {original.endpoint!r}: "
                            f"{listed}. Fix the schema in events/{original.endpoint}.yml, or pass a corrected "
                            "payload with --payload @file.json"
                        )
        new = NewEvent(
            id=new_id("evt_"), name=name, received_at=time.time(), endpoint=original.endpoint,
            idempotency_key=original.idempotency_key, headers=original.headers, body=body, payload=data,
            source="replay", related_id=original.id,
            expires_at=time.time() + self.settings.retention_days * 86400.0,
        )
        with self.store.transaction() as cur:
            self.store.append_events_in(cur, [new])
            if original.status in ("quarantined", "failed", "rejected"):
                self.store.set_event_status(cur, original.id, "replayed", new.id)
        self.bus.notify()
        return new.id

    def _replay_body(self, event_id: str, endpoint_name: str | None, payload: object) -> bytes:
        """``payload`` as the body of a replay, held to what the inbox accepts (the log carries only that)."""
        endpoint = self.inbox.endpoints.get(endpoint_name or "")
        depth = endpoint.config.max_depth if endpoint is not None else DEFAULT_MAX_DEPTH
        try:
            body = json.dumps(payload, separators=(",", ":")).encode()
            parse_body(body, depth)
        except (BodyRefused, ValueError, RecursionError) as exc:
            raise ReplayError(f"the payload given to replay event {event_id} cannot be used: {exc}") from None
        return body

    def replay_many(
        self, endpoint: str | None, since: float | None, status: str | None, until: float | None = None,
        limit: int = 10000,
    ) -> list[tuple[str, str | None, str | None]]:
        """Replay a range; returns (original id, new id or None, error or None) per event."""
        out: list[tuple[str, str | None, str | None]] = []
        chosen = self.store.list_events(status=status, endpoint=endpoint, since=since, until=until, limit=limit)
        for event in reversed(chosen):
            if event.status in ("rejected", "duplicate", "replayed"):
                continue
            try:
                out.append((event.id, self.replay(event.id), None))
            except ReplayError as exc:
                out.append((event.id, None, str(exc)))
        return out
