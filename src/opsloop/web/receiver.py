"""The ASGI app of a receiver process (``server.receiver_processes``).

Webhooks are verified, validated and answered here; their events are committed by the main process
through the append channel. Every other request (API, pages, dashboards' server push, Slack
interactions) is passed through, streamed both ways, to the main process on its private socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import httpx
from starlette.types import Receive, Scope, Send

from ..events.inbox import Inbox
from ..events.remote import RemoteCommitter
from ..settings import Settings
from .guard import ClientGone, read_bounded, send_json, too_large, with_security_headers
from .server import HookFastPath, _respond

_HOP_BY_HOP = {
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
}
_ANSWER_DROPS = _HOP_BY_HOP | {b"date", b"server"}  # uvicorn here adds its own
_FORWARD_DROPS = _HOP_BY_HOP | {b"x-forwarded-for"}  # the client's own claim; ours replaces it


@dataclass
class ReceiverHost:
    """Stands in for the ``App`` on the webhook path."""

    inbox: Inbox
    settings: Settings


class PassThrough:
    """Forward a request to the main process's HTTP socket and stream its answer back.

    Each request goes out with exactly its client's headers (less hop-by-hop ones, and with
    ``X-Forwarded-For`` set to the address this process accepted it from) and comes back as exactly the
    main process's answer: the transport is used directly, without a client, so no cookie jar or default
    header is shared between callers. A body is read only up to ``limit`` bytes (413 past it).
    """

    def __init__(self, uds: str, limit: int) -> None:
        self.transport = httpx.AsyncHTTPTransport(uds=uds)
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no websockets here; lifespan is the receiver app's own
            return
        send = with_security_headers(send)
        try:
            body = await read_bounded(scope, receive, self.limit)
        except ClientGone:
            return
        if body is None:
            await send_json(send, 413, too_large(self.limit), {"connection": "close"})
            return
        client = scope.get("client")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _FORWARD_DROPS]
        headers.append((b"x-forwarded-for", str(client[0] if client else "unknown").encode("latin-1")))
        target = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        url = "http://opsloop" + target.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
        request = httpx.Request(scope["method"], url, headers=headers, content=body,
                                extensions={"timeout": {"connect": 5.0, "read": None, "write": None, "pool": None}})
        try:
            response = await self.transport.handle_async_request(request)
        except httpx.HTTPError:
            await _respond(send, 503, {"error": "the main opsloop process is not answering; retry shortly"},
                           {"Retry-After": "2"})
            return
        try:
            await send({
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(k, v) for k, v in response.headers.raw if k.lower() not in _ANSWER_DROPS],
            })
            streaming = asyncio.create_task(self._stream(response, send))
            gone = asyncio.create_task(_disconnected(receive))
            await asyncio.wait({streaming, gone}, return_when=asyncio.FIRST_COMPLETED)
            for task in (streaming, gone):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        finally:
            await response.aclose()

    @staticmethod
    async def _stream(response: httpx.Response, send: Send) -> None:
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def aclose(self) -> None:
        await self.transport.aclose()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class ReceiverApp:
    """Lifespan: connect the append channel at start, close it (after uvicorn drained requests) at stop."""

    def __init__(self, host: ReceiverHost, committer: RemoteCommitter, upstream_uds: str) -> None:
        self.committer = committer
        self.passthrough = PassThrough(upstream_uds, host.settings.max_request_body)
        self.hooks = HookFastPath(host, self.passthrough)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.hooks(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.committer.connect()
                except OSError as exc:
                    await send({"type": "lifespan.startup.failed",
                                "message": f"cannot reach the main opsloop process: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.committer.close()
                await self.passthrough.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
