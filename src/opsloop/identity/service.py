"""Runtime: rebuild identities when the models they read are rebuilt and on a schedule; evaluate segments."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .._halt import Interrupted
from ._sql import Conn, IdentityError, relation
from .project_files import identity_of

if TYPE_CHECKING:
    from .profile import Profile
    from .project_files import IdentityProject
    from .resolve import StageDone
    from .segments import SegmentActivity, SegmentResult

if TYPE_CHECKING:
    from ..app import App
    from ..state import EventRecord

log = logging.getLogger("opsloop.identity")
SERVICE_STAGES = ("segments", "events")
"""What ``IdentityService.build`` does after the resolver's stages (``resolve.BUILD_STAGES``): evaluate the
segments (unless told not to), then move the build's events to the log."""
NO_IDENTITY = "there is no identity.yml in this project; write one (see docs/identity.md)"


class UnknownSegment(IdentityError):
    """A segment name that no ``segments/*.yml`` defines."""


class IdentityService:
    """``app.services["identity"]``: the library API that the CLI and the server share."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._lock = threading.Lock()

    @property
    def project(self) -> IdentityProject:
        return identity_of(self.app.project)

    def _conn(self) -> Conn:
        return Conn(self.app.warehouse, self.app.halt)

    # -- sync API (CLI, tests, threads) --------------------------------------------------------
    def build(self, full: bool = False, segments: bool = True, on_stage: StageDone | None = None) -> dict[str, object]:
        """Resolve identities, rebuild the golden record, evaluate segments, move events to the log;
        ``on_stage(name, seconds)`` hears of each stage as it ends (``resolve.BUILD_STAGES``, then
        ``SERVICE_STAGES``)."""
        from .resolve import Resolver

        ip = self.project
        if ip.config is None:
            raise IdentityError("there is no identity.yml in this project; see docs/identity.md")
        with self.app.halt.busy(), self._lock:
            log.info("identity build started")
            db = self._conn()
            try:
                result = Resolver(db, ip.config, ip.field_names).build(full=full, on_stage=on_stage)
                began = time.perf_counter()
                seg_results = self._evaluate(db, None) if segments else []
                if segments and on_stage is not None:
                    on_stage("segments", round(time.perf_counter() - began, 4))
                began = time.perf_counter()
                events = self._flush(db)
                if on_stage is not None:
                    on_stage("events", round(time.perf_counter() - began, 4))
            except Interrupted:
                self.app.halt.owe("identity", {"full": full})
                raise
            finally:
                db.close()
        self.app.halt.settle("identity")
        return {**result.as_dict(), "timings": result.timings, "segments": [s.as_dict() for s in seg_results],
                "events": events}

    def evaluate_segments(self, names: Iterable[str] | None = None) -> list[dict[str, object]]:
        with self.app.halt.busy(), self._lock:
            db = self._conn()
            try:
                results = self._evaluate(db, names)
                self._flush(db)
            except Interrupted:
                self.app.halt.owe("segments", True)
                raise
            finally:
                db.close()
        if names is None:
            self.app.halt.settle("segments")
        return [r.as_dict() for r in results]

    def _evaluate(self, db: Conn, names: Iterable[str] | None) -> list[SegmentResult]:
        from .segments import evaluate

        segs = self.project.segments
        chosen = list(segs) if names is None else list(names)
        unknown = [n for n in chosen if n not in segs]
        if unknown:
            raise UnknownSegment(f"no segment {unknown[0]!r}; segments: {', '.join(sorted(segs)) or 'none'} "
                                "(files in segments/)")
        return [evaluate(db, segs[n]) for n in chosen if segs[n].enabled]

    def _flush(self, db: Conn) -> int:
        from ._outbox import flush

        written = flush(db, self.app.store, self.app.settings.retention_days)
        if written:
            self.app.bus.notify()
        return written

    def conn(self) -> Conn:
        """A private connection for reads (profile, preview)."""
        return self._conn()

    # -- reads: the CLI verbs and their API routes (web/api_identity.py) share these ---------------------
    def _config(self) -> IdentityProject:
        ip = self.project
        if ip.config is None and not ip.segments:
            raise IdentityError(NO_IDENTITY)
        return ip

    def profile(self, query: str) -> Profile:
        """One person (by person id, ``system:record_id`` or an identifier value) with provenance."""
        from .profile import find_person, profile

        ip = self._config()
        if ip.config is None:
            raise IdentityError(NO_IDENTITY)
        db = self._conn()
        try:
            return profile(db, ip.field_names, find_person(db, ip.config, query))
        finally:
            db.close()

    def search(self, query: str, limit: int = 50) -> list[dict[str, object]]:
        """People matching ``query`` (an id, a record, an identifier or part of one), for the People page."""
        from .profile import search_people

        ip = self._config()
        if ip.config is None:
            raise IdentityError(NO_IDENTITY)
        db = self._conn()
        try:
            return search_people(db, ip.config, query, limit)
        finally:
            db.close()

    def person_segment_history(self, person_id: str) -> list[dict[str, object]]:
        """When ``person_id`` entered and exited each segment, newest first."""
        from .profile import segment_history

        db = self._conn()
        try:
            return segment_history(db, person_id)
        finally:
            db.close()

    def segment_activity(self, name: str, limit: int = 50) -> SegmentActivity:
        """Segment ``name``: its members (newest first), its entries and exits, and its evaluations."""
        from .segments import activity

        segs = self._config().segments
        if name not in segs:
            raise UnknownSegment(f"no segment {name!r}; segments: {', '.join(sorted(segs)) or 'none'} "
                                 "(files in segments/)")
        db = self._conn()
        try:
            return activity(db, name, limit)
        finally:
            db.close()

    def conflicts(self, limit: int = 50) -> list[dict[str, object]]:
        """Identifier values not used to merge people (limits, shared values, unlinks), newest first."""
        self._config()
        wh = self.app.warehouse
        if not wh.query("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'identity' "
                        "AND table_name = 'conflicts'").rows[0][0]:
            return []
        return list(wh.query("SELECT recorded_at, rule, id_type, value, reason FROM identity.conflicts "
                             "ORDER BY recorded_at DESC LIMIT ?", (limit,)).as_dicts())

    def segment_summary(self) -> list[dict[str, object]]:
        """Every segment with its member count and last evaluation."""
        from .segments import summary

        ip = self._config()
        db = self._conn()
        try:
            return summary(db, ip.segments)
        finally:
            db.close()

    def segment_preview(self, name: str, limit: int = 20) -> dict[str, object]:
        """Who is in segment ``name`` now and who would enter or exit, recording nothing."""
        from .segments import preview

        segs = self._config().segments
        if name not in segs:
            raise UnknownSegment(f"no segment {name!r}; segments: {', '.join(sorted(segs)) or 'none'} "
                                 "(files in segments/)")
        db = self._conn()
        try:
            return preview(db, segs[name], limit)
        finally:
            db.close()

    # -- reactions -----------------------------------------------------------------------------
    def source_relations(self) -> set[str]:
        cfg = self.project.config
        if cfg is None:
            return set()
        return {relation(s.relation).replace('"', "") for s in cfg.sources if s.relation}

    def missing_relations(self) -> list[str]:
        """The relations identity.yml reads that do not exist yet (seeds not loaded, models not built)."""
        wanted = self.source_relations()
        if not wanted:
            return []
        have = {f"{s}.{n}" for s, n in self.app.warehouse.relations()}
        return sorted(r for r in wanted if r.lower() not in have)

    async def _ready(self) -> bool:
        """An identity build waits (it does not fail) until every relation it reads exists."""
        missing: list[str] = await asyncio.to_thread(self.missing_relations)
        if missing:
            log.info("the identity build waits for %s (not built yet; they build as data lands, or run "
                     "`opsloop build`)", ", ".join(missing))
        return not missing

    def segments_reading(self, rel: str) -> list[str]:
        from .segments import reads

        return [name for name, seg in self.project.segments.items() if seg.enabled and rel in reads(seg)]

    async def on_model_built(self, event: EventRecord) -> None:
        try:
            await self._react(event)
        except Interrupted:
            pass  # owed to the next start, which redoes it; the event itself was handled

    async def _react(self, event: EventRecord) -> None:
        payload = event.payload if isinstance(event.payload, dict) else {}
        rel = str(payload.get("relation") or "")
        if not rel:
            return
        if self.project.config is not None and rel in self.source_relations():
            if await self._ready():
                await asyncio.to_thread(self.build)
            return
        names = self.segments_reading(rel)
        if not names:
            return
        ready: bool = await asyncio.to_thread(self._golden_ready)
        if ready:
            await asyncio.to_thread(self.evaluate_segments, names)
        else:
            log.info("segments %s wait for the first identity build (no golden record yet)", ", ".join(names))

    def _golden_ready(self) -> bool:
        """Segments read the golden record: before the first identity build there is nothing to evaluate."""
        from .segments import _golden_exists

        db = self._conn()
        try:
            return _golden_exists(db)
        finally:
            db.close()  # on Postgres a connection of its own

    async def scheduler(self) -> None:
        """Runs identity builds and segment evaluations on their schedules (scaled by time_scale)."""
        scale = self.app.settings.time_scale
        ip = self.project
        await self._pay_owed()
        jobs: dict[str, float] = {}
        if ip.config is not None and ip.config.schedule_seconds:
            jobs["identity"] = ip.config.schedule_seconds * scale
        for name, seg in ip.segments.items():
            if seg.enabled and seg.schedule_seconds:
                jobs[f"segment:{name}"] = seg.schedule_seconds * scale
        if not jobs:
            return
        due = {job: time.monotonic() + every for job, every in jobs.items()}
        while True:
            now = time.monotonic()
            for job, when in sorted(due.items(), key=lambda kv: kv[1]):
                if when > now:
                    continue
                try:
                    if job == "identity":
                        if await self._ready():
                            await asyncio.to_thread(self.build)
                    else:
                        await asyncio.to_thread(self.evaluate_segments, [job.split(":", 1)[1]])
                except Interrupted:
                    return
                except Exception:
                    log.exception("scheduled %s failed", job)
                due[job] = time.monotonic() + jobs[job]
            await asyncio.sleep(max(0.01, min(due.values()) - time.monotonic()))

    async def _pay_owed(self) -> None:
        """Redo the build or evaluation that a stop interrupted (it rolled back, so it is redone whole)."""
        owed = self.app.halt.owed()
        try:
            if "identity" in owed and self.project.config is not None:
                detail = owed["identity"]
                full = bool(detail.get("full")) if isinstance(detail, dict) else False
                log.info("redoing the identity build that the last stop interrupted")
                await asyncio.to_thread(self.build, full)
            elif "segments" in owed:
                await asyncio.to_thread(self.evaluate_segments)
        except Interrupted:
            raise
        except Exception:
            log.exception("the identity build owed from the last stop failed")

    async def flush_on_start(self) -> None:
        if self.project.config is None and not self.project.segments:
            return

        def run() -> None:
            with self._lock:
                db = self._conn()
                try:
                    self._flush(db)
                finally:
                    db.close()

        try:
            await asyncio.to_thread(run)
        except Exception:
            log.exception("could not move queued identity events to the log")


def attach(app: App) -> None:
    service = IdentityService(app)
    app.services["identity"] = service
    ip = identity_of(app.project)
    if ip.config is None and not ip.segments:
        return
    app.on_event("model.built", service.on_model_built)
    app.background.append(app.as_leader(app.WAREHOUSE_ROLE, service.scheduler))
    app.on_start.append(service.flush_on_start)
