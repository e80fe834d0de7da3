"""The people pages, over the identity graph and the golden record (``identity.yml``, ``segments/``):

- ``/people?q=``: find a person by email, phone, a system's record id (``crm:003…`` or the bare id) or part
  of an identifier;
- ``/people/<person_id>``: the profile, as a CDP shows it: every golden field with its value, the system
  whose value won and when it was set, the identifiers, the linked records per system, the person's events
  in the log and their segment history;
- ``/segments`` and ``/segments/<name>``: members, who entered and exited when, the evaluations;
- ``/conflicts``: identifier values the graph did not merge on (limits, shared values), newest first.

The data is ``IdentityService``'s (the same as ``/api/identity/profile`` and ``opsloop profile``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..errors import OpsloopError
from ..narrow import mapping, records

if TYPE_CHECKING:
    from ..identity.service import IdentityService
    from ..state import EventRecord
    from .server import Web

T = TypeVar("T")


def _ts(value: object) -> object:
    return value.timestamp() if isinstance(value, datetime) else value


def _times(rows: Iterable[Mapping[str, object]]) -> list[dict[str, object]]:
    return [{k: _ts(v) for k, v in row.items()} for row in rows]


def routes(web: Web) -> list[Route]:
    app = web.app
    service: IdentityService = app.identity

    def unavailable(request: Request, title: str, message: str, status: int = 404) -> Response:
        return web.render(request, "missing.html", status_code=status, title=title, message=message,
                          back="/people", back_label="people")

    async def attempt(request: Request, title: str, work: Callable[[], T], missing: int = 409) -> T | Response:
        """``work`` in a thread; an identity error is a page saying it (``missing``: the status for
        "nothing by that name"; 409 is "not ready yet", e.g. identities not built)."""
        from ..identity.service import UnknownSegment

        try:
            return await asyncio.to_thread(work)
        except UnknownSegment as exc:
            return unavailable(request, title, str(exc))
        except OpsloopError as exc:
            return unavailable(request, title, str(exc), missing)

    def configured() -> bool:
        return service.project.config is not None

    async def people_page(request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        if not configured():
            return unavailable(request, "People", "This project has no identity.yml, so there are no people to "
                                                  "show; write one (see docs/identity.md).", 200)
        found: Sequence[Mapping[str, object]] = []
        error = None
        if query:
            try:
                found = await asyncio.to_thread(service.search, query)
            except OpsloopError as exc:
                error = str(exc)
            if len(found) == 1 and not error:
                return RedirectResponse(f"/people/{found[0]['person_id']}", status_code=303)
        segments = await attempt(request, "People", service.segment_summary)
        if isinstance(segments, Response):
            segments = []
        return web.render(request, "people.html", query=query, found=found, error=error, segments=segments)

    async def person_page(request: Request) -> Response:
        person_id = request.path_params["person_id"]
        if not configured():
            return unavailable(request, "No such person", "This project has no identity.yml.")

        def load() -> tuple[Mapping[str, object], list[dict[str, object]], list[EventRecord]]:
            profile = service.profile(person_id)
            history = _times(service.person_segment_history(str(profile["person_id"])))
            emails = [str(i["value"]) for i in records(profile["identifiers"]) if i["type"] == "email"]
            events = app.store.list_events(search=emails[0], limit=25) if emails else []
            return profile, history, events

        data = await attempt(request, "No such person", load, missing=404)
        if isinstance(data, Response):
            return data
        profile, history, events = data
        if profile["person_id"] != person_id:  # an old id, merged into this person
            return RedirectResponse(f"/people/{profile['person_id']}", status_code=303)
        fields = [{"name": k, **mapping(v), "updated_at": _ts(mapping(v).get("updated_at"))}
                  for k, v in mapping(profile["fields"]).items()]
        by_system: dict[str, list[dict[str, object]]] = {}
        for record in _times(records(profile["records"])):
            by_system.setdefault(str(record["system"]), []).append(record)
        return web.render(request, "person.html", person=profile, fields=fields, by_system=by_system,
                          history=history, events=events)

    async def segments_page(request: Request) -> Response:
        segments = await attempt(request, "Segments", service.segment_summary)
        if isinstance(segments, Response):
            return segments
        return web.render(request, "segments.html", segments=_times(segments))

    async def segment_page(request: Request) -> Response:
        name = request.path_params["name"]
        data = await attempt(request, "No such segment", lambda: service.segment_activity(name))
        if isinstance(data, Response):
            return data
        seg = service.project.segments[name]
        return web.render(request, "segment.html", name=name, seg=seg, members=data["members"],
                          member_rows=_times(records(data["member_rows"])),
                          changes=_times(records(data["changes"])), runs=_times(records(data["runs"])))

    async def conflicts_page(request: Request) -> Response:
        rows = await attempt(request, "Conflicts", lambda: service.conflicts(200))
        if isinstance(rows, Response):
            return rows
        return web.render(request, "conflicts.html", conflicts=_times(rows))

    return [Route("/people", people_page), Route("/people/{person_id}", person_page),
            Route("/segments", segments_page), Route("/segments/{name}", segment_page),
            Route("/conflicts", conflicts_page)]
