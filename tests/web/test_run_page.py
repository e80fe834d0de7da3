"""A run as a timeline: steps in order with status, start, duration, attempts; waits and sleeps with their
deadline; the SLA's state; collapsible JSON; the trigger event linked."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ServerThread, wait_for
from ..metrics.browser import csp_violations, login, shot
from ..workflows.conftest import emit, write_files
from .conftest import DemoSite

pytestmark = pytest.mark.browser
DURATION = re.compile(r"\d+ ms|\d+\.\d s|\d+ min \d+ s|\d+ h \d+ min|\d+ days \d+ h")


def finished_sla_run(site: DemoSite) -> dict[str, Any]:
    """A demo-request run whose SLA ended (claimed in time, or breached and then claimed)."""

    def find() -> dict[str, Any] | None:
        for run in site.get("/api/runs", workflow="demo_request_sla", status="completed", limit=50)["runs"]:
            detail: dict[str, Any] = site.get(f"/api/runs/{run['id']}")
            if detail["output"] and detail["output"].get("claimed_by"):
                return detail
        return None

    found: dict[str, Any] = wait_for(find, 90, interval=1, what="a claimed demo-request SLA run")
    return found


def test_run_page_is_a_timeline_of_steps(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    run = finished_sla_run(demo_site)
    page.goto(f"{demo_site.url}/runs/{run['id']}")
    steps = page.eval_on_selector_all(
        "ol.timeline > li.step",
        "items => items.map(li => ({name: li.dataset.step,"
        " status: li.querySelector('.badge[class*=status-]').textContent,"
        " duration: li.querySelector('.duration').textContent, attempts: li.querySelector('.attempts').textContent,"
        " started: !!li.querySelector('.start time[data-ts]')}))")
    assert [s["name"] for s in steps] == [s["step"] for s in sorted(run["steps"], key=lambda s: s["position"])]
    for shown, stored in zip(steps, sorted(run["steps"], key=lambda s: s["position"]), strict=True):
        assert shown["status"] == stored["status"]
        assert DURATION.fullmatch(shown["duration"].strip()), shown
        assert shown["attempts"].startswith(f"{stored['attempts']} attempt")
        assert shown["started"], shown
    # the wait shows what it waits for and its deadline
    wait = page.locator("li.step[data-step='sla.wait']")
    assert "demo_request.claimed" in wait.inner_text() and "event.data.ref == trigger.id" in wait.inner_text()
    assert wait.locator(".deadline time[data-ts]").count() == 1
    # the SLA at a glance: who claimed, after how long, and whether it was breached
    sla = page.locator("section.sla[data-sla='sla']")
    text = sla.inner_text()
    assert f"claimed by {run['output']['claimed_by']}" in text and re.search(r"after " + DURATION.pattern, text)
    assert ("breached" in text) == bool(run["output"]["breached"])
    assert sla.locator("time[data-ts]").count() >= 2  # posted, due (and breached)
    # inputs and outputs are collapsible JSON, not a table dump
    output = page.locator("li.step[data-step='sla.post'] details.json").first
    assert output.get_attribute("open") is None
    output.locator("summary").click()
    assert output.get_attribute("open") is not None and "#sales" in output.inner_text()
    shot(page, "run-timeline")
    # the trigger event is a link to its page
    page.click("#trigger-link")
    page.wait_for_url(f"{demo_site.url}/events/{run['trigger']['id']}")
    assert "demo_request.created" in page.inner_text("h1")
    assert run["trigger"]["data"]["email"] in page.inner_text("main")
    assert violations == []


def test_a_sleeping_run_shows_until_when(project_dir: Path, server_factory: Callable[..., ServerThread],
                                         browser: Any) -> None:
    write_files(project_dir, {"workflows/nap.yml": """
        on: nap.requested
        steps:
          - id: nap
            sleep: 2h
          - event.emit: {name: nap.done}
        """})
    srv = server_factory(project_dir)
    emit(srv, "nap.requested", {"who": "ada"})
    with srv.api() as api:
        run = wait_for(lambda: [r for r in api.get("/api/runs").json()["runs"] if r["status"] == "sleeping"], 20,
                       what="a sleeping run")[0]
    context = browser.new_context()
    try:
        page = context.new_page()
        login(page, srv.url, srv.token, f"/runs/{run['id']}")
        nap = page.locator("li.step[data-step='nap']")
        assert "Sleeps until" in nap.inner_text() and "(sleeping)" in nap.inner_text()
        label = nap.locator(".deadline time").inner_text()
        assert re.fullmatch(r"in (1 h|119 min|2 h)", label), label
        assert page.inner_text("#run-status") == "sleeping"
        assert "wakes\nin 1 h" in page.inner_text("dl.facts").lower()
    finally:
        context.close()


def test_an_unknown_run_is_a_page_not_a_crash(page: Any, demo_site: DemoSite) -> None:
    answer = page.goto(f"{demo_site.url}/runs/run_nope")
    assert answer is not None and answer.status == 404
    assert "no run" in page.inner_text("main").lower() and page.locator("a[href='/runs']").count() >= 1
    answer = page.goto(f"{demo_site.url}/events/evt_nope")
    assert answer is not None and answer.status == 404 and "evt_nope" in page.inner_text("main")
