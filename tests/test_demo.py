"""`opsloop demo` (the README's first command) runs the example project with generated traffic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import free_port, keep_reading, run_cli, wait_for


@pytest.mark.slow
def test_demo_runs_and_generates_events(tmp_path: Path) -> None:
    port = free_port()
    result = run_cli("demo", str(tmp_path / "demo"), "--port", str(port), "--duration", "3", "--rate", "10",
                     timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"http://127.0.0.1:{port}/" in result.stdout and "log in with the token:" in result.stdout
    count = int(result.stdout.strip().splitlines()[-1].split()[2])
    assert count >= 5


@pytest.mark.slow
def test_demo_fills_the_outbox_and_the_dashboard(tmp_path: Path) -> None:
    """While the demo runs: Slack messages (posted, then updated in place on claim or breach), CRM and
    support-tool upserts and welcome emails appear in the outbox; the dashboard page and its metrics answer."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLOOP_")}
    env["OPSLOOP_TIME_SCALE"] = "0.005"  # the 15-minute SLA is missed after 4.5 s
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsloop", "demo", str(tmp_path / "demo"), "--port", str(port), "--duration", "90",
         "--rate", "5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while not any("log in with the token:" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "the demo stopped before serving:\n" + "".join(lines)
            lines.append(line)
        token = lines[-1].split("token:")[1].strip()
        reader = keep_reading(proc, lines)
        base = f"http://127.0.0.1:{port}"
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)

        def outbox() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = api.get("/api/outbox").json()["items"]
            return items

        def kinds() -> set[str]:
            seen = set()
            for item in outbox():
                text = str(item["payload"].get("text", ""))
                if item["destination"] == "slack" and item["version"] > 1 and "SLA breached" in text:
                    seen.add("slack breached")
                elif item["destination"] == "slack" and item["version"] > 1 and "claimed by" in text:
                    seen.add("slack claimed")
                elif item["destination"] == "slack" and "percentile" in item["payload"].get("text", ""):
                    seen.add("slack purchase")
                else:
                    seen.add(item["destination"])
            return seen

        wanted = {"slack breached", "slack claimed", "slack purchase", "sync:hubspot_contacts",
                  "sync:zendesk_users", "email"}
        wait_for(lambda: wanted <= kinds(), 70, interval=0.5, what=f"outbox items {wanted}")

        with httpx.Client(base_url=base, timeout=10) as browser:
            assert browser.post("/login", data={"token": token}).status_code == 303
            page = browser.get("/outbox")
            assert page.status_code == 200 and "sync:hubspot_contacts" in page.text
            board = browser.get("/dashboards/overview")
            assert board.status_code == 200 and "Example company" in board.text
        metric = api.get("/api/metrics/customer_count", params={"grain": "month", "since": "6mo"})
        assert metric.status_code == 200, metric.text
        assert any((row[-1] or 0) > 0 for row in metric.json()["rows"]), metric.json()

        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends: a clean stop with the closing summary
        proc.wait(30)
        reader.join(10)  # the reader has every line the demo wrote
        rest = "".join(lines)
        assert proc.returncode == 0, rest
        assert "demo stopped;" in rest and "events in the log" in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
