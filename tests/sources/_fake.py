"""A small threaded HTTP server for vendor fakes: routes, injected failures, a request log."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[..., Reply]


class FakeServer:
    """Subclasses add routes with ``self.route(method, regex, handler)``; handlers get (req, *groups)."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.log: list[Request] = []
        self.inject: list[tuple[Callable[[Request], bool], Reply]] = []
        """One-shot replies: the first matching predicate answers instead of the route."""
        self.crash_after: int | None = None
        """Answer 500 forever once this many data pages were served (a vendor outage mid-run)."""
        self.lock = threading.Lock()
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _do(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = Request(self.command, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in
                                                                                  self.headers.items()}, body)
                reply = outer.dispatch(req)
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _do

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def dispatch(self, req: Request) -> Reply:
        with self.lock:
            self.log.append(req)
            for i, (pred, reply) in enumerate(self.inject):
                if pred(req):
                    del self.inject[i]
                    return reply
            for method, pattern, handler in self.routes:
                m = pattern.match(req.path)
                if m and method == req.method:
                    return handler(req, *m.groups())
        return Reply(404, {"message": f"no route {req.method} {req.path}"})

    def requests_to(self, fragment: str) -> list[Request]:
        return [r for r in self.log if fragment in r.path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
