"""A run's actions, each a form behind the session's CSRF token that asks first: rerun from a chosen step
(with edited input), cancel, pause and resume its workflow."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from ..conftest import wait_for
from ..metrics.browser import csp_violations
from .conftest import DemoSite
from .test_run_page import finished_sla_run

pytestmark = pytest.mark.browser


def confirm_then(page: Any, selector: str, asked: list[str]) -> None:
    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    with page.expect_navigation(url=lambda url: "message=" in url):
        page.click(selector)


def test_rerun_from_a_step_with_edited_input(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    run = finished_sla_run(demo_site)
    steps = [s["step"] for s in sorted(run["steps"], key=lambda s: s["position"])]
    page.goto(f"{demo_site.url}/runs/{run['id']}")
    page.click("#run-actions summary")
    assert page.locator("#cancel-run").count() == 0  # a finished run has nothing to cancel
    page.select_option("#from-step", steps[1])
    page.fill("#rerun-input", "{not json")
    asked: list[str] = []
    confirm_then(page, "#rerun", asked)
    assert "the input is not JSON" in page.inner_text("p.notice") and f"/runs/{run['id']}?" in page.url
    page.click("#run-actions summary")
    page.select_option("#from-step", steps[1])
    page.fill("#rerun-input", '{"edited": true}')
    confirm_then(page, "#rerun", asked)
    assert asked[-1].startswith("Start a new run of demo_request_sla?")
    assert page.inner_text("p.notice") == f"rerun of {run['id']} from step {steps[1]}"
    new_id = page.url.split("/runs/")[1].split("?")[0]
    assert new_id != run["id"]
    assert page.locator(f"a[href='/runs/{run['id']}']").count() >= 1  # "Rerun of" links the original
    rerun = wait_for(lambda: demo_site.get(f"/api/runs/{new_id}"), 10, what="the new run")
    assert rerun["input"] == {"edited": True} and rerun["rerun_of"] == run["id"]
    assert violations == []


def test_pause_then_resume_the_workflow(page: Any, demo_site: DemoSite) -> None:
    run = finished_sla_run(demo_site)
    page.goto(f"{demo_site.url}/runs/{run['id']}")
    page.click("#run-actions summary")
    asked: list[str] = []
    confirm_then(page, "#pause-workflow", asked)
    try:
        assert "paused" in page.inner_text("p.notice")
        paused = {w["name"]: w["paused"] for w in demo_site.get("/api/workflows")["workflows"]}
        assert paused["demo_request_sla"] is True
        page.click("#run-actions summary")
        assert page.inner_text("#pause-workflow") == "Resume demo_request_sla"
        confirm_then(page, "#pause-workflow", asked)
        assert "resumed" in page.inner_text("p.notice")
        paused = {w["name"]: w["paused"] for w in demo_site.get("/api/workflows")["workflows"]}
        assert paused["demo_request_sla"] is False
        assert asked[0].startswith("Pause demo_request_sla?") and asked[1].startswith("Resume demo_request_sla?")
    finally:  # the other tests need the demo's workflow running
        demo_site.api.post("/api/workflows/demo_request_sla/resume")


def test_a_running_run_page_follows_the_run(page: Any, demo_site: DemoSite) -> None:
    """No reload by hand: the page hears the run move on (server-sent events) and shows its new state.

    The run is one that starts after the test does: an older one may have breached its SLA already and wait
    for a claim, with nothing to show for minutes (its status stays ``waiting`` in the API too), while a new
    one posts, waits and breaches within seconds. "Moved on" is its status or any of its steps changing."""
    violations = csp_violations(page)
    older = {r["id"] for r in demo_site.get("/api/runs", workflow="demo_request_sla", limit=200)["runs"]}

    def started() -> list[dict[str, Any]] | None:
        found = [r for r in demo_site.get("/api/runs", workflow="demo_request_sla", limit=50)["runs"]
                 if r["status"] in ("waiting", "sleeping", "running", "queued") and r["id"] not in older]
        return found or None

    def shown() -> list[str] | None:
        """The status and steps shown, or None while the page is reloading (it is read again)."""
        try:
            steps: list[str] = page.eval_on_selector_all(
                "li.step[data-step]", "ls => ls.map(l => l.dataset.step + ' ' + l.className)")
            return [page.inner_text("#run-status"), *steps]
        except PlaywrightError:  # "Execution context was destroyed": the reload this test waits for
            return None

    run = wait_for(started, 60, interval=0.2, what="a demo-request run started after the test")[-1]  # the oldest
    page.goto(f"{demo_site.url}/runs/{run['id']}")
    first = wait_for(shown, 10, what="the run page")
    if first[0] in ("completed", "failed", "cancelled"):
        pytest.skip("the run finished before its page opened")  # rare at the demo's rate; the next run shows it
    assert page.locator("#live[data-live]").count() == 1
    loads: list[str] = []
    page.on("load", lambda _: loads.append(page.url))
    wait_for(lambda: shown() not in (None, first), 60, interval=0.2,
             what="the page showing the run's next state by itself")
    assert loads, "the page moved on without reloading: the test does not see what it claims"
    assert violations == []


def test_workflows_page_lists_each_with_its_last_run_and_pauses_from_the_list(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    page.goto(demo_site.url + "/workflows")
    names = page.eval_on_selector_all("#workflows tr[data-workflow]", "rs => rs.map(r => r.dataset.workflow)")
    assert sorted(names) == sorted(w["name"] for w in demo_site.get("/api/workflows")["workflows"])
    row = page.locator("#workflows tr[data-workflow=demo_request_sla]")
    assert "demo_request.created" in row.inner_text() and "active" in row.inner_text()
    assert row.locator("a[href^='/runs/run_']").count() == 1  # its last run, linked
    asked: list[str] = []
    try:
        confirm_then(page, "#workflows tr[data-workflow=demo_request_sla] button", asked)
        assert "paused" in page.locator("#workflows tr[data-workflow=demo_request_sla]").inner_text()
        confirm_then(page, "#workflows tr[data-workflow=demo_request_sla] button", asked)
        assert "active" in page.locator("#workflows tr[data-workflow=demo_request_sla]").inner_text()
        assert asked == ["Pause demo_request_sla?", "Resume demo_request_sla?"]
    finally:
        demo_site.api.post("/api/workflows/demo_request_sla/resume")
    assert violations == []
