"""Sources as a person checks them: each pull's state, schedule, last and next run; a source's streams with
their cursors and rows, its runs with their warnings (a scope the token lacks), and "Pull now". The demo's
hubspot source reads a HubSpot on 127.0.0.1 whose token lacks the companies scope at first (conftest)."""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import wait_for
from ..metrics.browser import csp_violations, shot
from .conftest import DemoSite, new_live_rows

pytestmark = pytest.mark.browser


def test_sources_list_then_pull_now_shows_streams_cursors_and_warnings(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    page.goto(demo_site.url + "/sources")
    names = page.eval_on_selector_all("#sources tr[data-source]", "rs => rs.map(r => r.dataset.source)")
    assert sorted(names) == sorted(s["name"] for s in demo_site.get("/api/sources"))
    page.click("#sources a[href='/sources/hubspot']")
    page.wait_for_url(demo_site.url + "/sources/hubspot")
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    def pull() -> str:
        page.goto(demo_site.url + "/sources/hubspot")
        page.once("dialog", accept)
        with page.expect_navigation(url=lambda url: "/sources/hubspot?message=" in url, timeout=60_000):
            page.click("#pull-now")
        return str(page.inner_text("p.notice"))

    # the token cannot read companies, which sources/hubspot.yml asks for: the pull fails, naming the scope
    notice = pull()
    assert asked == ["Pull hubspot now?"]
    shot(page, "page-sources-hubspot-failed")
    assert notice.startswith("pull failed") and "crm.objects.companies.read" in notice, notice
    assert "crm.objects.companies.read" in page.inner_text("#warnings")
    assert "failed" in page.locator("#source-runs tr").nth(1).inner_text()
    # granted in HubSpot: the next pull loads, and each stream shows its cursor and rows
    demo_site.hubspot_reads.granted.add("crm.objects.companies.read")
    notice = pull()
    assert notice.startswith("pull succeeded"), notice
    contacts = page.locator("#streams tr[data-stream=contacts]").locator("td").all_inner_texts()
    assert int(contacts[2]) >= 3  # rows pulled
    assert contacts[1] and contacts[1] != "none yet (the next pull reads everything)"
    assert page.locator("#streams tr[data-stream=contacts] td time[datetime]").count() >= 1
    runs = page.locator("#source-runs tr").all_inner_texts()
    assert "succeeded" in runs[1] and "failed" in runs[2]
    shot(page, "page-sources-hubspot")
    assert violations == []


def test_unknown_source_is_a_404_page(page: Any, demo_site: DemoSite) -> None:
    response = page.goto(demo_site.url + "/sources/nope")
    assert response.status == 404 and "There is no source 'nope'" in page.inner_text("main")


def test_a_pull_that_starts_while_the_page_is_open_appears_without_a_reload(page: Any, demo_site: DemoSite) -> None:
    page.goto(demo_site.url + "/sources/hubspot")
    page.wait_for_selector("#source-runs[data-live-rows]")
    shown = set(page.eval_on_selector_all("#source-runs tr[data-id]", "rs => rs.map(r => r.dataset.id)"))
    page.evaluate("window.stillThisPage = true")  # gone if the page reloads
    pulled = demo_site.api.post("/api/sources/hubspot/pull", json={}, timeout=60)
    assert pulled.status_code in (200, 400, 502), pulled.text  # failed or not, the pull is a run on the page

    wait_for(lambda: any(status != "running" for _, status in new_live_rows(page, "#source-runs", shown)), 30,
             what="the new pull's finished row in the table")
    assert page.evaluate("window.stillThisPage") is True
    assert page.eval_on_selector("#source-runs tr[data-id]", "r => r.dataset.id") not in shown  # newest first
    assert "just arrived" in page.inner_text("#runs-live")
    for after in ("yesterday", "nan~x", "1e999~x"):  # nan or inf would match no run, ever
        response = page.goto(demo_site.url + f"/sources/hubspot/live?after={after}")
        assert response is not None and response.status == 400, after
        assert "'after' should be what the page gives" in page.inner_text("main")
