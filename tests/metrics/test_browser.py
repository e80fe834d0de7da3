"""Dashboards in headless Chromium: login, live updates by server push, markers, cohorts, escaping."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from opsloop import outbox
from opsloop.app import App
from opsloop.state import EventRecord

from ..conftest import ServerThread
from .browser import csp_violations, launch, login, shot, wait_js
from .conftest import monday_base

pytestmark = pytest.mark.browser
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


def purchases_become_customers(app: App) -> None:
    """A stand-in for the example's customers model: rebuilt from raw.events after each load."""

    async def rebuild(events: list[EventRecord]) -> None:
        bought = [e for e in events if e.name == "purchase.completed"]
        if not bought:
            return
        for e in bought:
            p = e.payload
            now = datetime.fromtimestamp(e.received_at, tz=UTC).replace(tzinfo=None)
            app.warehouse.execute("INSERT INTO analytics.customers VALUES (?, ?, ?, ?, NULL)",
                                  (p["customer_id"], p["name"], p.get("plan", "pro"), now))
            app.warehouse.execute("INSERT INTO analytics.orders VALUES (?, ?, ?, ?, ?)",
                                  (1000 + p["customer_id"], p["customer_id"], p.get("plan", "pro"), p["amount"], now))
        for model in ("customers", "orders"):
            await app.emit("model.built", {"model": model, "relation": f"analytics.{model}", "rows": len(bought),
                                           "changed_rows": len(bought)})

    app.on_raw_loaded.append(rebuild)


def tile_text(page: Any, index: int) -> str:
    return str(page.inner_text(f"#tile-{index}-body"))


def test_dashboard_updates_live_with_the_new_customers_marker(example_server: ServerThread, browser: Any) -> None:
    purchases_become_customers(example_server.app)
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    try:
        page = context.new_page()
        violations = csp_violations(page)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        login(page, example_server.url, example_server.token, "/dashboards/sales")
        page.wait_for_selector("#tile-0-body .kpi-value")
        assert page.inner_text("#tile-0-body .kpi-value") == "4"
        page.wait_for_selector("#live.on")
        wait_js(page, "document.querySelector('#tile-3-body .chart') && "
                      "document.querySelector('#tile-3-body .chart').data")
        shot(page, "dashboard-before")
        page.evaluate("window.__sameDocument = true")
        before = page.evaluate("document.getElementById('tile-0').dataset.refreshedAt")

        got = httpx.post(f"{example_server.url}/hooks/purchase",
                         json={"customer_id": 6, "name": EVIL, "plan": "pro", "amount": 75})
        assert got.status_code in (200, 202), got.text

        wait_js(page, "document.querySelector('#tile-0-body .kpi-value').textContent === '5'", 10_000)
        # the chart changed in place: its last point is now 5, and the new customer's marker is on it
        wait_js(
            page, """() => { const gd = document.querySelector('#tile-3-body .chart');
                       const line = gd.data[0]; const marks = gd.data.find(t => t.name === 'Highlights');
                       return line.y[line.y.length - 1] === 5 && marks &&
                              marks.hovertext.some(t => t.includes('onerror')); }""", 10_000)
        assert page.evaluate("window.__sameDocument") is True  # no reload happened
        after = page.evaluate("document.getElementById('tile-0').dataset.refreshedAt")
        assert float(after) > float(before)
        assert "Last refreshed" in page.inner_text("#tile-0 .refreshed")
        # the tooltip names the customer, as text
        page.evaluate(
            """() => { const gd = document.querySelector('#tile-3-body .chart');
                       const i = gd.data.findIndex(t => t.name === 'Highlights');
                       const p = gd.data[i].hovertext.findIndex(t => t.includes('onerror'));
                       Plotly.Fx.hover(gd, [{curveNumber: i, pointNumber: p}]); }""")
        page.wait_for_selector("#tile-3-body .hovertext")
        hover = page.eval_on_selector("#tile-3-body .hovertext", "n => n.textContent")
        assert f"New customer: {EVIL}" in hover
        assert page.locator("img[src=x]").count() == 0
        assert dialogs == []
        assert violations == []  # charts, live updates and tooltips work under the pages' CSP
        shot(page, "dashboard-after-purchase")
    finally:
        context.close()


def test_cohort_matrix_and_escaped_table(example_server: ServerThread, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    try:
        page = context.new_page()
        login(page, example_server.url, example_server.token, "/dashboards/sales")
        page.wait_for_selector("#tile-10-body table.cohort")
        base = monday_base()
        rows = page.eval_on_selector_all(
            "#tile-10-body tr[data-cohort]",
            "rows => rows.map(r => [r.dataset.cohort, r.children[1].textContent, "
            "[...r.querySelectorAll('td.cell')].map(c => c.textContent)])")
        first, second, third = rows
        assert first[0] == base.isoformat() and first[1] == "2"
        assert first[2][:5] == ["100%", "50%", "50%", "50%", "0%"]
        assert second[1] == "2" and second[2][:4] == ["100%", "50%", "0%", "0%"]
        assert third[1] == "1" and third[2][:3] == ["100%", "0%", "0%"]
        table = tile_text(page, 8)
        assert "Barbara" in table and "0th" in table and "100th" in table
        shot(page, "dashboard-cohort")
        # a dashboard filter applies to the tiles whose metric has the dimension
        page.select_option("select[name=since]", "all")
        page.fill("input[name='dim:plan']", "team")
        page.click("#filters button[type=submit]")
        wait_js(
            page, """() => { const gd = document.querySelector('#tile-6-body .chart');
                       return location.search.includes('plan%3Dteam') && gd && gd.data &&
                              gd.data[0].y.reduce((a, b) => a + b, 0) === 130; }""", 10_000)
    finally:
        context.close()


def test_unauthenticated_visit_goes_to_login_and_outbox_page(example_server: ServerThread, browser: Any) -> None:
    store = example_server.app.store
    item = outbox.record(store, "slack", "chat.postMessage", {"text": EVIL}, target="#sales")
    outbox.update(store, item, {"text": "claimed by Ada"}, action="chat.update")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(example_server.url + "/dashboards/sales")
        assert "/login?next=" in page.url
        shot(page, "login")
        login(page, example_server.url, example_server.token, "/outbox")
        card = page.locator(f"li[id='{item}']")
        assert "claimed by Ada" in card.locator(".slack-body").first.inner_text()
        assert "edited" in card.locator(".slack-head").inner_text() and card.get_attribute("data-version") == "2"
        card.locator("details.versions summary").click()
        assert EVIL in card.locator("li.version[data-version='1']").inner_text()  # the first text, as text
        assert page.locator("img[src=x]").count() == 0
        page.goto(example_server.url + "/dashboards")
        assert page.locator("a[href='/dashboards/sales']").count() == 1
        assert page.locator("a[href='/events']").count() >= 1
        shot(page, "dashboards")
        page.goto(example_server.url + "/outbox")
        shot(page, "outbox")
    finally:
        context.close()


def test_refresh_button_needs_csrf_and_stream_pushes(example_server: ServerThread) -> None:
    with httpx.Client(base_url=example_server.url) as client:
        client.post("/login", data={"token": example_server.token})
        forged = client.post("/api/dashboards/sales/refresh")
        assert forged.status_code == 403
        page = client.get("/dashboards/sales")
        csrf = re.search(r'data-csrf="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
        with client.stream("GET", "/api/dashboards/sales/events") as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            ok = client.post("/api/dashboards/sales/refresh", headers={"X-CSRF-Token": csrf})
            assert ok.status_code == 202
            seen = []
            for line in lines:
                if line.startswith("data:") and "tiles" in line:
                    seen = json.loads(line[5:])["tiles"]
                    break
        assert seen == list(range(11))
