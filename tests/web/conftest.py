"""The example company served by the real ``opsloop demo`` (a subprocess), with its generated traffic: the
pages are tested on what a person sees after a few minutes of demo, not on hand-made rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ..conftest import free_port, wait_for
from ..metrics.browser import launch


@dataclass
class DemoSite:
    url: str
    token: str
    api: httpx.Client

    def get(self, path: str, **params: Any) -> Any:
        answer = self.api.get(path, params=params)
        assert answer.status_code == 200, (path, answer.text)
        return answer.json()


@pytest.fixture(scope="package")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLOOP_")}
    env["OPSLOOP_TIME_SCALE"] = "0.005"  # the 15-minute SLA is missed after 4.5 s
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
        site = DemoSite(url, token, api)

        def ready() -> bool:
            items = site.get("/api/outbox")["items"]
            updated = [i for i in items if i["destination"] == "slack" and i["version"] > 1]
            emails = [i for i in items if i["destination"] == "email"]
            runs = site.get("/api/runs")["runs"]
            return bool(updated and emails and any(r["status"] == "completed" for r in runs))

        wait_for(ready, 120, interval=0.5, what="demo traffic: an updated Slack message, an email, a finished run")
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


