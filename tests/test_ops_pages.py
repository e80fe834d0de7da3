"""Operational pages (runs with steps, models, sources, syncs) need the login and escape what they show."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from opsloop.events.signatures import SignedRequest, make_preset

from .conftest import wait_for


def test_runs_models_sources_syncs_pages(project_dir: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    srv = server_factory(project_dir)
    evil = "<img src=x onerror=alert(1)>"
    cfg = srv.app.project.endpoints["demo_request"]
    preset = make_preset(cfg.signature, srv.app.project.secret(cfg.signature.secret_env or ""))
    body = json.dumps({"email": "eve@example.com", "name": evil}).encode()
    headers = preset.sign(SignedRequest(body, {"webhook-id": "ops-1"}), time.time())
    assert httpx.post(f"{srv.url}/hooks/demo_request", content=body, headers=headers).status_code == 202
    with srv.api() as api:
        runs = wait_for(lambda: api.get("/api/runs").json().get("runs"), 20, what="the starter workflow's run")
    run_id = runs[0]["id"]
    with httpx.Client(base_url=srv.url) as browser:
        assert browser.get("/runs").status_code == 303  # not logged in: to the login page
        browser.post("/login", data={"token": srv.token})
        listing = browser.get("/runs")
        assert listing.status_code == 200 and f'href="/runs/{run_id}"' in listing.text
        detail = browser.get(f"/runs/{run_id}")
        assert detail.status_code == 200 and "demo_request_sla" in detail.text
        assert evil not in detail.text and "&lt;img src=x onerror=alert(1)&gt;" in detail.text
        for page in ("/models", "/sources", "/syncs", "/workflows"):
            answer = browser.get(page)
            assert answer.status_code == 200, page
            assert f"GET /api{page}" in answer.text
        home = browser.get("/")
        for link in ("/dashboards", "/runs", "/models", "/sources", "/syncs", "/outbox"):
            assert f'href="{link}"' in home.text
