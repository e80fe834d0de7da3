"""The run page: a workflow run as a timeline, and the event page its trigger links to.

``/runs/<id>`` shows each step in order with its status, start, duration, attempts and error; sleeps and
``wait_for_event`` with their deadline and what they wait for; the SLA helper's state (posted, due,
breached at, claimed by, after); the run's input and output as collapsible JSON; the trigger event linked
to ``/events/<id>``. The data is ``workflows.runs.run_detail``, the same as ``GET /api/runs/<id>``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ..narrow import as_int, mapping, number, records
from ..state import EventRecord
from ..workflows import runs
from ..workflows.project_files import WORKFLOWS
from ._handler import Handler

if TYPE_CHECKING:
    from .server import Web


LIVE_POLL = 0.5
"""Seconds between looks at a running run's row (a primary-key read) for its live page."""


@dataclass
class Step:
    """One row of the timeline."""

    position: int
    name: str
    kind: str
    status: str
    started_at: float | None
    finished_at: float | None
    attempts: int
    error: object
    input: object
    output: object
    offset: float = 0.0  # seconds after the run started
    length: float = 0.0  # seconds (so far, for a step still waiting)
    waits_for: str | None = None
    match: str | None = None
    deadline: float | None = None
    outcome: str | None = None
    event_id: str | None = None
    bar_left: float = 0.0  # percent of the run's span
    bar_width: float = 0.0


@dataclass
class Sla:
    """The SLA helper's state, read from its steps (``<name>.post``, ``.wait``, ``.breached``, ``.claimed``)."""

    name: str
    state: str  # waiting | met | breached | breached-claimed
    posted_at: float | None = None
    due_at: float | None = None
    breached_at: float | None = None
    claimed_by: str | None = None
    claimed_at: float | None = None
    claimed_after: float | None = None
    events: list[str] = field(default_factory=list)


def _claimer(event: Mapping[str, object]) -> str | None:
    data = event.get("data")
    if not isinstance(data, dict):
        return None
    user = data.get("user")
    if isinstance(user, dict):
        return str(user.get("name") or user.get("username") or user.get("id") or "someone")
    if isinstance(user, str):
        return user
    by = data.get("by") or data.get("claimed_by")
    return str(by) if by else None


def timeline(detail: Mapping[str, object], now: float | None = None) -> list[Step]:
    """The run's steps in order, with offsets and bar geometry relative to the run's span."""
    now = time.time() if now is None else now
    start = number(detail.get("started_at")) or number(detail.get("created_at")) or now
    steps: list[Step] = []
    for s in sorted(records(detail.get("steps")), key=lambda s: number(s["position"]) or 0):
        begun, ended = number(s.get("started_at")), number(s.get("finished_at"))
        step = Step(position=int(number(s["position"]) or 0), name=str(s["step"]), kind=str(s["kind"]),
                    status=str(s["status"]), started_at=begun, finished_at=ended,
                    attempts=int(number(s.get("attempts")) or 0), error=s.get("error"), input=s.get("input"),
                    output=s.get("output"))
        if begun is not None:
            step.offset = max(0.0, begun - start)
            step.length = max(0.0, (ended if ended is not None else now) - begun)
        spec = mapping(s.get("input"))
        output = mapping(s.get("output"))
        if step.kind == "wait":
            step.waits_for = str(spec.get("event") or "")
            match = spec.get("match")
            step.match = None if match is None else str(match)
            step.deadline = number(spec.get("deadline"))
            if step.status == "completed":
                if output.get("id"):
                    step.outcome, step.event_id = "received", str(output["id"])
                else:
                    step.outcome = "timed out"
            else:
                step.outcome = "waiting"
        elif step.kind == "sleep":
            step.deadline = number(output.get("until"))
            step.outcome = "slept" if step.deadline is not None and step.deadline <= now else "sleeping"
        elif step.kind == "emit" and output.get("id"):
            step.event_id = str(output["id"])
        steps.append(step)
    end = number(detail.get("finished_at")) or now
    for step in steps:  # sleeps and waits stretch to their deadline when it is later than the run's end
        if step.deadline is not None and step.status != "completed":
            end = max(end, step.deadline)
    span = max(end - start, 1e-6)
    for step in steps:
        step.bar_left = min(100.0, 100.0 * step.offset / span)
        step.bar_width = max(0.4, min(100.0 - step.bar_left, 100.0 * step.length / span))
    return steps


def sla_states(detail: Mapping[str, object], now: float | None = None) -> list[Sla]:
    """Each SLA the run holds (a ``<name>.post`` step followed by ``<name>.wait``), with its state."""
    now = time.time() if now is None else now
    by_name = {str(s["step"]): s for s in records(detail.get("steps"))}
    found: list[Sla] = []
    for name in by_name:
        if not name.endswith(".wait"):
            continue
        prefix = name[: -len(".wait")]
        if f"{prefix}.post" not in by_name:
            continue
        wait = by_name[name]
        posted = by_name.get(f"{prefix}.posted_at")
        posted_at = number(posted.get("output")) if posted else None
        if posted_at is None:
            posted_at = number(by_name[f"{prefix}.post"].get("finished_at"))
        spec = mapping(wait.get("input"))
        sla = Sla(name=prefix, state="waiting", posted_at=posted_at, due_at=number(spec.get("deadline")))
        claim: Mapping[str, object] | None = None
        if wait["status"] == "completed":
            if mapping(wait.get("output")).get("id"):
                claim, sla.state = mapping(wait.get("output")), "met"
            else:
                breached = by_name.get(f"{prefix}.breached") or by_name.get(f"{prefix}.breach_event")
                sla.breached_at = number((breached or wait).get("started_at")) or number(wait.get("finished_at"))
                sla.state = "breached"
                late = by_name.get(f"{prefix}.late_wait")
                if late and mapping(late.get("output")).get("id"):
                    claim, sla.state = mapping(late.get("output")), "breached-claimed"
        elif sla.due_at is not None and now > sla.due_at:
            sla.state = "breached"  # the deadline passed; the worker has not recorded it yet
            sla.breached_at = sla.due_at
        if claim is not None:
            sla.claimed_by = _claimer(claim)
            sla.claimed_at = number(claim.get("received_at"))
            if sla.claimed_at is not None and sla.posted_at is not None:
                sla.claimed_after = sla.claimed_at - sla.posted_at
            sla.events.append(str(claim.get("id")))
        found.append(sla)
    return found


class RunPage(TypedDict):
    """What ``run.html`` shows of a run, besides whether its workflow is paused."""

    run: Mapping[str, object]
    steps: list[Step]
    slas: list[Sla]
    elapsed: float | None
    finished: bool


def run_page_context(detail: Mapping[str, object], now: float | None = None) -> RunPage:
    now = time.time() if now is None else now
    start = number(detail.get("started_at")) or number(detail.get("created_at"))
    end = number(detail.get("finished_at"))
    return {
        "run": detail,
        "steps": timeline(detail, now),
        "slas": sla_states(detail, now),
        "elapsed": (end if end is not None else now) - start if start is not None else None,
        "finished": end is not None,
    }


def routes(web: Web) -> list[Route]:
    app = web.app

    async def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            detail = await asyncio.to_thread(runs.run_detail, app.store, run_id)
        except runs.RunError as exc:
            return web.render(request, "missing.html", status_code=404, title="No such run", message=str(exc),
                              back="/runs", back_label="all runs")
        paused = detail["workflow"] in await asyncio.to_thread(runs.paused_workflows, app.store)
        return web.render(request, "run.html", paused=paused, message=request.query_params.get("message"),
                          **run_page_context(dict(detail)))

    async def run_live(request: Request) -> Response:
        """``event: changed`` each time the run's row moves on (a step done, a wait over), until it finishes;
        the run page reloads on it (opsloop.js)."""
        run_id = request.path_params["run_id"]
        stopping = app.stopping

        def version() -> tuple[float, str] | None:
            found = runs.get_run(app.store, run_id)
            return None if found is None else (found.updated_at, found.status)

        async def stream() -> AsyncIterator[str]:
            seen = await asyncio.to_thread(version)
            yield "retry: 2000\nevent: hello\ndata: {}\n\n"
            idle = 0
            while seen is not None and not stopping.is_set():
                await asyncio.sleep(LIVE_POLL)
                now = await asyncio.to_thread(version)
                if now != seen:
                    seen = now
                    yield f"event: changed\ndata: {json.dumps({'status': now[1] if now else None})}\n\n"
                    if now is None or now[1] in runs.FINISHED:
                        return
                    idle = 0
                else:
                    idle += 1
                    if idle % 15 == 0:
                        yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def workflows_page(request: Request) -> Response:
        def load() -> tuple[set[str], dict[str, list[runs.RunRow]]]:
            paused = runs.paused_workflows(app.store)
            latest = {name: runs.list_runs(app.store, workflow=name, limit=1)
                      for name in WORKFLOWS.of(app.project)}
            return paused, latest

        paused, latest = await asyncio.to_thread(load)
        rows = [{"name": wf.name, "source": wf.source, "on": wf.on,
                 "schedule": wf.schedule.cron if wf.schedule else None, "paused": wf.name in paused,
                 "last": latest[wf.name][0].summary() if latest.get(wf.name) else None}
                for wf in WORKFLOWS.of(app.project).values()]
        return web.render(request, "workflows.html", workflows=rows, message=request.query_params.get("message"))

    def kick() -> None:
        if "workflows" in app.services:
            app.workflows.kick()

    def back_to(run_id: str, message: str) -> Response:
        return RedirectResponse(f"/runs/{quote(run_id)}?message={quote(message)}", status_code=303)

    async def rerun_form(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        form = await request.form()
        from_step = str(form.get("from_step") or "") or None
        raw = str(form.get("input") or "").strip()
        try:
            given = json.loads(raw) if raw else None
        except ValueError as exc:
            return back_to(run_id, f"the input is not JSON ({exc}); nothing was started")
        try:
            new = await asyncio.to_thread(runs.rerun, app.store, run_id, from_step, given)
        except runs.RunError as exc:
            return back_to(run_id, str(exc))
        kick()
        return back_to(new, f"rerun of {run_id}" + (f" from step {from_step}" if from_step else ""))

    async def cancel_form(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            await asyncio.to_thread(runs.cancel_run, app.store, run_id)
            told = "cancelled"
        except runs.RunError as exc:
            told = str(exc)
        return back_to(run_id, told)

    def pause_form(paused: bool) -> Handler:
        async def handler(request: Request) -> Response:
            name = request.path_params["workflow"]
            form = await request.form()
            back = str(form.get("back") or "/workflows")
            if not back.startswith("/") or back.startswith("//"):
                back = "/workflows"
            known = set(WORKFLOWS.of(app.project))
            try:
                await asyncio.to_thread(runs.set_paused, app.store, name, paused, known)
                told = f"{name} {'paused: its runs queue until you resume it' if paused else 'resumed'}"
            except runs.RunError as exc:
                told = str(exc)
            kick()
            return RedirectResponse(f"{back}?message={quote(told)}", status_code=303)

        return handler

    async def event_page(request: Request) -> Response:
        event_id = request.path_params["event_id"]
        event = await asyncio.to_thread(app.store.get_event, event_id)
        if event is None:
            return web.render(request, "missing.html", status_code=404, title="No such event",
                              message=f"There is no event {event_id!r} in the log.", back="/events",
                              back_label="all events")

        def consumers() -> tuple[Sequence[Mapping[str, object]], dict[str, object] | None]:
            started = [r.summary() for r in runs.runs_for_event(app.store, event_id)]
            return started, _loaded(event_id)

        started, loaded = await asyncio.to_thread(consumers)
        return web.render(request, "event.html", event=event.detail(), signature=_signature(event),
                          why=_why(event), started=started, loaded=loaded)

    def _loaded(event_id: str) -> dict[str, object] | None:
        """Whether the loader has put the event into ``raw.events`` (None: the warehouse has no such table)."""
        from ..errors import WarehouseError
        from ..events.loader import RAW_TABLE

        try:
            hit = app.warehouse.query(f"SELECT seq FROM {RAW_TABLE} WHERE event_id = ?", (event_id,)).rows
            upto = app.warehouse.query(f"SELECT COALESCE(MAX(seq), 0) FROM {RAW_TABLE}").rows[0][0]
        except WarehouseError:
            return None
        return {"table": RAW_TABLE, "loaded": bool(hit), "upto": as_int(upto)}

    def _signature(event: EventRecord) -> dict[str, str]:
        error = event.error if isinstance(event.error, dict) else {}
        if error.get("refused") == "signature":
            return {"verdict": "refused", "text": str(error.get("reason") or "bad signature")}
        if event.status == "rejected":
            return {"verdict": "none", "text": f"not reached: refused for its {error.get('refused') or 'request'}"}
        if event.source != "webhook" or not event.endpoint:
            return {"verdict": "none", "text": f"written by opsloop ({event.source}); no signature to check"}
        endpoint = app.project.endpoints.get(event.endpoint)
        preset = endpoint.signature.preset if endpoint is not None else None
        if preset in (None, "none"):
            return {"verdict": "none", "text": "not checked: the endpoint declares no signature"}
        return {"verdict": "verified", "text": f"by the endpoint's {preset} preset"}

    return [Route("/runs/{run_id}", run_page), Route("/events/{event_id}", event_page, methods=["GET"]),
            Route("/runs/{run_id}/live", run_live), Route("/workflows", workflows_page),
            Route("/runs/{run_id}/rerun", rerun_form, methods=["POST"]),
            Route("/runs/{run_id}/cancel", cancel_form, methods=["POST"]),
            Route("/workflows/{workflow}/pause", pause_form(True), methods=["POST"]),
            Route("/workflows/{workflow}/resume", pause_form(False), methods=["POST"])]


def _why(event: EventRecord) -> str | None:
    """Why a quarantined, rejected or failed event was not processed, in a sentence with what to do."""
    error = event.error
    reason = error.get("reason") if isinstance(error, dict) else error
    problems = error.get("schema_errors") if isinstance(error, dict) else None
    if isinstance(problems, list):
        reason = "; ".join(f"{e.get('pointer') or '/'} {e.get('message')}" for e in problems if isinstance(e, dict))
    reason = reason or (error.get("error") if isinstance(error, dict) else None) or "no reason was recorded"
    if event.status == "quarantined":
        return (f"The payload did not match the endpoint's schema: {reason}. Fix the sender (or the schema in "
                "events/), then Replay it.")
    if event.status == "rejected":
        return f"Refused at the door: {reason}. It was never processed; a sender retry with a good request is."
    if event.status == "failed":
        return f"A consumer failed on it: {reason}. Fix the cause, then Replay it."
    return None
