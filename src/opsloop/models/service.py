"""The models service inside a running App: reactive refresh, ``model.built`` events, and the JSON API
that CLI verbs use while `opsloop up` owns the warehouse (its routes: ``opsloop.web.api_models``).

Other subsystems call ``app.services["models"]``::

    results = await app.services["models"].build(select=["+orders"])   # in a loop; without one it returns results
    app.services["models"].notify_loaded({"hubspot.contacts"})   # rebuild what reads it (debounced)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, cast

from .._halt import Interrupted
from ..errors import OpsloopError
from ..events.changes import CHANGED, changed_tables
from .engine import ModelEngine
from .project_files import MODELS
from .runner import NodeResult

if TYPE_CHECKING:
    from .._json import JsonValue
    from ..app import App
    from ..state import EventRecord

log = logging.getLogger("opsloop.models")
DEFAULT_DEBOUNCE = 1.0


class ModelService:
    """Builds models for a running App and emits ``model.built`` for every model it rebuilt."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._engine: ModelEngine | None = None
        self._lock = asyncio.Lock()
        self._pending: set[str] = set()
        self._timer: asyncio.Task[None] | None = None
        self.last_refresh: list[NodeResult] = []
        self.last_results: dict[str, NodeResult] = {}
        """The latest result of each node (by uid) built or tested by this process, for the model pages."""
        self.refreshes = 0
        self._stopping = False

    @property
    def engine(self) -> ModelEngine:
        if self._engine is None:
            self._engine = ModelEngine(self.app.project, self.app.warehouse)
        return self._engine

    @property
    def debounce(self) -> float | None:
        """Seconds to wait after data lands before rebuilding (None: reactive refresh is off)."""
        env = self.app.project.env.get("OPSLOOP_MODELS_DEBOUNCE")
        mp = MODELS.of(self.app.project)
        value: object = env if env is not None else (getattr(mp, "vars", {}) or {}).get("opsloop_refresh_debounce")
        if value is None:
            return DEFAULT_DEBOUNCE
        if str(value).lower() in ("off", "false", "none", "-1"):
            return None
        from .._durations import parse_duration

        return parse_duration(value if isinstance(value, int | float) else str(value))

    def build(self, select: list[str] | None = None, exclude: list[str] | None = None,
              full_refresh: bool = False, kinds: tuple[str, ...] = ("model", "seed", "snapshot", "test"),
              emit: bool = True) -> list[NodeResult] | Coroutine[None, None, list[NodeResult]]:
        """Build a selection and emit ``model.built`` per model built.

        Inside an event loop this returns an awaitable (``await service.build(...)``; the build runs in a
        worker thread, one at a time); outside one it builds right away and returns the results.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            results = self.engine.build(select, exclude, full_refresh, kinds)
            self.last_results.update({r.uid: r for r in results})
            if emit:
                asyncio.run(self._emit_built(results))
            return results
        return self.build_async(select, exclude, full_refresh, kinds, emit)

    async def build_async(self, select: list[str] | None = None, exclude: list[str] | None = None,
                          full_refresh: bool = False, kinds: tuple[str, ...] = ("model", "seed", "snapshot", "test"),
                          emit: bool = True) -> list[NodeResult]:
        async with self._lock:
            log.info("model build started (select %s)", " ".join(select) if select else "all")
            try:
                results = await asyncio.to_thread(self._build_busy, select, exclude, full_refresh, kinds)
            except Interrupted:
                # what it built is rebuilt: the next start builds the whole selection again and emits its events
                self._owe({"select": select, "exclude": exclude, "full_refresh": full_refresh, "kinds": list(kinds)})
                raise
        if emit:
            await self._emit_built(results)
        return results

    def _build_busy(self, select: list[str] | None, exclude: list[str] | None, full_refresh: bool,
                    kinds: tuple[str, ...]) -> list[NodeResult]:
        with self.app.halt.busy():
            results = self.engine.build(select, exclude, full_refresh, kinds, halt=self.app.halt)
        self.last_results.update({r.uid: r for r in results})
        return results

    def _owe(self, build: dict[str, object]) -> None:
        owed = self.app.halt.owed().get("models")
        builds = owed if isinstance(owed, list) else []
        if build not in builds:
            builds.append(cast("JsonValue", build))  # the build's options: strings, lists of strings, a bool
        self.app.halt.owe("models", builds)

    def missing_seeds(self) -> list[str]:
        """The project's seeds whose table is not in the warehouse yet (a fresh project, a new seed file)."""
        compiler = self.engine.compiler()
        have = {f"{s}.{n}" for s, n in self.app.warehouse.relations()}
        return sorted(name for name in compiler.mp.seeds
                      if compiler.relation_of(f"seed.{name}").lower() not in have)

    async def _load_missing_seeds(self) -> None:
        async with self._lock:  # checked under the lock: a build that ran first may have loaded them
            missing = await asyncio.to_thread(self.missing_seeds)
            if not missing:
                return
            log.info("loading seeds %s and building what reads them (first start)", ", ".join(missing))
            select, kinds = [f"{name}+" for name in missing], ("seed", "model")
            try:
                results = await asyncio.to_thread(self._build_busy, select, None, False, kinds)
            except Interrupted:
                self._owe({"select": select, "exclude": None, "full_refresh": False, "kinds": list(kinds)})
                raise
        await self._emit_built(results)

    async def resume(self) -> None:
        """At start, in the process that leads the warehouse: load seeds that are not loaded yet (with what
        reads them), then redo the builds that the last stop interrupted."""
        try:
            await self._load_missing_seeds()
        except Interrupted:
            return
        except OpsloopError as exc:
            log.error("loading the seeds at start failed: %s", exc)
        except Exception:
            log.exception("loading the seeds at start failed")
        owed = self.app.halt.owed().get("models")
        if not isinstance(owed, list):
            return
        for build in owed:
            if not isinstance(build, dict):
                continue
            try:
                relations = _strings(build.get("relations"))
                if relations is not None:  # a reactive refresh that was still waiting
                    select = await asyncio.to_thread(self.engine.downstream_of_relations, set(relations))
                    log.info("refreshing what reads %s: data landed as the last stop began", ", ".join(relations))
                    if select:
                        await self.build_async(select=select, kinds=("model",))
                    continue
                log.info("redoing the model build that the last stop interrupted (select %s)", build.get("select"))
                await self.build_async(_strings(build.get("select")), _strings(build.get("exclude")),
                                       bool(build.get("full_refresh")),
                                       tuple(_strings(build.get("kinds")) or ("model", "seed", "snapshot", "test")))
            except Interrupted:
                return
            except OpsloopError as exc:
                log.error("the model build owed from the last stop failed: %s", exc)
            except Exception:
                log.exception("the model build owed from the last stop failed")
        self.app.halt.settle("models")

    def record_built(self, results: list[NodeResult]) -> None:
        """The ``model.built`` events of a build that ran outside a server (`opsloop build` in the CLI)."""
        asyncio.run(self._emit_built(results))

    def seeds_ahead(self, results: list[NodeResult]) -> list[str]:
        """The relations of the seeds this build loaded whose downstream models it did not build (``opsloop
        seed``, ``build -s my_seed``): those models now read old rows until a refresh builds them."""
        compiler = self.engine.compiler()
        built = {r.uid for r in results if r.status == "success"}
        ahead: list[str] = []
        for res in results:
            if res.kind != "seed" or res.status != "success":
                continue
            todo, seen = [res.uid], set()
            while todo:
                for child in compiler.children.get(todo.pop(), set()):
                    if child not in seen:
                        seen.add(child)
                        todo.append(child)
            models = {uid for uid in seen if uid.startswith("model.")
                      and compiler.mp.models[uid[6:]].materialized != "ephemeral"}
            if models - built:
                ahead.append(compiler.relation_of(res.uid).lower())
        return ahead

    async def _emit_built(self, results: list[NodeResult]) -> None:
        try:
            ahead = await asyncio.to_thread(self.seeds_ahead, results)
        except OpsloopError as exc:  # the project changed under the build; its next build sees it
            log.warning("could not tell which models read the seeds just loaded: %s", exc)
            ahead = []
        if ahead:
            # through the log (not straight to notify_loaded): a seed loaded with no server running is
            # refreshed by the next start, which loads this event into raw.events
            await self.app.emit(CHANGED, {"tables": ahead, "by": "seed"}, source="models")
        for res in results:
            # seeds too: identity, syncs and dashboards may read a seed's table
            if res.kind in ("model", "seed") and res.status == "success" and res.materialization != "ephemeral":
                await self.app.emit("model.built", {"model": res.name, "relation": res.relation,
                                                    "rows": res.rows, "changed_rows": res.changed_rows,
                                                    "kind": res.kind},
                                    source="models")

    # -- reactive refresh --------------------------------------------------------------------
    async def on_raw_loaded(self, events: list[EventRecord]) -> None:
        """Every batch that lands in raw.events: rebuild what reads raw.events, and what reads the tables
        that the batch's load events name (a pull's ``source.<name>.loaded``, ``warehouse.changed``)."""
        relations = {table for event in events for table in changed_tables(event)}
        # model.built events land in raw.events too; reacting to our own events would loop forever
        if any(e.source != "models" for e in events):
            relations.add("raw.events")
        if relations:
            self.notify_loaded(relations)

    def notify_loaded(self, relations: set[str]) -> None:
        """New rows landed in these ``schema.table`` relations: rebuild their downstream (debounced)."""
        if self.debounce is None:
            return
        self._pending |= {r.lower() for r in relations}
        if self._stopping:  # data landed as the server stops (the loader's last batches): refresh at the next start
            self._owe_pending()
            return
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._refresh_later(), name="models:refresh")

    async def _refresh_later(self) -> None:
        await asyncio.sleep((self.debounce or 0) * self.app.settings.time_scale)
        if self._stopping:
            self._owe_pending()
            return
        relations, self._pending = self._pending, set()
        try:
            select = await asyncio.to_thread(self.engine.downstream_of_relations, relations)
            if not select:
                return
            self.last_refresh = await self.build_async(select=select, kinds=("model",))
            self.refreshes += 1
        except Interrupted:
            return
        except OpsloopError as exc:
            log.error("reactive model refresh failed: %s", exc)
        except Exception:
            log.exception("reactive model refresh failed")
        if self._pending and not self._stopping:
            self._timer = asyncio.get_running_loop().create_task(self._refresh_later(), name="models:refresh")

    async def stop(self) -> None:
        """Cancel a refresh that is still waiting; one that is building stops at its next safe point (the
        app's halt interrupts it) and is owed to the next start."""
        self._stopping = True
        if self._timer is not None and not self._timer.done():
            if not self._lock.locked():
                self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._timer
        async with self._lock:
            pass
        self._owe_pending()

    def _owe_pending(self) -> None:
        """A refresh that was waiting (debounced) when the stop began runs at the next start."""
        if self._pending:
            relations, self._pending = self._pending, set()
            self._owe({"relations": sorted(relations)})


def _strings(value: JsonValue) -> list[str] | None:
    """A list of names as ``halt.owe`` recorded it (None when it recorded none)."""
    return [str(v) for v in value] if isinstance(value, list) else None


def attach(app: App) -> None:
    service = ModelService(app)
    app.services["models"] = service
    mp = MODELS.of(app.project)
    if mp is not None and not mp.empty:
        app.on_raw_loaded.append(service.on_raw_loaded)
        app.background.append(app.as_leader(app.WAREHOUSE_ROLE, service.resume))
    app.on_stop.append(service.stop)
