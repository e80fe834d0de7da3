"""The syncs pages: ``/syncs`` (every sync's health and last run), ``/syncs/<name>`` (its mapping, runs with
planned/sent/failed counts, the rows failing now with the destination's error code and message, "Run now"
and "Retry failed rows"), and ``/syncs/<name>/runs/<run_id>`` (every row that run handled).

The data is the same as ``GET /api/syncs`` (``syncs.listing``) and the warehouse's ``opsloop_sync`` tables;
the buttons are forms posting the session's CSRF token (``web.guard`` checks it) after a confirmation.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, SupportsInt, TypedDict
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ._live_rows import live_rows

if TYPE_CHECKING:
    from ..syncs.service import SyncService
    from .server import Web

RUNS_PAGE = 25
LIVE_POLL = 1.0
"""Seconds between two looks of ``/syncs/<name>/live`` at the sync's runs (a small query on the warehouse)."""
_CODE = re.compile(r"^(?:HTTP )?([A-Z][A-Z0-9_]{2,}|\d{3})(?:: | )(.*)$", re.DOTALL)


@dataclass
class Rejection:
    """A destination's error split into its code (``VALIDATION_ERROR``, ``RecordInvalid``, ``400``) and message."""

    code: str | None
    message: str


def split_error(error: object) -> Rejection:
    """``"VALIDATION_ERROR: Property values were not valid: …"`` -> code and message; text without a code
    keeps it all as the message."""
    text = "" if error is None else str(error)
    found = _CODE.match(text)
    if found:
        return Rejection(found.group(1), found.group(2))
    return Rejection(None, text)


def _ts(value: object) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _count(value: object) -> int:
    return int(value) if isinstance(value, SupportsInt) and value else 0


def _run_key(run: Mapping[str, object]) -> str:
    """A run's place in the newest-first list, as the page's live link gives it: ``<started_at ISO>~<run_id>``."""
    started = run.get("started_at")
    at = started.isoformat() if isinstance(started, datetime) else str(started)
    return f"{at}~{run.get('run_id')}"


def _place(run: Mapping[str, object]) -> tuple[float, str]:
    """``(started_at as epoch seconds, run_id)``: how the list orders runs (newest first)."""
    return _ts(run.get("started_at")) or 0.0, str(run.get("run_id"))


def _parse_place(text: str) -> tuple[float, str] | None:
    at, _, run_id = text.partition("~")
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return None
    return _ts(when) or 0.0, run_id


def _run_view(run: Mapping[str, object]) -> dict[str, object]:
    started, finished = _ts(run.get("started_at")), _ts(run.get("finished_at"))
    return {**run, "started_at": started, "finished_at": finished,
            "planned": sum(_count(run.get(k)) for k in ("planned_creates", "planned_updates", "planned_deletes"))}


class SyncPage(TypedDict):
    """What ``sync.html`` shows of a sync's state, besides its configuration."""

    summary: Mapping[str, object]
    runs: list[dict[str, object]]
    failing: list[dict[str, object]]
    older: str | None
    first_page: bool
    live: str | None


def routes(web: Web) -> list[Route]:
    app = web.app
    service: SyncService = app.syncs

    def missing(request: Request, name: str) -> Response:
        known = ", ".join(sorted(service.syncs)) or "none"
        return web.render(request, "missing.html", status_code=404, title="No such sync",
                          message=f"There is no sync {name!r} in this project (syncs: {known}).", back="/syncs",
                          back_label="all syncs")

    async def syncs_page(request: Request) -> Response:
        from ..syncs.listing import sync_listing

        listing = await asyncio.to_thread(sync_listing, app)
        runs = await asyncio.to_thread(_last_runs, [str(s["sync"]) for s in listing])
        for row in listing:
            row["last_run_ts"] = runs.get(str(row["sync"]))
        return web.render(request, "syncs.html", syncs=listing, message=request.query_params.get("message"))

    def _last_runs(names: list[str]) -> dict[str, float | None]:
        from ..syncs.listing import recent_runs

        out: dict[str, float | None] = {}
        for name in names:
            found = recent_runs(app, name, 1)
            out[name] = _ts(found[0]["started_at"]) if found else None
        return out

    async def sync_page(request: Request) -> Response:
        from ..syncs.diff import SyncTables
        from ..syncs.listing import recent_runs, sync_listing

        name = request.path_params["name"]
        if name not in service.syncs:
            return missing(request, name)
        loaded = service.syncs[name]
        raw_before = request.query_params.get("before", "").strip()
        before: tuple[datetime, str] | None = None
        if raw_before:
            at, _, run_id = raw_before.partition("~")
            try:
                before = (datetime.fromisoformat(at), run_id)
            except ValueError:
                return web.render(request, "missing.html", status_code=400, title="Syncs",
                                  message=f"'before' should be what the Older link gives, not {raw_before!r}",
                                  back=f"/syncs/{quote(name)}", back_label=f"sync {name}")

        def load() -> SyncPage:
            summary = next(s for s in sync_listing(app) if s["sync"] == name)
            tables = SyncTables(app.warehouse, name)
            failing: list[dict[str, object]] = [
                {**r, "updated_at": _ts(r.get("updated_at")), "rejection": split_error(r.get("error"))}
                for r in tables.failed_rows(100)]
            found = recent_runs(app, name, RUNS_PAGE + 1, before)
            older = None
            if len(found) > RUNS_PAGE:
                last = found[RUNS_PAGE - 1]
                started = last["started_at"]
                at = started.isoformat() if isinstance(started, datetime) else str(started)
                older = "?" + urlencode({"before": f"{at}~{last['run_id']}"})
            live = None
            if before is None:  # the first page gains the runs that start while it is open
                top = _run_key(found[0]) if found else ""
                watch = ",".join(str(r["run_id"]) for r in found[:RUNS_PAGE] if r.get("status") == "running")
                live = f"/syncs/{quote(name)}/live?" + urlencode({"after": top, "watch": watch})
            return {"summary": summary, "runs": [_run_view(r) for r in found[:RUNS_PAGE]], "failing": failing,
                    "older": older, "first_page": before is None, "live": live}

        data = await asyncio.to_thread(load)
        cfg = loaded.config
        mapping = [(dest, value.get("sql") if isinstance(value, dict) else value)
                   for dest, value in cfg.mapping.items()]
        trigger = cfg.triggers
        triggers = [t for t in (
            "after its model builds" if trigger.after_build else None,
            f"on the schedule {trigger.cron}" if trigger.cron else None,
            f"on event {trigger.event}" if trigger.event else None) if t] or ["only when run by hand"]
        return web.render(request, "sync.html", name=name, sync=loaded, cfg=cfg, mapping=mapping,
                          destination=cfg.destination, triggers=triggers, message=request.query_params.get("message"),
                          **data)

    async def sync_run_page(request: Request) -> Response:
        from ..syncs.diff import SyncTables
        from ..syncs.listing import one_run

        name, run_id = request.path_params["name"], request.path_params["run_id"]
        if name not in service.syncs:
            return missing(request, name)

        def load() -> tuple[Mapping[str, object] | None, Sequence[Mapping[str, object]]]:
            return one_run(app, name, run_id), SyncTables(app.warehouse, name).run_rows(run_id)

        run, rows = await asyncio.to_thread(load)
        if run is None:
            return web.render(request, "missing.html", status_code=404, title="No such sync run",
                              message=f"Sync {name!r} has no run {run_id!r}.", back=f"/syncs/{quote(name)}",
                              back_label=f"sync {name}")
        shown = [{**r, "recorded_at": _ts(r.get("recorded_at")), "rejection": split_error(r.get("error"))}
                 for r in rows]
        return web.render(request, "sync_run.html", name=name, run=_run_view(run), rows=shown)

    async def sync_live(request: Request) -> Response:
        """Server-sent events for the first page of ``/syncs/<name>``: ``event: rows`` with the rows (HTML) of the
        runs that started after ``after`` (``started_at~run_id`` as the page gives it), newest first, and ``event:
        row`` with the new row of a run shown running (``watch``: their ids) once it ends; opsloop.js puts them in
        the table. It ends when the server stops."""
        from ..syncs.listing import recent_runs

        name = request.path_params["name"]
        if name not in service.syncs:
            return missing(request, name)
        raw_after = request.query_params.get("after", "").strip()
        after = _parse_place(raw_after) if raw_after else None
        if raw_after and after is None:
            return web.render(request, "missing.html", status_code=400, title="Syncs",
                              message=f"'after' should be what the page gives, not {raw_after!r}",
                              back=f"/syncs/{quote(name)}", back_label=f"sync {name}")
        row = web.env.get_template("_sync_run_row.html")
        return live_rows(app.stopping, LIVE_POLL, lambda: recent_runs(app, name, RUNS_PAGE), _place,
                         lambda r: row.render(r=_run_view(r), name=name), after,
                         request.query_params.get("watch", "").split(","))

    async def run_now(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in service.syncs:
            return missing(request, name)
        form = await request.form()
        retry = form.get("retry") == "failed"
        forgiven = 0
        if retry:
            from ..syncs.diff import SyncTables

            async with service.lock(name):
                forgiven = await asyncio.to_thread(SyncTables(app.warehouse, name).retry_failed)
        result = await service.run_now(name, trigger="page:retry" if retry else "page")
        told = f"{'retried ' + str(forgiven) + ' failed rows: ' if retry else ''}run {result.status}: sent " \
               f"{result.sent}, failed {result.failed}" + (f" ({result.error})" if result.error else "")
        return RedirectResponse(f"/syncs/{quote(name)}?message={quote(told)}", status_code=303)

    return [Route("/syncs", syncs_page), Route("/syncs/{name}", sync_page),
            Route("/syncs/{name}/run", run_now, methods=["POST"]),
            Route("/syncs/{name}/runs/{run_id}", sync_run_page), Route("/syncs/{name}/live", sync_live)]
