"""`opsloop demo` in headless Chromium: log in, watch the dashboard fill in, open the outbox; screenshots go
to tests/artifacts/ (demo-dashboard.png, demo-outbox.png)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..conftest import free_port, keep_reading, wait_for
from ..metrics.browser import csp_violations, launch, login, shot, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_demo_dashboard_and_outbox_in_a_browser(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLOOP_")}
    env["OPSLOOP_TIME_SCALE"] = "0.005"  # the 15-minute SLA is missed after 4.5 s
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsloop", "demo", str(tmp_path / "demo"), "--port", str(port), "--duration", "120",
         "--rate", "5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while not any("log in with the token:" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "the demo stopped before serving:\n" + "".join(lines)
            lines.append(line)
        token = lines[-1].split("token:")[1].strip()
        keep_reading(proc, lines)
        base = f"http://127.0.0.1:{port}"
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        wanted = {"slack", "email", "sync:hubspot_contacts", "sync:zendesk_users"}
        wait_for(lambda: wanted <= {i["destination"] for i in api.get("/api/outbox").json()["items"]}, 80,
                 interval=0.5, what="traffic to reach Slack, email, the CRM and the support tool in the outbox")
        for browser in launch():
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            violations = csp_violations(page)
            login(page, base, token, "/dashboards/overview")
            wait_js(
            page, "![...document.querySelectorAll('.body')].some(b => b.innerText.includes('loading'))", 30_000)
            page.wait_for_selector("#tile-4-body .main-svg", timeout=30_000)
            assert "Customers" in page.inner_text("#tile-0")
            assert shot(page, "demo-dashboard").stat().st_size > 10_000
            assert violations == [], violations
            page.goto(base + "/outbox")
            destinations = page.inner_text("nav.filters")
            assert all(w in destinations for w in wanted), destinations
            page.goto(base + "/outbox?destination=slack")  # Slack messages as Slack shows them, not JSON
            text = page.inner_text("ol.outbox")
            assert "SLA breached" in text or "claimed by" in text, text[:2000]
            assert '"blocks"' not in text
            assert shot(page, "demo-outbox").stat().st_size > 10_000
    finally:
        proc.terminate()
        proc.wait(30)
