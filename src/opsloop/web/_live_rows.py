"""Live rows for a list page whose first page stays current without a reload (a sync's runs, a source's runs).

The page's table carries ``data-live-rows="<stream url>"``; ``opsloop.js`` listens to it and puts the rows it
is sent into the table: ``event: rows`` (the HTML rows of the items newer than the newest shown, newest first)
and ``event: row`` (the new HTML row of an item shown running, once its status changes). The stream looks at
the list's newest page every ``poll`` seconds, and ends when the server stops.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from starlette.responses import StreamingResponse

Item = Mapping[str, object]


def sse_event(kind: str, data: dict[str, object]) -> str:
    """One server-sent event: ``event: <kind>`` with ``data`` as JSON."""
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


def sse_response(stream: AsyncIterator[str]) -> StreamingResponse:
    """A text/event-stream answer that proxies and caches pass through as it is written."""
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


KEEP_ALIVE = ": keep-alive\n\n"
"""A comment line a stream sends after 15 idle looks, so a proxy does not close it."""


def live_rows(stopping: asyncio.Event, poll: float, newest: Callable[[], Sequence[Item]],
              place: Callable[[Item], tuple[float, str]], render: Callable[[Item], str],
              after: tuple[float, str] | None, watch: Sequence[str]) -> StreamingResponse:
    """The stream: ``newest()`` (run in a thread) gives the list's newest page, newest first; ``place`` an item's
    ``(time, id)`` as the list orders it (``after``: the newest shown); ``render`` its row. ``watch``: the ids of
    the items shown with status ``running``."""
    watched = {w: "running" for w in watch if w}

    async def stream() -> AsyncIterator[str]:
        key = after
        yield "retry: 2000\nevent: hello\ndata: {}\n\n"
        idle = 0
        while not stopping.is_set():
            await asyncio.sleep(poll)
            found = await asyncio.to_thread(newest)
            fresh = [i for i in found if key is None or place(i) > key]
            sent = False
            if fresh:
                key = place(fresh[0])
                yield sse_event("rows", {"html": "".join(render(i) for i in fresh), "count": len(fresh)})
                sent = True
                watched.update({place(i)[1]: "running" for i in fresh if i.get("status") == "running"})
            for item in found:
                ident = place(item)[1]
                if ident not in watched or item.get("status") == watched[ident]:
                    continue
                if item not in fresh:
                    yield sse_event("row", {"id": ident, "html": render(item)})
                    sent = True
                del watched[ident]
            idle = 0 if sent else idle + 1
            if idle and idle % 15 == 0:
                yield KEEP_ALIVE

    return sse_response(stream())
