"""The ASGI app of a receiver process (``server.receiver_processes``).

Webhooks are verified, validated and answered here; their events are committed by the main process
through the append channel. Every other request (API, pages, dashboards' server push, Slack
interactions) is passed through, streamed both ways, to the main process on its private socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import httpx

from ..events._remote import RemoteCommitter
from ..events.inbox import Inbox
from ..settings import Settings
from .server import HookFastPath, _respond

_HOP_BY_HOP = {
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
}
_ANSWER_DROPS = _HOP_BY_HOP | {b"date", b"server"}  # uvicorn here adds its own


@dataclass
class ReceiverHost:
    """Stands in for the ``App`` on the webhook path."""

    inbox: Inbox
    settings: Settings


class PassThrough:
    """Forward a request to the main process's HTTP socket and stream its answer back."""

    def __init__(self, uds: str) -> None:
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=uds),
            timeout=httpx.Timeout(None, connect=5.0),
            follow_redirects=False,
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # no websockets here; lifespan is the receiver app's own
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        target = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        url = "http://opsloop" + target.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
        request = self.client.build_request(scope["method"], url, headers=headers, content=b"".join(chunks))
        try:
            response = await self.client.send(request, stream=True)
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
    async def _stream(response: httpx.Response, send: Any) -> None:
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def aclose(self) -> None:
        await self.client.aclose()


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class ReceiverApp:
    """Lifespan: connect the append channel at start, close it (after uvicorn drained requests) at stop."""

    def __init__(self, host: ReceiverHost, committer: RemoteCommitter, upstream_uds: str) -> None:
        self.committer = committer
        self.passthrough = PassThrough(upstream_uds)
        self.hooks = HookFastPath(host, self.passthrough)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.hooks(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
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
