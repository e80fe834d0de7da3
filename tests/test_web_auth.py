"""The API and pages need the token; forms that change state need a CSRF token; /healthz is open."""

from __future__ import annotations

import json
import re
import time

import httpx

from .conftest import ServerThread, wait_for


def test_healthz_is_open_and_api_needs_the_token(server: ServerThread) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"ok": True}
    assert httpx.get(f"{server.url}/api/events").status_code == 401
    assert httpx.get(f"{server.url}/api/events", headers={"Authorization": "Bearer wrong"}).status_code == 401
    with server.api() as api:
        assert api.get("/api/events").status_code == 200
        status = api.get("/api/status").json()
    assert server.token not in json.dumps(status)


def test_pages_redirect_to_login_and_login_sets_a_strict_cookie(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url) as browser:
        first = browser.get("/events?status=quarantined")
        assert first.status_code == 303 and first.headers["location"].startswith("/login?next=")
        bad = browser.post("/login", data={"token": "nope", "next": "/events"})
        assert bad.status_code == 200 and "not right" in bad.text
        ok = browser.post("/login", data={"token": server.token, "next": "/events"})
        assert ok.status_code == 303 and ok.headers["location"] == "/events"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and server.token not in cookie
        page = browser.get("/")
        assert page.status_code == 200 and "/hooks/demo_request" in page.text
        # an open redirect is refused
        evil = browser.post("/login", data={"token": server.token, "next": "//evil.example"})
        assert evil.headers["location"] == "/"
        evil = browser.post("/login", data={"token": server.token, "next": "/\\evil.example"})
        assert evil.headers["location"] == "/"


def test_replay_button_requires_csrf_token(server: ServerThread) -> None:
    from .test_inbox import signed_post

    bad = signed_post(server, "demo_request", {"email": "x", "name": "y"}, msg_id="c-1")
    event_id = bad.json()["id"]
    with httpx.Client(base_url=server.url) as browser:
        browser.post("/login", data={"token": server.token})
        page = browser.get("/events?status=quarantined")
        assert event_id in page.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
        forged = browser.post(f"/events/{event_id}/replay", data={})
        assert forged.status_code == 403
        api_forged = browser.post(f"/api/events/{event_id}/replay")
        assert api_forged.status_code == 403
        done = browser.post(f"/events/{event_id}/replay", data={"csrf": csrf})
        assert done.status_code == 303 and "still%20does%20not%20match" in done.headers["location"]


def test_event_text_is_escaped_in_pages(server: ServerThread) -> None:
    from .test_inbox import signed_post

    evil = "<img src=x onerror=alert(1)>"
    signed_post(server, "demo_request", {"email": evil, "name": evil}, msg_id="x-1")
    signed_post(server, "demo_request", {"email": "a@b.co", "name": "n"}, msg_id="x-2")
    wait_for(lambda: server.app.store.count_events("quarantined") == 1)
    with httpx.Client(base_url=server.url) as browser:
        browser.post("/login", data={"token": server.token})
        text = browser.get("/events").text
    assert evil not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_api_replay_range(server: ServerThread) -> None:
    from .test_inbox import signed_post

    since = time.time() - 1
    for i in range(3):
        signed_post(server, "demo_request", {"email": f"u{i}@x.co", "name": "n"}, msg_id=f"rr-{i}")
    wait_for(lambda: server.app.store.count_events("dispatched") == 3)
    with server.api() as api:
        done = api.post("/api/replay", json={"endpoint": "demo_request", "since": since, "status": "dispatched"})
    results = done.json()["results"]
    assert len(results) == 3 and all(r["id"] for r in results)
    wait_for(lambda: server.app.store.count_events("dispatched") == 6)
