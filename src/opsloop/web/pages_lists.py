"""The events and runs lists: filters (status, endpoint or workflow, name), text search over payloads and
errors, and keyset pagination ("Older" continues after the last row shown, so a page costs the same on
the millionth event as on the first)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..state import ALL_STATUSES, MIN_INDEXED, EventRecord, StateStore
from ..workflows import runs
from ..workflows.project_files import WORKFLOWS

if TYPE_CHECKING:
    from .server import Web

PAGE_SIZE = 50


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

    async def runs_page(request: Request) -> Response:
        filters = _clean(request, "status", "workflow", "q")
        if filters.get("status") and filters["status"] not in runs.RUN_STATUSES:
            return bad(request, "runs", f"unknown status {filters['status']!r}; use one of "
                                        f"{', '.join(runs.RUN_STATUSES)}")
        raw_before = request.query_params.get("before", "").strip()
        before: tuple[float, str] | None = None
        if raw_before:
            at, _, run_id = raw_before.partition("~")
            try:
                before = (float(at), run_id)
            except ValueError:
                return bad(request, "runs", f"'before' should be what the Older link gives, not {raw_before!r}")

        def load() -> list[runs.RunRow]:
            return runs.list_runs(app.store, workflow=filters.get("workflow"), status=filters.get("status"),
                                  limit=PAGE_SIZE + 1, before=before, search=filters.get("q"))

        found = await asyncio.to_thread(load)
        more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        older = _older(filters, f"{found[-1].created_at!r}~{found[-1].id}") if more and found else None
        workflows = sorted(WORKFLOWS.of(app.project))
        return web.render(request, "runs.html", runs=[r.summary() for r in found], filters=filters,
                          statuses=runs.RUN_STATUSES, workflows=workflows, older=older, first_page=before is None,
                          newest="?" + urlencode(filters) if filters else "/runs")

    return [Route("/events", events_page), Route("/runs", runs_page)]
