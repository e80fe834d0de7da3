"""A local Slack Web API for tests and the benchmark: the methods opsloop uses, as Slack's docs describe them.

- ``chat.postMessage`` (JSON or form body; ``channel`` by ID or name; ``text`` or ``blocks`` required;
  ``metadata`` kept) → ``{"ok": true, "channel": ID, "ts": ..., "message": {...}}``
- ``chat.update`` (channel ID and ts; ``message_not_found`` / ``channel_not_found``)
- ``conversations.history`` (GET or POST; newest first; ``oldest`` / ``latest`` / ``limit`` / ``cursor``;
  metadata only with ``include_all_metadata``) and ``conversations.list`` (cursor pagination)
- errors are HTTP 200 with ``{"ok": false, "error": "..."}``; auth via ``Authorization: Bearer``
  (``not_authed`` / ``invalid_auth``); rate limits are HTTP 429 with ``Retry-After`` and ``ratelimited``.

Every call is logged in ``calls``; ``rate_limit(method, times, retry_after)`` makes the next calls answer 429.
Connections are kept alive as HTTP/1.1 says (every answer has a ``Content-Length``; Nagle is off, so an
answer's headers and body are not held back waiting for an ACK); ``connections`` counts those accepted.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "xoxb-test-token"


class FakeSlack:
    def __init__(self, channels: dict[str, str] | None = None, page_size: int = 100) -> None:
        self.channels = channels or {"C0SALES001": "sales", "C0GENERAL01": "general", "C0OPS00001": "ops"}
        self.messages: dict[str, list[dict[str, Any]]] = {cid: [] for cid in self.channels}
        self.calls: list[tuple[float, str, dict[str, Any]]] = []
        self.page_size = page_size
        self.delay: dict[str, float] = {}
        self._limits: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self.connections = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake.connections += 1

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        ThreadingHTTPServer.request_queue_size = 1024
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- test helpers ------------------------------------------------------------------------
    def rate_limit(self, method: str, times: int = 1, retry_after: float = 1) -> None:
        with self._lock:
            self._limits.setdefault(method, []).extend([retry_after] * times)

    def posts(self) -> list[dict[str, Any]]:
        return [params for _, method, params in self.calls if method == "chat.postMessage"]

    def all_messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m for msgs in self.messages.values() for m in msgs]

    def method_calls(self, method: str) -> list[dict[str, Any]]:
        return [params for _, m, params in self.calls if m == method]

    # -- the API -----------------------------------------------------------------------------
    def _handle(self, req: BaseHTTPRequestHandler, verb: str) -> None:
        parts = urlsplit(req.path)
        method = parts.path.rsplit("/", 1)[-1]
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        params: dict[str, Any] = {k: v[0] for k, v in parse_qs(parts.query).items()}
        ctype = req.headers.get("Content-Type", "")
        if raw and "json" in ctype:
            params.update(json.loads(raw))
        elif raw:
            params.update({k: v[0] for k, v in parse_qs(raw.decode()).items()})
        for key in ("blocks", "metadata"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        with self._lock:
            self.calls.append((time.time(), method, params))
            pending = self._limits.get(method)
            limited = pending.pop(0) if pending else None
        if limited is not None:
            self._send(req, 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(int(limited))})
            return
        auth = req.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else params.get("token")
        if not token:
            self._send(req, 200, {"ok": False, "error": "not_authed"})
            return
        if token != TOKEN:
            self._send(req, 200, {"ok": False, "error": "invalid_auth"})
            return
        handler = {
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "conversations.history": self._history,
            "conversations.list": self._list,
        }.get(method)
        if handler is None:
            self._send(req, 404, {"ok": False, "error": "unknown_method"})
            return
        with self._lock:
            body = handler(params)
        if method in self.delay:  # the work is done; the answer is slow (a client killed now never sees it)
            time.sleep(self.delay[method])
        self._send(req, 200, body)

    def _send(self, req: BaseHTTPRequestHandler, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            req.send_response(status)
            req.send_header("Content-Type", "application/json; charset=utf-8")
            req.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                req.send_header(k, v)
            req.end_headers()
            req.wfile.write(data)
        except OSError:
            req.close_connection = True  # the client went away (killed): nothing to answer

    def _resolve(self, channel: str | None) -> str | None:
        if not channel:
            return None
        if channel in self.channels:
            return channel
        name = channel.lstrip("#")
        return next((cid for cid, n in self.channels.items() if n == name), None)

    def _post(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = self._resolve(p.get("channel"))
        if cid is None:
            return {"ok": False, "error": "channel_not_found"}
        if not p.get("text") and not p.get("blocks"):
            return {"ok": False, "error": "no_text"}
        self._counter += 1
        ts = f"{int(time.time())}.{self._counter:06d}"
        message = {"type": "message", "user": "U0BOT00001", "bot_id": "B0BOT00001", "text": p.get("text", ""),
                   "ts": ts}
        if p.get("blocks"):
            message["blocks"] = p["blocks"]
        if p.get("metadata"):
            message["metadata"] = p["metadata"]
        self.messages[cid].append(message)
        return {"ok": True, "channel": cid, "ts": ts, "message": {k: v for k, v in message.items() if k != "metadata"}}

    def _update(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = p.get("channel")
        if cid not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        for message in self.messages[cid]:
            if message["ts"] == p.get("ts"):
                if "text" in p:
                    message["text"] = p["text"]
                if "blocks" in p:
                    if p["blocks"]:
                        message["blocks"] = p["blocks"]
                    else:
                        message.pop("blocks", None)
                message["edited"] = {"user": "U0BOT00001", "ts": f"{time.time():.6f}"}
                return {"ok": True, "channel": cid, "ts": message["ts"], "text": message["text"],
                        "message": {k: v for k, v in message.items() if k != "metadata"}}
        return {"ok": False, "error": "message_not_found"}

    def _history(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = p.get("channel")
        if cid not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(p.get("oldest") or 0)
        latest = float(p.get("latest") or time.time() + 1)
        found = [m for m in reversed(self.messages[cid]) if oldest < float(m["ts"]) < latest]
        start = int(base64.b64decode(p["cursor"]).decode()) if p.get("cursor") else 0
        limit = min(int(p.get("limit") or 100), 999, self.page_size)
        page = found[start : start + limit]
        with_meta = str(p.get("include_all_metadata", "")).lower() in ("true", "1")
        messages = [m if with_meta else {k: v for k, v in m.items() if k != "metadata"} for m in page]
        more = start + limit < len(found)
        cursor = base64.b64encode(str(start + limit).encode()).decode() if more else ""
        return {"ok": True, "messages": messages, "has_more": more, "pin_count": 0,
                "response_metadata": {"next_cursor": cursor}}

    def _list(self, p: dict[str, Any]) -> dict[str, Any]:
        items = [{"id": cid, "name": name, "is_channel": True, "is_member": True}
                 for cid, name in self.channels.items()]
        start = int(base64.b64decode(p["cursor"]).decode()) if p.get("cursor") else 0
        limit = int(p.get("limit") or 100)
        more = start + limit < len(items)
        cursor = base64.b64encode(str(start + limit).encode()).decode() if more else ""
        return {"ok": True, "channels": items[start : start + limit], "response_metadata": {"next_cursor": cursor}}
