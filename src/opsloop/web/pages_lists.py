"""The events and runs lists: filters (status, endpoint or workflow, name), text search over payloads and
errors, and keyset pagination ("Older" continues after the last row shown, so a page costs the same on
the millionth event as on the first)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..state import ALL_STATUSES, MIN_INDEXED, EventRecord, StateStore
from ..workflows import runs
from ..workflows.project_files import WORKFLOWS
from ._live_rows import KEEP_ALIVE, sse_event, sse_response

if TYPE_CHECKING:
    from .server import Web

PAGE_SIZE = 50

LIVE_POLL = 1.0
"""Seconds between two looks of ``/runs/live`` at the runs (the run page's stream looks every 0.5 s)."""

LIVE_WATCH = 50
"""The most unfinished runs of a page whose rows one ``/runs/live`` stream keeps current."""


def _clean(request: Request, *names: str) -> dict[str, str]:
    return {n: v.strip() for n in names if (v := request.query_params.get(n, "")).strip()}


def _older(filters: dict[str, str], before: str) -> str:
    return "?" + urlencode({**filters, "before": before})


def _search_note(store: StateStore, text: str) -> str | None:
    """How far the search index covered this search (results are complete either way: events past it are
    scanned), or None when it covered every event."""
    if not store.search_index:
        return "Searched by a scan of every event: this store has no text index (see docs/pages.md)."
    if len(text) < MIN_INDEXED:
        return f"Searched by a scan of every event: the text index finds {MIN_INDEXED} characters or more."
    upto, top = store.search_indexed_upto(), store.max_seq()
    if upto >= top:
        return None
    return (f"The text index is complete up to event #{upto}; the {top - upto:,} newer events were searched "
            "by a scan.")


def routes(web: Web) -> list[Route]:
    app = web.app

    def bad(request: Request, page: str, message: str) -> Response:
        return web.render(request, "missing.html", status_code=400, title=page.title(), message=message,
                          back=f"/{page}", back_label=f"all {page}")

    async def events_page(request: Request) -> Response:
        filters = _clean(request, "status", "endpoint", "name", "q")
        if filters.get("status") and filters["status"] not in ALL_STATUSES:
            return bad(request, "events", f"unknown status {filters['status']!r}; use one of "
                                          f"{', '.join(ALL_STATUSES)}")
        raw_before = request.query_params.get("before", "").strip()
        if raw_before and not raw_before.isdigit():
            return bad(request, "events", f"'before' is the position of an event in the log (a whole number), "
                                          f"not {raw_before!r}")
        before = int(raw_before) if raw_before else None

        def load() -> list[EventRecord]:
            return app.store.list_events(status=filters.get("status"), endpoint=filters.get("endpoint"),
                                         name=filters.get("name"), limit=PAGE_SIZE + 1, before_seq=before,
                                         search=filters.get("q"))

        found = await asyncio.to_thread(load)
        more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        older = _older(filters, str(found[-1].seq)) if more and found else None
        note = await asyncio.to_thread(_search_note, app.store, filters["q"]) if filters.get("q") else None
        return web.render(
            request, "events.html", events=found, filters=filters, statuses=ALL_STATUSES, search_note=note,
            endpoints=sorted(app.project.endpoints), older=older, first_page=before is None,
            newest="?" + urlencode(filters) if filters else "/events", message=request.query_params.get("message"),
        )

    def run_filters(request: Request) -> tuple[dict[str, str], Response | None]:
        filters = _clean(request, "status", "workflow", "q")
        if filters.get("status") and filters["status"] not in runs.RUN_STATUSES:
            return filters, bad(request, "runs", f"unknown status {filters['status']!r}; use one of "
                                                 f"{', '.join(runs.RUN_STATUSES)}")
        return filters, None

    def run_key(request: Request, name: str) -> tuple[float, str] | Response | None:
        """The ``created_at~id`` of a run (as the Older link and the live rows give it) in parameter ``name``."""
        raw = request.query_params.get(name, "").strip()
        if not raw:
            return None
        at, _, run_id = raw.partition("~")
        try:
            when = float(at)
            if not math.isfinite(when):  # nan matches no run, inf every one
                raise ValueError(at)
            return when, run_id
        except ValueError:
            return bad(request, "runs", f"{name!r} should be what the {'Older link' if name == 'before' else 'page'} "
                                        f"gives, not {raw!r}")

    def filters_and_key(request: Request, name: str) -> tuple[dict[str, str], tuple[float, str] | None] | Response:
        """The list's filters and the run key in parameter ``name``, or the page refusing either."""
        filters, refused = run_filters(request)
        if refused is not None:
            return refused
        key = run_key(request, name)
        return key if isinstance(key, Response) else (filters, key)

    async def runs_page(request: Request) -> Response:
        asked = filters_and_key(request, "before")
        if isinstance(asked, Response):
            return asked
        filters, before = asked

        def load() -> list[runs.RunRow]:
            return runs.list_runs(app.store, workflow=filters.get("workflow"), status=filters.get("status"),
                                  limit=PAGE_SIZE + 1, before=before, search=filters.get("q"))

        found = await asyncio.to_thread(load)
        more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        older = _older(filters, f"{found[-1].created_at!r}~{found[-1].id}") if more and found else None
        workflows = sorted(WORKFLOWS.of(app.project))
        live = None
        if before is None:  # the first page gains the runs that start while it is open
            top = f"{found[0].created_at!r}~{found[0].id}" if found else ""
            watch = ",".join([r.id for r in found if r.status not in runs.FINISHED][:LIVE_WATCH])
            live = "/runs/live?" + urlencode({**filters, "after": top, "watch": watch})
        return web.render(request, "runs.html", runs=[r.summary() for r in found], filters=filters,
                          statuses=runs.RUN_STATUSES, workflows=workflows, older=older, first_page=before is None,
                          newest="?" + urlencode(filters) if filters else "/runs", live=live)

    async def runs_live(request: Request) -> Response:
        """Server-sent events for the first page of ``/runs`` (the same filters): ``event: rows`` with the rows
        (HTML) of the runs created after ``after`` (``created_at~id``), newest first, and ``event: row`` with the
        new row of a run shown unfinished (``watch``: their ids) each time it moves on; opsloop.js puts them in
        the table. It ends when the server stops."""
        asked = filters_and_key(request, "after")
        if isinstance(asked, Response):
            return asked
        filters, after = asked
        watch = [w for w in request.query_params.get("watch", "").split(",") if w][:LIVE_WATCH]
        stopping = app.stopping
        row = web.env.get_template("_run_row.html")

        def versions(ids: list[str]) -> dict[str, tuple[float, str]]:
            return {r.id: (r.updated_at, r.status) for r in runs.get_runs(app.store, ids)}

        def newer(key: tuple[float, str] | None) -> list[runs.RunRow]:
            # ``since``: only the runs from the newest shown on are read (the (created_at, id) index bounds
            # them), so a look costs the few new runs, with a search or without
            page = runs.list_runs(app.store, workflow=filters.get("workflow"), status=filters.get("status"),
                                  since=key[0] if key else None, limit=PAGE_SIZE, search=filters.get("q"))
            return [r for r in page if key is None or (r.created_at, r.id) > key]

        async def stream() -> AsyncIterator[str]:
            key = after
            watched = await asyncio.to_thread(versions, watch)
            yield "retry: 2000\nevent: hello\ndata: {}\n\n"
            idle = 0
            while not stopping.is_set():
                await asyncio.sleep(LIVE_POLL)
                sent = False
                fresh = await asyncio.to_thread(newer, key)
                if fresh:
                    key = (fresh[0].created_at, fresh[0].id)
                    html = "".join(row.render(r=r.summary()) for r in fresh)
                    yield sse_event("rows", {"html": html, "count": len(fresh)})
                    sent = True
                    for r in fresh:
                        if r.status not in runs.FINISHED and len(watched) < LIVE_WATCH:
                            watched[r.id] = (r.updated_at, r.status)
                if watched:
                    now = await asyncio.to_thread(runs.get_runs, app.store, list(watched))
                    for r in now:
                        if (r.updated_at, r.status) != watched[r.id]:
                            yield sse_event("row", {"id": r.id, "html": row.render(r=r.summary())})
                            sent = True
                            watched[r.id] = (r.updated_at, r.status)
                            if r.status in runs.FINISHED:
                                del watched[r.id]
                    for gone in set(watched) - {r.id for r in now}:
                        del watched[gone]
                idle = 0 if sent else idle + 1
                if idle and idle % 15 == 0:
                    yield KEEP_ALIVE

        return sse_response(stream())

    return [Route("/events", events_page), Route("/runs", runs_page), Route("/runs/live", runs_live)]
