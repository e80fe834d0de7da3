"""The metrics service inside a running App: queries, live dashboard pushes, scheduled tiles, alerts.

``attach(app)`` registers it as ``app.services["metrics"]`` and adds the dashboard web routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from .._durations import parse_duration
from ..events.changes import changed_tables
from ..state import EventRecord
from .catalog import Catalog, catalog_of
from .dashboards import RAW_EVENTS, BoardFilters, TileRenderer, sm_dependencies, tile_dependencies
from .engine import MetricEngine, MetricQuery, MetricResult
from .spec import SemanticModel

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("opsloop.metrics")


class MetricsService:
    def __init__(self, app: App) -> None:
        self.app = app
        self._relations: dict[str, str] | None = None
        self._engine: MetricEngine | None = None
        self.subscribers: dict[str, set[asyncio.Queue[dict[str, object]]]] = {}
        self.refreshed: dict[tuple[str, int], float] = {}
        self.today_override: date | None = None

    # -- catalog and engine ----------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        return catalog_of(self.app.project)

    @property
    def engine(self) -> MetricEngine:
        if self._engine is None:
            self._engine = MetricEngine(self.catalog, self.app.warehouse, self.resolve, self.today)
        return self._engine

    def today(self) -> date:
        return self.today_override or datetime.now(UTC).date()

    def relations(self) -> dict[str, str]:
        if self._relations is None:
            rows = self.app.store.query("SELECT model, relation FROM metric_relations")
            self._relations = {str(r[0]): str(r[1]) for r in rows}
        return self._relations

    def resolve(self, sm: SemanticModel) -> str:
        """The relation a semantic model reads: ``relation:``, else where its model was last built."""
        if sm.relation:
            return sm.relation
        name = self.catalog.model_name(sm) or sm.name
        found = self.relations().get(name)
        if found is None:
            from .compiler import MetricQueryError

            raise MetricQueryError(
                f"semantic model {sm.name!r} reads model {name!r}, which has not been built yet "
                f"(no model.built event for it); build it with `opsloop build`, or set relation: schema.table "
                f"in {self.catalog.locate('semantic_models', sm.name)}"
            )
        return found

    def record_build(self, model: str, relation: str) -> None:
        if self.relations().get(model) == relation:
            return
        with self.app.store.transaction() as cur:
            self.app.store.execute(
                cur,
                "INSERT INTO metric_relations (model, relation, built_at) VALUES (?, ?, ?) "
                "ON CONFLICT (model) DO UPDATE SET relation = excluded.relation, built_at = excluded.built_at",
                (model, relation, time.time()),
            )
        self.relations()[model] = relation

    # -- the one query call (API and CLI) --------------------------------------------------------
    def query(self, q: MetricQuery) -> MetricResult:
        return self.engine.query(q)

    def renderer(self) -> TileRenderer:
        return TileRenderer(self.engine)

    def tile(self, board: str, index: int, filters: BoardFilters) -> dict[str, object]:
        dash = self.catalog.dashboards[board]
        data = self.renderer().render(dash, index, filters)
        refreshed = data["refreshed_at"]
        if isinstance(refreshed, float):  # always: TileRenderer.render sets it from time.time()
            self.refreshed[(board, index)] = refreshed
        return data

    # -- live updates ----------------------------------------------------------------------------
    def subscribe(self, board: str) -> asyncio.Queue[dict[str, object]]:
        queue: asyncio.Queue[dict[str, object]] = asyncio.Queue(maxsize=100)
        self.subscribers.setdefault(board, set()).add(queue)
        return queue

    def unsubscribe(self, board: str, queue: asyncio.Queue[dict[str, object]]) -> None:
        self.subscribers.get(board, set()).discard(queue)

    def affected(self, changed: set[str]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for name, board in self.catalog.dashboards.items():
            ids = [i for i, tile in enumerate(board.tiles) if tile_dependencies(self.catalog, tile) & changed]
            if ids:
                out[name] = ids
        return out

    def push(self, board: str, tiles: list[int], reason: str) -> None:
        message = {"tiles": tiles, "reason": reason, "at": time.time()}
        for queue in list(self.subscribers.get(board, ())):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message)

    async def changed(self, deps: set[str], reason: str) -> None:
        if self._engine is not None:
            self._engine.cache.invalidate(deps)
        for board, ids in self.affected(deps).items():
            self.push(board, ids, reason)
        if "metrics_alerts" in self.app.services:
            await self.app.metrics_alerts.evaluate_for(deps)

    async def on_model_built(self, event: EventRecord) -> None:
        data = event.payload if isinstance(event.payload, dict) else {}
        model, relation = data.get("model"), data.get("relation")
        if not model:
            return
        if relation:
            await asyncio.to_thread(self.record_build, str(model), str(relation))
        await self.changed({str(model), *([str(relation)] if relation else [])}, f"model {model} rebuilt")

    async def on_raw_loaded(self, events: list[EventRecord]) -> None:
        """Tiles over raw.events refresh on every load; event highlights only when their event arrived;
        tiles over a table a pull or another writer changed (``relation: hubspot.contacts``) when its load
        event arrives."""
        names = {f"event:{e.name}" for e in events}
        tables = {table for event in events for table in changed_tables(event)}
        await self.changed({RAW_EVENTS, *names, *tables}, f"{len(events)} new event(s)")

    def raw_dependent(self) -> bool:
        return any(RAW_EVENTS in sm_dependencies(self.catalog, sm) for sm in self.catalog.semantic_models.values())

    async def scheduler(self) -> None:
        """Push scheduled tiles (``refresh: 5m``) when due."""
        due: dict[tuple[str, int], float] = {}
        while True:
            now = time.monotonic()
            for name, board in self.catalog.dashboards.items():
                for i, tile in enumerate(board.tiles):
                    if not tile.refresh:
                        continue
                    every = parse_duration(tile.refresh) * self.app.settings.time_scale
                    key = (name, i)
                    if key not in due:
                        due[key] = now + every
                    elif now >= due[key]:
                        due[key] = now + every
                        self.push(name, [i], f"scheduled refresh every {tile.refresh}")
            await asyncio.sleep(0.2 if self.app.settings.time_scale < 1 else 1.0)


def attach(app: App) -> None:
    service = MetricsService(app)
    app.services["metrics"] = service

    async def raw_table() -> None:
        """Tiles over raw.events must find the table (empty) before the first load creates it."""
        if service.raw_dependent():
            from ..events.loader import RawEventLoader

            try:
                await asyncio.to_thread(RawEventLoader(app.warehouse).ensure_table)
            except Exception:
                log.warning("raw.events could not be created yet; tiles over it show an error until it is")

    app.on_start.append(raw_table)
    app.on_event("model.built", service.on_model_built)
    app.on_raw_loaded.append(service.on_raw_loaded)
    app.background.append(service.scheduler)
    from .alerts import AlertRunner

    app.services["metrics_alerts"] = AlertRunner(app, service)
