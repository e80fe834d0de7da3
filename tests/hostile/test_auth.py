"""Who is let in, against a real `opsloop up` (alone and behind a receiver process): sessions, logout, expiry,
CSRF, throttling, security headers, body limits, and X-Forwarded-For from outside."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from opsloop.web.auth import COOKIE

from ..conftest import make_app, wait_for
from ..test_cli_server import receiver_pids
from .conftest import Running, start

CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def log_in(url: str, token: str, **client: object) -> httpx.Client:
    """A browser-like client that logged in through the form; its jar holds the session cookie."""
    browser = httpx.Client(base_url=url, timeout=15, **client)  # type: ignore[arg-type]
    answer = browser.post("/login", data={"token": token, "next": "/events"})
    assert answer.status_code == 303 and answer.headers["location"] == "/events", answer.text
    return browser


def csrf_of(browser: httpx.Client) -> str:
    page = browser.get("/events")
    assert page.status_code == 200
    found = CSRF_RE.search(page.text)
    assert found, page.text
    return found.group(1)


def from_address(url: str, address: str, **extra: object) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.x.y.z is this machine on Linux)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=url, timeout=15, transport=transport, **extra)  # type: ignore[arg-type]


def test_login_from_one_client_leaves_another_at_401(up: Running) -> None:
    with closing(log_in(up.url, up.token)) as browser:
        assert browser.get("/api/events").status_code == 200
        # ask a few times: connections behind a receiver are pooled and reused
        for _ in range(5):
            with httpx.Client(base_url=up.url, timeout=15) as stranger:
                assert stranger.get("/api/events").status_code == 401
                page = stranger.get("/events")
                assert page.status_code == 303 and page.headers["location"].startswith("/login")
                assert "set-cookie" not in page.headers
                assert stranger.post("/api/replay", json={"status": "failed"}).status_code == 401
            assert browser.get("/api/events").status_code == 200
        # a session works on every subsystem's API alike (it did on some routes and not on others)
        for path in ("/api/events", "/api/status", "/api/runs", "/api/workflows", "/api/models", "/api/syncs"):
            assert browser.get(path).status_code == 200, path
            assert httpx.get(up.url + path, timeout=15).status_code == 401, path


def test_logout_revokes_the_session(up: Running) -> None:
    browser = log_in(up.url, up.token)
    cookie = browser.cookies[COOKIE]
    assert len(cookie) >= 40 and up.token not in cookie
    csrf = csrf_of(browser)
    forged = browser.post("/logout", data={})
    assert forged.status_code == 403  # a cross-site form cannot log a user out either
    assert browser.get("/api/events").status_code == 200
    done = browser.post("/logout", data={"csrf": csrf})
    assert done.status_code == 303 and done.headers["location"] == "/login"
    browser.close()
    # the old cookie, replayed by someone who kept it, opens nothing
    replayed = {"cookie": f"{COOKIE}={cookie}"}
    assert httpx.get(f"{up.url}/api/events", headers=replayed, timeout=15).status_code == 401
    page = httpx.get(f"{up.url}/events", headers=replayed, timeout=15)
    assert page.status_code == 303
    assert page.headers["set-cookie"].startswith(f"{COOKIE}=;") and "Max-Age=0" in page.headers["set-cookie"]
    # a new login gets a new session; the old one stays dead
    with closing(log_in(up.url, up.token)) as again:
        assert again.cookies[COOKIE] != cookie
        assert again.get("/api/events").status_code == 200
    assert httpx.get(f"{up.url}/api/events", headers=replayed, timeout=15).status_code == 401


@pytest.fixture(params=["main", "receiver"])
def short_sessions(request: pytest.FixtureRequest, project_dir: Path) -> Iterator[Running]:
    """`opsloop up` whose logins last 3 s (``server.session_expiry: 3s``)."""
    config = project_dir / "opsloop.yml"
    config.write_text(config.read_text().replace("server:\n", "server:\n  session_expiry: 3s\n", 1))
    running = start(project_dir, *(("--receivers", "1") if request.param == "receiver" else ()))
    try:
        yield running
    finally:
        running.proc.stop()


def test_an_expired_session_is_refused(short_sessions: Running) -> None:
    up = short_sessions
    answer = httpx.post(f"{up.url}/login", data={"token": up.token}, timeout=15)
    assert answer.status_code == 303
    assert "Max-Age=3" in answer.headers["set-cookie"]
    cookie = {"cookie": f"{COOKIE}={answer.cookies[COOKIE]}"}
    assert httpx.get(f"{up.url}/api/events", headers=cookie, timeout=15).status_code == 200
    # the browser would drop it after Max-Age; the server must refuse it too when sent anyway
    wait_for(lambda: httpx.get(f"{up.url}/api/events", headers=cookie, timeout=15).status_code == 401, 10,
             interval=0.25, what="the session to expire")
    assert httpx.get(f"{up.url}/events", headers=cookie, timeout=15).status_code == 303


def test_cookie_writes_need_the_csrf_token_bearer_writes_do_not(up: Running) -> None:
    bad = up.hook(b'{"email": "not-an-email", "name": "x"}')
    assert bad.status_code == 422
    event_id = bad.json()["id"]
    with closing(log_in(up.url, up.token)) as browser:
        csrf = csrf_of(browser)
        for path, body in ((f"/api/events/{event_id}/replay", {}), ("/api/replay", {"status": "quarantined"}),
                           ("/api/workflows/demo_request_sla/pause", {}), ("/api/models/build", {})):
            refused = browser.post(path, json=body)
            assert refused.status_code == 403, (path, refused.text)
            assert "CSRF" in refused.json()["error"]
            wrong = browser.post(path, json=body, headers={"X-CSRF-Token": "0" * 64})
            assert wrong.status_code == 403, path
        form = browser.post(f"/events/{event_id}/replay", data={})
        assert form.status_code == 403
        ok = browser.post("/api/workflows/demo_request_sla/pause", json={}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200 and ok.json()["paused"] is True
        done = browser.post(f"/events/{event_id}/replay", data={"csrf": csrf})
        assert done.status_code == 303 and done.headers["location"].startswith("/events?message=")
    # another session's token does not fit this one
    with closing(log_in(up.url, up.token)) as other:
        assert other.post("/api/replay", json={"status": "quarantined"},
                          headers={"X-CSRF-Token": csrf}).status_code == 403
    with up.api() as api:  # the token needs no CSRF token: a browser never sends it by itself
        assert api.post("/api/workflows/demo_request_sla/resume", json={}).status_code == 200
        assert api.post("/api/replay", json={"status": "quarantined"}).status_code == 202


def _check_headers(response: httpx.Response) -> None:
    csp = response.headers.get("content-security-policy", "")
    directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == "default-src 'self'", csp
    assert directives.get("script-src") == "script-src 'self'", csp
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", csp
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("referrer-policy") in ("same-origin", "no-referrer")


def test_security_headers_on_pages_and_api(up: Running) -> None:
    with httpx.Client(base_url=up.url, timeout=15) as stranger:
        for path in ("/login", "/events", "/api/events", "/static/opsloop.css", "/nope"):
            _check_headers(stranger.get(path))
    pages = ("/", "/events", "/runs", "/workflows", "/models", "/syncs", "/outbox", "/dashboards")
    with closing(log_in(up.url, up.token)) as browser:
        for path in pages:
            page = browser.get(path)
            assert page.status_code == 200, path
            _check_headers(page)
            # nothing the CSP would block: scripts come from files, no inline handlers
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text), path
            assert not re.search(r"\son[a-z]+\s*=", page.text), path
    with up.api() as api:
        for path in ("/api/events", "/api/status", "/api/runs"):
            _check_headers(api.get(path))
        _check_headers(api.post("/api/replay", content=b"x" * 2_000_000))  # a 413 too


def test_login_is_throttled_per_client_address(up: Running) -> None:
    with from_address(up.url, "127.0.0.1") as guesser:
        for attempt in range(10):
            wrong = guesser.post("/login", data={"token": f"guess-{attempt}"})
            assert wrong.status_code == 200 and "not right" in wrong.text
        blocked = guesser.post("/login", data={"token": up.token})  # even the right one, for now
        assert blocked.status_code == 429, blocked.text
        assert 0 < int(blocked.headers["retry-after"]) <= 300
        assert "try again in" in blocked.text
        assert COOKIE not in blocked.headers.get("set-cookie", "")
        # claiming to be someone else changes nothing: X-Forwarded-For from outside is not believed
        spoofed = guesser.post("/login", data={"token": up.token}, headers={"X-Forwarded-For": "127.0.0.9"})
        assert spoofed.status_code == 429
    # another address is not held up by this one's guesses (behind a receiver too)
    with from_address(up.url, "127.0.0.2") as colleague:
        answer = colleague.post("/login", data={"token": up.token, "next": "/events"})
        assert answer.status_code == 303, answer.text
        assert colleague.get("/api/events").status_code == 200


def test_forwarded_for_from_outside_cannot_dodge_the_throttle(up: Running) -> None:
    """An attacker who names a fresh address in each request is still counted as where it connects from."""
    with from_address(up.url, "127.0.0.3") as attacker:
        for attempt in range(12):
            attacker.post("/login", data={"token": f"guess-{attempt}"},
                          headers={"X-Forwarded-For": f"10.0.0.{attempt}"})
        assert attacker.post("/login", data={"token": up.token},
                             headers={"X-Forwarded-For": "10.9.9.9"}).status_code == 429


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _offer_body(url: str, path: str, total: int, chunked: bool) -> tuple[int, int]:
    """POST ``total`` bytes to ``path`` on a raw socket, as fast as the server takes them; returns the
    answer's status and how many body bytes the server let in before it answered and hung up."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{framing}\r\n"
                 "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode())
    answer = bytearray()

    def read() -> None:
        try:
            while chunk := sock.recv(65536):
                answer.extend(chunk)
        except OSError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    piece = b"token=" + b"a" * (1024 * 1024 - 6)
    sent = 0
    try:
        while sent < total and not answer:
            data = (f"{len(piece):x}\r\n".encode() + piece + b"\r\n") if chunked else piece
            sock.sendall(data)
            sent += len(piece)
        if chunked and not answer:
            sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server answered and closed: what it should do
        pass
    reader.join(30)
    sock.close()
    head = bytes(answer).split(b"\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 "), bytes(answer[:200])
    return int(head.split()[1]), sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_400_mb_body_is_refused_with_bounded_memory(up: Running, chunked: bool) -> None:
    """Bound: neither the main process nor the receiver grows by more than 40 MB while 400 MB are offered
    to the login form, the API, a page and an unknown path (the limit is server.max_request_body, 1 MB)."""
    pids = [up.proc.proc.pid, *receiver_pids(up.proc.proc.pid)]
    before = {pid: _rss_kb(pid) for pid in pids}
    peak = dict(before)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid in pids:
                peak[pid] = max(peak[pid], _rss_kb(pid))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        for path in ("/login", "/api/replay", "/events", "/no/such/page"):
            status, sent = _offer_body(up.url, path, 400 * 1000 * 1000, chunked)
            assert status == 413, path
            assert sent < 100 * 1000 * 1000, (path, sent)  # refused early, not read to the end
    finally:
        done.set()
        watcher.join(5)
    for pid in pids:
        assert (peak[pid] - before[pid]) < 40 * 1024, (pid, before[pid], peak[pid])
    # and the server still answers
    with up.api() as api:
        assert api.get("/api/status").status_code == 200
        too_big = api.post("/api/replay", content=b"{" + b" " * 2_000_000 + b"}")
        assert too_big.status_code == 413 and "max_request_body" in too_big.json()["error"]


def test_session_cookie_is_secure_behind_https(project_dir: Path) -> None:
    config = project_dir / "opsloop.yml"
    config.write_text(config.read_text().replace("server:\n", "server:\n  public_url: https://ops.example.com\n"))
    up = start(project_dir)
    try:
        answer = httpx.post(f"{up.url}/login", data={"token": up.token}, timeout=15)
        cookie = answer.headers["set-cookie"]
        assert answer.status_code == 303
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    finally:
        up.proc.stop()


def test_every_route_is_guarded_by_one_rule(tmp_path: Path) -> None:
    """Every route of the example project (all subsystems) refuses a stranger, except the public ones."""
    from starlette.routing import Mount, Route

    from opsloop.project.scaffold import init_project
    from opsloop.web import create_asgi
    from opsloop.web.auth import PUBLIC_PATHS, PUBLIC_PREFIXES

    root = tmp_path / "saas"
    init_project(root, example="saas")
    app = make_app(root)
    asgi = create_asgi(app)
    starlette = asgi.fallback
    routes = [r for r in starlette.routes if isinstance(r, Route)]
    assert len(routes) > 30 and any(isinstance(r, Mount) for r in starlette.routes)
    transport = httpx.ASGITransport(app=asgi)
    checked = 0

    async def run() -> None:
        nonlocal checked
        async with httpx.AsyncClient(transport=transport, base_url="http://opsloop") as client:
            for route in routes:
                path = re.sub(r"\{[^}]+\}", "1", route.path)
                public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
                if public:
                    continue
                for method in sorted(route.methods or {"GET"}):
                    if method == "HEAD":
                        continue
                    for cookie in ({}, {"cookie": f"{COOKIE}=forged"}):
                        answer = await client.request(method, path, headers=cookie)
                        if path.startswith("/api/"):
                            assert answer.status_code == 401, (method, path, answer.text)
                            assert "Bearer" in answer.json()["error"]
                        else:
                            assert answer.status_code == 303, (method, path)
                            assert answer.headers["location"].startswith("/login?next=")
                        checked += 1

    try:
        asyncio.run(run())
    finally:
        app.close()
    assert checked > 50


def test_sessions_survive_a_restart_but_not_a_new_token(project_dir: Path) -> None:
    up = start(project_dir)
    try:
        answer = httpx.post(f"{up.url}/login", data={"token": up.token}, timeout=15)
        cookie = {"cookie": f"{COOKIE}={answer.cookies[COOKIE]}"}
        assert httpx.get(f"{up.url}/api/events", headers=cookie, timeout=15).status_code == 200
    finally:
        up.proc.stop()
    up = start(project_dir)  # the session is in the state store, not in the process
    try:
        assert httpx.get(f"{up.url}/api/events", headers=cookie, timeout=15).status_code == 200
    finally:
        up.proc.stop()
    env = project_dir / ".env"
    env.write_text(env.read_text().replace(up.token, "a-new-token-after-a-leak-0123456789"))
    up = start(project_dir)
    try:
        assert up.token == "a-new-token-after-a-leak-0123456789"
        assert httpx.get(f"{up.url}/api/events", headers=cookie, timeout=15).status_code == 401
        assert httpx.post(f"{up.url}/login", data={"token": up.token}, timeout=15).status_code == 303
    finally:
        up.proc.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_session_store_on_both_backends(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from opsloop.state import open_store
    from opsloop.state.sessions import Sessions

    url = f"sqlite:///{tmp_path}/state.sqlite" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = open_store(url)
    try:
        sessions = Sessions(store)
        now = time.time()
        first = sessions.open(60, "tag-a", "127.0.0.1", now=now)
        second = sessions.open(60, "tag-a", "127.0.0.2", now=now)
        assert first != second and len(first) >= 40
        assert sessions.valid(first, "tag-a", now=now + 59)
        assert not sessions.valid(first, "tag-a", now=now + 60)  # expired
        assert not sessions.valid(first, "tag-b", now=now)  # opened with another token
        assert not sessions.valid("made-up", "tag-a", now=now)
        # only hashes at rest
        stored = {str(r[0]) for r in store.query("SELECT id_hash FROM sessions")}
        assert first not in stored and second not in stored and len(stored) == 2
        sessions.revoke(first)
        assert not sessions.valid(first, "tag-a", now=now) and sessions.valid(second, "tag-a", now=now)
        sessions.open(60, "tag-a", now=now + 120)  # a login purges the expired ones
        assert sessions.count() == 1
    finally:
        store.close()


def test_login_and_logout_on_a_postgres_state_store(project_dir: Path, pg_url: str) -> None:
    config = project_dir / "opsloop.yml"
    text = config.read_text()
    config.write_text(text.replace("url: sqlite:///state/opsloop.sqlite", f"url: {pg_url}", 1))
    assert pg_url in config.read_text()
    up = start(project_dir, "--receivers", "1")
    try:
        with closing(log_in(up.url, up.token)) as browser:
            cookie = {"cookie": f"{COOKIE}={browser.cookies[COOKIE]}"}
            assert httpx.get(f"{up.url}/api/events", timeout=15).status_code == 401
            assert httpx.get(f"{up.url}/api/events", headers=cookie, timeout=15).status_code == 200
            assert browser.post("/logout", data={"csrf": csrf_of(browser)}).status_code == 303
        assert httpx.get(f"{up.url}/api/events", headers=cookie, timeout=15).status_code == 401
    finally:
        up.proc.stop()


def test_the_throttle_window_slides_and_a_right_token_clears_it() -> None:
    from opsloop.web.auth import LoginThrottle

    throttle = LoginThrottle(limit=10, window=300.0, max_clients=3)
    for second in range(10):
        assert throttle.retry_after("a", now=float(second)) is None
        throttle.failed("a", now=float(second))
    assert throttle.retry_after("a", now=10.0) == pytest.approx(290.0)
    assert throttle.retry_after("a", now=299.5) == 1.0  # never less than a second
    assert throttle.retry_after("a", now=300.5) is None  # the first failure aged out: one more try
    throttle.failed("a", now=300.5)
    assert throttle.retry_after("a", now=300.6) == 1.0  # ten again; the oldest (at 1 s) ages out at 301 s
    assert throttle.retry_after("b", now=300.6) is None  # per address
    throttle.succeeded("a")
    assert throttle.retry_after("a", now=300.7) is None
    for client in ("c", "d", "e", "f"):  # a flood of addresses stays within max_clients
        throttle.failed(client, now=400.0)
    assert len(throttle._failures) <= 3


def test_forwarded_for_is_believed_only_on_the_private_socket() -> None:
    from opsloop.web.auth import client_address

    forwarded = [(b"x-forwarded-for", b"203.0.113.7")]
    over_tcp = {"server": ("127.0.0.1", 8620), "client": ("127.0.0.1", 50000), "headers": forwarded}
    over_unix = {"server": ("/tmp/opsloop-x/http.sock", None), "client": None, "headers": forwarded}
    assert client_address(over_tcp) == "127.0.0.1"
    assert client_address(over_unix) == "203.0.113.7"
    assert client_address({**over_unix, "headers": []}) == "local"
