"""The screenshots in docs/pages.md, made from the running example company (see scripts/screenshots)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found = check()
        except (httpx.HTTPError, KeyError, IndexError):
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise SystemExit(f"gave up waiting for {what} after {seconds:.0f} s")


def pages(api: httpx.Client) -> dict[str, str]:
    """name -> path: every list page, and one detail page of each kind."""
    run = wait(lambda: [r for r in api.get("/api/runs").json()["runs"] if r["status"] == "completed"], 120,
               "a finished run")[0]
    sync = api.get("/api/syncs").json()[0]
    email = api.post("/api/query", json={"sql": "select email from identity.golden_records "
                                                "where email is not null order by 1 limit 1"}).json()["rows"][0][0]
    person = api.get("/api/identity/profile", params={"query": email}).json()["person_id"]
    out = {"home": "/", "events": "/events", "event": f"/events/{run['trigger_event']}", "runs": "/runs",
           "run": f"/runs/{run['id']}", "workflows": "/workflows", "models": "/models",
           "model": "/models/customers", "sources": "/sources", "source": "/sources/hubspot", "syncs": "/syncs",
           "sync": f"/syncs/{sync['sync']}", "people": "/people", "person": f"/people/{person}",
           "segments": "/segments", "segment": "/segments/active_customers", "conflicts": "/conflicts",
           "dashboards": "/dashboards", "dashboard": "/dashboards/overview", "outbox": "/outbox"}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLOOP_")}
    env["OPSLOOP_TIME_SCALE"] = "0.005"  # the demo's 15-minute SLA plays out in seconds
    folder = Path(tempfile.mkdtemp()) / "demo"
    demo = subprocess.Popen([sys.executable, "-m", "opsloop", "demo", str(folder), "--port", str(port), "--rate", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert demo.stdout is not None
        token = ""
        while not token:
            line = demo.stdout.readline()
            if not line:
                raise SystemExit("the demo stopped before serving")
            if "log in with the token:" in line:
                token = line.split("token:")[1].strip()
        url = f"http://127.0.0.1:{port}"
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        wanted = pages(api)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(url + "/login")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            page.wait_for_url(url + "/")
            for name, path in wanted.items():
                page.goto(url + path)
                if page.locator(".tile").count():  # a dashboard: wait for its charts
                    page.wait_for_function("() => [...document.querySelectorAll('.tile .body')]"
                                           ".every(b => b.textContent.trim() !== 'loading…')", timeout=30_000)
                target = args.out / f"page-{name}.png"
                page.screenshot(path=str(target), full_page=False)
                print(f"{target}  {path}")
            browser.close()
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            demo.kill()


if __name__ == "__main__":
    main()
