"""One layout and one navigation on every page; times are human (relative, exact on hover), never epochs."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ..metrics.browser import csp_violations, shot, wait_js
from .conftest import DemoSite

pytestmark = pytest.mark.browser

NAV = ["/", "/events", "/runs", "/workflows", "/models", "/sources", "/syncs", "/people", "/dashboards", "/outbox"]
# a Unix time in seconds (2001..2096, with or without a fraction) or in milliseconds, standing alone
EPOCH = re.compile(r"(?<![\w.])(?:[1-3]\d{9}(?:\.\d+)?|[1-3]\d{12})(?![\w.])")


def every_page(site: DemoSite) -> list[str]:
    """The navigation's pages and one detail page of each kind the lists link to."""
    run = site.get("/api/runs")["runs"][0]
    sync = site.get("/api/syncs")[0]
    event = run["trigger_event"] or site.get("/api/events")["events"][0]["id"]
    board = "overview"
    person = site.get("/api/identity/profile", query=site.api.post(
        "/api/query", json={"sql": "select email from identity.golden_records where email is not null limit 1"}
    ).json()["rows"][0][0])["person_id"]
    pages = [*NAV, f"/runs/{run['id']}", f"/events/{event}", f"/syncs/{sync['sync']}", f"/dashboards/{board}",
             "/sources/hubspot", f"/people/{person}", "/segments", "/segments/active_customers", "/conflicts",
             "/models/customers"]
    if sync["last_run_id"]:
        pages.append(f"/syncs/{sync['sync']}/runs/{sync['last_run_id']}")
    return pages


def settle(page: Any) -> None:
    """Wait until a dashboard's tiles are drawn (other pages are complete when loaded)."""
    if page.locator(".tile").count():
        wait_js(page, "() => [...document.querySelectorAll('.tile .body')]"
                      ".every(b => b.textContent.trim() !== 'loading…')", 30_000)


def test_one_navigation_entry_per_page(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    for path in every_page(demo_site):
        page.goto(demo_site.url + path)
        assert page.locator("body > nav").count() == 1, path
        hrefs = page.eval_on_selector_all("body > nav a", "links => links.map(a => a.getAttribute('href'))")
        assert hrefs == NAV, (path, hrefs)  # each page once, in one order, on every page
        current = page.eval_on_selector_all("body > nav a[aria-current=page]", "links => links.map(a => a.textContent)")
        owner = "/people/" if path.startswith(("/segments", "/conflicts")) else path
        section = next(h for h in reversed(NAV) if owner == h or (h != "/" and owner.startswith(h + "/")))
        marked = page.locator(f"body > nav a[href='{section}'][aria-current=page]")
        assert len(current) == 1 and marked.count() == 1, path
    assert violations == []


def test_no_page_shows_an_epoch_number(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    times_seen = 0
    for path in every_page(demo_site):
        page.goto(demo_site.url + path)
        settle(page)
        text = page.inner_text("body")
        found = EPOCH.findall(text)
        assert not found, f"{path} shows epoch numbers {found[:5]}"
        stamps = page.eval_on_selector_all(
            "time[data-ts]", "ts => ts.map(t => [t.textContent, t.title, t.getAttribute('datetime')])")
        for label, title, iso in stamps:
            assert label and not EPOCH.search(label), (path, label)
            # the exact local time on hover, e.g. "2 Dec 2026, 01:02:03" (opsloop.js localised it)
            assert re.search(r"\d{1,2}:\d{2}:\d{2}", title) and "UTC" not in title, (path, title)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", iso), (path, iso)
        times_seen += len(stamps)
        shot(page, "page" + (path.replace("/", "-") if path != "/" else "-home"))
    assert times_seen > 20  # times are shown, as <time>, on the lists
    assert violations == []


def test_relative_times_read_as_ages(page: Any, demo_site: DemoSite) -> None:
    page.goto(demo_site.url + "/events")
    labels = page.eval_on_selector_all("main time[data-ts]", "ts => ts.map(t => t.textContent)")
    assert labels, "the events list shows when each event was received"
    assert all(re.fullmatch(r"just now|\d+ (s|min|h|days?) ago", label) for label in labels), labels
