"""An event's page says what happened to it: the signature verdict, the workflow runs it started, whether it
is in the warehouse; a quarantined or refused event says why, and offers Replay where that helps."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from ..conftest import wait_for
from ..metrics.browser import csp_violations, shot
from .conftest import DemoSite

pytestmark = pytest.mark.browser


def secret(site: DemoSite) -> str:
    for line in (site.folder / ".env").read_text().splitlines():
        if line.startswith("DEMO_REQUEST_SECRET="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("the demo's .env has no DEMO_REQUEST_SECRET")


def post_demo_request(site: DemoSite, payload: dict[str, Any], signed: bool = True) -> httpx.Response:
    body = json.dumps(payload)
    msg_id = "msg_" + uuid.uuid4().hex
    now = datetime.now(UTC)
    signature = Webhook(secret(site)).sign(msg_id, now, body) if signed else "v1,bm90IGEgc2lnbmF0dXJl"
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signature, "content-type": "application/json"}
    return httpx.post(f"{site.url}/hooks/demo_request", content=body, headers=headers, timeout=10)


def test_a_dispatched_event_shows_its_signature_runs_and_warehouse(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    answer = post_demo_request(demo_site, {"email": "ada.page@example.com", "name": "Ada Page"})
    assert answer.status_code == 202, answer.text
    event_id = answer.json()["id"]
    runs = wait_for(lambda: [r for r in demo_site.get("/api/runs", workflow="demo_request_sla")["runs"]
                             if r.get("trigger_event") == event_id], 30, interval=0.3, what="the event's run")

    def loaded() -> bool:
        page.goto(f"{demo_site.url}/events/{event_id}")
        return "loaded into raw.events" in page.inner_text("#warehouse")

    wait_for(loaded, 30, interval=0.5, what="the event in raw.events")
    assert page.inner_text("#signature").startswith("verified")
    assert "standard_webhooks" in page.inner_text("#signature")
    started = page.locator(f"#started-runs a[href='/runs/{runs[0]['id']}']")
    assert started.count() == 2  # its time and its workflow name both link the run
    assert page.locator("#why").count() == 0
    shot(page, "page-event")
    started.last.click()
    page.wait_for_url(f"{demo_site.url}/runs/{runs[0]['id']}")
    assert violations == []


def test_quarantined_and_refused_events_say_why(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    bad = post_demo_request(demo_site, {"email": "no-name@example.com"})  # the schema requires a name
    assert bad.status_code == 422, bad.text
    page.goto(f"{demo_site.url}/events/{bad.json()['id']}")
    why = page.inner_text("#why")
    assert why.startswith("The payload did not match the endpoint's schema") and "name" in why
    assert page.locator("form[action$='/replay'] button", has_text="Replay").count() == 1
    assert "No workflow is triggered" in page.inner_text("#started-runs") or page.locator(
        "#started-runs a").count() == 0
    forged = post_demo_request(demo_site, {"email": "eve@example.com", "name": "Eve"}, signed=False)
    assert forged.status_code == 401
    page.goto(f"{demo_site.url}/events/{forged.json()['id']}")
    assert page.inner_text("#signature").startswith("refused")
    assert page.inner_text("#why").startswith("Refused at the door: bad signature")
    assert page.locator("form[action$='/replay']").count() == 0  # a forged request is never replayed
    assert violations == []
