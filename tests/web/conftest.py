"""The example company served by the real ``opsloop demo`` (a subprocess), with its generated traffic: the
pages are tested on what a person sees after a few minutes of demo, not on hand-made rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import free_port, wait_for
from ..metrics.browser import launch
from ..sources.fake_hubspot import ALL_SCOPES, HubSpotFake
from ..syncs.conftest import FakeServer, Request
from ..syncs.fakes import FakeHubSpot, Reply


class PickyHubSpot(FakeHubSpot):
    """HubSpot's CRM API that refuses the first ``refuse`` new contacts it is sent, one input at a time, with
    the 207 multi-status error HubSpot gives an invalid email; ``refused`` names them, ``forgive()`` stops."""

    def __init__(self, refuse: int = 2) -> None:
        super().__init__()
        self.refuse = refuse
        self.refused: list[str] = []
        self.forgiven = False

    def forgive(self) -> None:
        self.forgiven = True

    def _write(self, action: str, inputs: list[dict[str, Any]]) -> Reply:
        kept, errors = [], []
        for item in inputs:
            email = str(item.get("id"))
            if not self.forgiven and (email in self.refused or (len(self.refused) < self.refuse
                                                               and email not in self.contacts)):
                if email not in self.refused:
                    self.refused.append(email)
                message = (f'Property values were not valid: [{{"isValid":false,"message":"Email address {email} is '
                           'invalid","error":"INVALID_EMAIL","name":"email"}]')
                errors.append({"status": "error", "category": "VALIDATION_ERROR", "message": message,
                               "context": {"objectWriteTraceId": [item.get("objectWriteTraceId")]}})
            else:
                kept.append(item)
        status, headers, body = super()._write(action, kept) if kept else (200, {}, {"status": "COMPLETE",
                                                                                     "results": []})
        if errors and status in (200, 207):
            body["errors"] = [*body.get("errors", []), *errors]
            body["numErrors"] = len(body["errors"])
            status = 207
        return status, headers, body


class OneHubSpot:
    """One HubSpot base URL for the demo's pull (CRM reads: ``HubSpotFake``, granted every scope but
    ``crm.objects.companies.read`` until a test grants it) and its sync (batch writes: ``PickyHubSpot``),
    as the real API is one host."""

    def __init__(self, writes: PickyHubSpot) -> None:
        self.writes = writes
        self.reads = HubSpotFake(granted=ALL_SCOPES - {"crm.objects.companies.read"})
        self.reads.props["contacts"] += ["phone", "company"]
        writes.token = self.reads.token
        for i in range(1, 4):
            self.reads.put("contacts", str(7000 + i), email=f"pulled{i}@example.com", firstname=f"Pulled{i}")

    def __call__(self, req: Request) -> Reply:
        if "/batch/" in req.path and req.method == "POST":
            return self.writes(req)
        answer = httpx.request(req.method, self.reads.url + req.path, content=req.body,
                               headers={k: v for k, v in req.headers.items() if k not in ("host", "content-length")})
        return answer.status_code, {}, answer.json() if answer.content else None


@dataclass
class DemoSite:
    url: str
    token: str
    api: httpx.Client
    hubspot: PickyHubSpot
    folder: Path
    hubspot_reads: HubSpotFake

    def get(self, path: str, **params: Any) -> Any:
        answer = self.api.get(path, params=params)
        assert answer.status_code == 200, (path, answer.text)
        return answer.json()


@pytest.fixture(scope="package")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLOOP_")}
    env["OPSLOOP_TIME_SCALE"] = "0.005"  # the 15-minute SLA is missed after 4.5 s
    # the demo's hubspot_contacts sync writes to a HubSpot on 127.0.0.1 that refuses two contacts
    hubspot = PickyHubSpot()
    one_hubspot = OneHubSpot(hubspot)
    hub_server = FakeServer(one_hubspot)
    env.update(HUBSPOT_SYNC_TYPE="hubspot", HUBSPOT_API_URL=hub_server.url, HUBSPOT_TOKEN=hubspot.token)
    folder = tmp_path_factory.mktemp("pages") / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "opsloop", "demo", str(folder), "--port", str(port), "--rate", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not any("log in with the token:" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "the demo stopped before serving:\n" + "".join(lines)
            lines.append(line)
        token = lines[-1].split("token:")[1].strip()
        url = f"http://127.0.0.1:{port}"
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=20)
        site = DemoSite(url, token, api, hubspot, folder, one_hubspot.reads)

        def ready() -> bool:
            items = site.get("/api/outbox")["items"]
            updated = [i for i in items if i["destination"] == "slack" and i["version"] > 1]
            emails = [i for i in items if i["destination"] == "email"]
            runs = site.get("/api/runs")["runs"]
            failing = [s for s in site.get("/api/syncs") if s["sync"] == "hubspot_contacts" and s["pending_retry"]]
            return bool(updated and emails and failing and any(r["status"] == "completed" for r in runs))

        wait_for(ready, 120, interval=0.5, what="demo traffic: an updated Slack message, an email, a finished run, "
                                                "a contact HubSpot refused")
        yield site
        api.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        hub_server.close()
        one_hubspot.reads.close()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    yield from launch()


@pytest.fixture
def page(browser: Any, demo_site: DemoSite) -> Iterator[Any]:
    """A logged-in page (1300x900)."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    try:
        p = context.new_page()
        p.goto(demo_site.url + "/login")
        p.fill("input[name=token]", demo_site.token)
        p.click("button[type=submit]")
        p.wait_for_url(demo_site.url + "/")
        yield p
    finally:
        context.close()




def new_live_rows(page: Any, table: str, shown: set[str]) -> list[list[str]]:
    """``[id, status]`` of the rows of ``table`` (a CSS selector) that are not in ``shown``: the rows a live list
    put in while the page was open."""
    rows: list[list[str]] = page.eval_on_selector_all(
        f"{table} tr[data-id]", "rs => rs.map(r => [r.dataset.id, r.dataset.status])")
    return [r for r in rows if r[0] not in shown]
