"""Syncs as a person checks them: each sync's runs with planned/sent/failed counts, every row the destination
refused with its error code and message, the fields mapped, "Run now" and "Retry failed rows" (with a
confirmation, behind the session's CSRF token). The demo's hubspot_contacts sync writes to a HubSpot on
127.0.0.1 that refuses two contacts (``PickyHubSpot`` in conftest)."""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import wait_for
from ..metrics.browser import csp_violations, shot
from .conftest import DemoSite, new_live_rows

pytestmark = pytest.mark.browser


def test_syncs_list_links_each_sync_and_counts_failing_rows(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    page.goto(demo_site.url + "/syncs")
    rows = page.locator("#syncs tr[data-sync]")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.sync)")) == ["hubspot_contacts", "zendesk_users"]
    hub = page.locator("#syncs tr[data-sync=hubspot_contacts]")
    assert "hubspot" in hub.inner_text()
    assert hub.locator("a.bad").inner_text().endswith("rows")  # the failing rows, linked
    hub.locator("a", has_text="hubspot_contacts").click()
    page.wait_for_url(demo_site.url + "/syncs/hubspot_contacts")
    assert violations == []


def test_a_refused_row_shows_hubspots_error_code_and_message(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    refused = demo_site.hubspot.refused
    assert refused, "the fake HubSpot refused no contact"
    page.goto(demo_site.url + "/syncs/hubspot_contacts")
    table = page.locator("#failed-rows")
    row = table.locator("tr", has_text=refused[0])
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "VALIDATION_ERROR"
    assert f"email: INVALID_EMAIL: Email address {refused[0]} is invalid" in cells[2]
    assert cells[3].endswith("of 5")  # attempts of max_retries
    # the fields mapped: HubSpot property <- column
    mapping = page.locator("#mapping tr").all_inner_texts()
    assert any(m.split("\t") == ["email", "email"] for m in mapping)
    assert any(m.split("\t") == ["phone", "phone"] for m in mapping)
    # runs with their counts; one of them failed a row
    runs = page.locator("#sync-runs tr[data-run]")
    assert runs.count() >= 1
    shot(page, "page-syncs-hubspot_contacts")
    # the demo's sync runs on every profile.updated, so the run that failed a row may be pages back: follow
    # "Older" (keyset pages) until one shows a failed count
    for _ in range(40):
        failed = [int(t) for t in runs.locator("td.failed").all_inner_texts()]
        if any(f > 0 for f in failed) or page.locator("#older").count() == 0:
            break
        page.locator("#older").click()
        page.wait_for_load_state()
    assert any(f > 0 for f in failed), "no run of hubspot_contacts shows a failed row on any page"
    # a run's page lists its rows, the refused one with HubSpot's words
    run_with_failure = runs.nth(failed.index(next(f for f in failed if f > 0)))
    run_with_failure.locator("a").first.click()
    page.wait_for_url(f"{demo_site.url}/syncs/hubspot_contacts/runs/*")
    rejected = page.locator("#run-rows tr", has_text="INVALID_EMAIL")
    assert rejected.count() >= 1
    assert "failed" in rejected.first.inner_text()
    assert violations == []


def test_retry_failed_rows_asks_first_then_sends_them(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    refused = list(demo_site.hubspot.refused)
    page.goto(demo_site.url + "/syncs/hubspot_contacts")
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("#retry-failed")
    assert asked and "failed rows" in asked[0]
    assert page.url == demo_site.url + "/syncs/hubspot_contacts"  # dismissed: nothing posted
    demo_site.hubspot.forgive()  # the contacts are fixed in HubSpot
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#retry-failed")
    page.wait_for_url(lambda url: "/syncs/hubspot_contacts?message=" in url)
    notice = page.locator("p.notice").inner_text()
    assert "run ok" in notice or "run partial" in notice, notice

    def fixed() -> bool:
        page.goto(demo_site.url + "/syncs/hubspot_contacts")
        return page.locator("#failed-rows").count() == 0

    wait_for(fixed, 30, interval=0.5, what="the failed rows sent again")
    assert all(email in demo_site.hubspot.contacts for email in refused)
    assert violations == []


def test_run_now_without_the_csrf_token_is_refused(demo_site: DemoSite) -> None:
    # the API token alone does not make a cookie-less form post acceptable, and a session needs its CSRF token
    answer = demo_site.api.post("/syncs/hubspot_contacts/run", headers={"Authorization": ""}, data={})
    assert answer.status_code in (401, 303, 403), answer.status_code
    assert "/syncs/hubspot_contacts?message" not in answer.headers.get("location", "")


def test_unknown_sync_is_a_404_page(page: Any, demo_site: DemoSite) -> None:
    response = page.goto(demo_site.url + "/syncs/nope")
    assert response.status == 404
    assert "There is no sync 'nope'" in page.inner_text("main")
    response = page.goto(demo_site.url + "/syncs/hubspot_contacts/runs/run_nope")
    assert response.status == 404


def test_runs_page_on_with_older_keyset(page: Any, demo_site: DemoSite) -> None:
    query = "select count(*) from opsloop_sync.runs where sync = 'zendesk_users'"
    while demo_site.api.post("/api/query", json={"sql": query}).json()["rows"][0][0] <= 30:
        assert demo_site.api.post("/api/syncs/zendesk_users/run", json={}).status_code == 200
    page.goto(demo_site.url + "/syncs/zendesk_users")
    first = page.eval_on_selector_all("#sync-runs tr[data-run]", "rs => rs.map(r => r.dataset.run)")
    assert len(first) == 25
    page.click("#older")
    page.wait_for_url(lambda url: "before=" in url)
    second = page.eval_on_selector_all("#sync-runs tr[data-run]", "rs => rs.map(r => r.dataset.run)")
    assert second and not set(first) & set(second)  # the next page starts after the last row shown
    assert page.locator("a", has_text="Newest").count() == 1
    response = page.goto(demo_site.url + "/syncs/zendesk_users?before=yesterday")
    assert response.status == 400 and "'before' should be what the Older link gives" in page.inner_text("main")


def test_a_run_that_starts_while_the_page_is_open_appears_without_a_reload(page: Any, demo_site: DemoSite) -> None:
    page.goto(demo_site.url + "/syncs/zendesk_users")
    page.wait_for_selector("#sync-runs[data-live-rows]")
    shown = set(page.eval_on_selector_all("#sync-runs tr[data-id]", "rs => rs.map(r => r.dataset.id)"))
    page.evaluate("window.stillThisPage = true")  # gone if the page reloads
    started = demo_site.api.post("/api/syncs/zendesk_users/run", json={})
    assert started.status_code == 200, started.text

    wait_for(lambda: any(status != "running" for _, status in new_live_rows(page, "#sync-runs", shown)), 30,
             what="the new run's finished row in the table")
    assert page.evaluate("window.stillThisPage") is True
    first = page.eval_on_selector("#sync-runs tr[data-id]", "r => r.dataset.id")
    assert first not in shown  # newest first
    assert "just arrived" in page.inner_text("#runs-live")
    response = page.goto(demo_site.url + "/syncs/zendesk_users/live?after=yesterday")
    assert response is not None and response.status == 400
    assert "'after' should be what the page gives" in page.inner_text("main")
