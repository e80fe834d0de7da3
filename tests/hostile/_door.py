"""Checks shared by test_door and test_poison: after something hostile, opsloop still does its job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from ..conftest import wait_for
from ..test_cli_server import UpProcess
from .conftest import Running

HMAC_ENDPOINT = """\
description: a raw-bytes HMAC endpoint (its signature covers bytes that need not be UTF-8)
event: rawhook.received
signature:
  preset: hmac
  secret_env: RAWHOOK_SECRET
  header: X-Signature
  prefix: "sha256="
max_body: 2MB
"""

SHALLOW_ENDPOINT = """\
description: payloads at most 3 levels deep
event: shallow.received
max_depth: 3
refused_per_minute: 5
refused_body: 100B
signature:
  preset: hmac
  secret_env: RAWHOOK_SECRET
  header: X-Signature
  prefix: "sha256="
"""


def add_endpoints(root: Path) -> None:
    """Two more endpoints: ``rawhook`` (HMAC over the raw bytes) and ``shallow`` (tight limits)."""
    (root / "events" / "rawhook.yml").write_text(HMAC_ENDPOINT)
    (root / "events" / "shallow.yml").write_text(SHALLOW_ENDPOINT)
    with (root / ".env").open("a") as env:
        env.write("RAWHOOK_SECRET=raw-secret-for-tests\n")


def hmac_post(r: Running, endpoint: str, body: bytes, **headers: str) -> httpx.Response:
    import hashlib
    import hmac

    sig = "sha256=" + hmac.new(b"raw-secret-for-tests", body, hashlib.sha256).hexdigest()
    return httpx.post(f"{r.url}/hooks/{endpoint}", content=body, timeout=15,
                      headers={"X-Signature": sig, "content-type": "application/json", **headers})


def event(r: Running, event_id: str) -> dict[str, Any]:
    with r.api() as api:
        answer = api.get(f"/api/events/{event_id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def raw_count(r: Running, event_id: str) -> int:
    with r.api() as api:
        answer = api.post("/api/query", json={"sql": f"select count(*) from raw.events where event_id = '{event_id}'"})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["rows"][0][0])


def run_for(r: Running, event_id: str) -> dict[str, Any] | None:
    with r.api() as api:
        answer = api.get("/api/runs", params={"workflow": "demo_request_sla", "limit": "500"})
    assert answer.status_code == 200, answer.text
    return next((run for run in answer.json()["runs"] if run["trigger_event"] == event_id), None)


def listings_answer(r: Running, *must_show: str) -> None:
    """``/api/events``, each event's ``/api/events/ID`` and the Events page answer 200, showing ``must_show``."""
    with r.api() as api:
        listed = api.get("/api/events", params={"limit": "1000"})
        assert listed.status_code == 200, listed.text
        ids = [e["id"] for e in listed.json()["events"]]
        for event_id in ids:
            detail = api.get(f"/api/events/{event_id}")
            assert detail.status_code == 200, (event_id, detail.text)
        for status in ("", "failed", "rejected"):
            page = api.get("/events", params={"status": status} if status else None)
            assert page.status_code == 200, page.text
    for event_id in must_show:
        assert event_id in ids, f"{event_id} not in /api/events"
    with r.api() as api:
        page_text = api.get("/events").text
    for event_id in must_show:
        assert event_id in page_text, f"{event_id} not on the Events page"


def runs_answer(r: Running) -> list[str]:
    """``/api/runs`` and each run's ``/api/runs/ID`` answer 200; returns the trigger event ids."""
    with r.api() as api:
        listed = api.get("/api/runs", params={"limit": "1000"})
        assert listed.status_code == 200, listed.text
        for run in listed.json()["runs"]:
            detail = api.get(f"/api/runs/{run['id']}")
            assert detail.status_code == 200, (run, detail.text[:300])
        assert api.get("/runs").status_code == 200
    return [str(run["trigger_event"]) for run in listed.json()["runs"]]


def still_works(r: Running, email: str, timeout: float = 30) -> str:
    """A normal demo request after whatever came before: it lands in raw.events, starts the workflow, and
    the listings show it. Returns its id."""
    event_id = r.good_event(email)
    wait_for(lambda: raw_count(r, event_id) == 1, timeout, what=f"{event_id} in raw.events")
    wait_for(lambda: run_for(r, event_id), timeout, what=f"a demo_request_sla run for {event_id}")
    listings_answer(r, event_id)
    return event_id


def restart(r: Running) -> None:
    """Stop the server (SIGTERM) and start it again on the same project, port and options."""
    args = list(r.proc.proc.args)  # type: ignore[arg-type]
    extra = args[args.index("--port") + 2:]
    assert r.proc.stop() == 0
    r.proc = UpProcess(r.root, r.proc.port, *extra)


def rejected_ok(r: Running, answer: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    """``answer`` has ``status`` and a JSON error naming ``words``; the request is stored as rejected."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    text = json.dumps(body).lower()
    for word in words:
        assert word.lower() in text, (word, body)
    assert "traceback" not in text
    stored = event(r, body["id"])
    assert stored["status"] == "rejected", stored
    return stored
