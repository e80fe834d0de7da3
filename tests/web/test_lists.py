"""Lists that scale: events and runs with keyset pagination, status/endpoint/workflow/name filters and text
search over payloads and errors."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from opsloop._ids import new_id
from opsloop.state import NewEvent, open_store

from ..conftest import wait_for
from ..metrics.browser import csp_violations, shot
from .conftest import DemoSite


def rows(page: Any, table: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = page.eval_on_selector_all(
        f"#{table} tr[data-id]", "trs => trs.map(tr => ({id: tr.dataset.id, seq: tr.dataset.seq || '',"
        " status: tr.querySelector('.badge').textContent, text: tr.textContent}))")
    return found


@pytest.mark.browser
def test_events_page_filters_searches_and_pages(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    wait_for(lambda: len(demo_site.get("/api/events", limit=200)["events"]) > 120, 90, interval=1,
             what="more than two pages of events")
    page.goto(f"{demo_site.url}/events")
    first = rows(page, "events")
    assert len(first) == 50
    seqs = [int(r["seq"]) for r in first]
    assert seqs == sorted(seqs, reverse=True)  # newest first
    page.click("#older")
    page.wait_for_url("**/events?before=*")
    second = rows(page, "events")
    assert second and max(int(r["seq"]) for r in second) < min(seqs)  # continues where the first page ended
    assert page.locator("a:text('Newest')").count() == 1
    # filters by status and endpoint, from the form
    page.goto(f"{demo_site.url}/events")
    page.select_option("select[name=endpoint]", "demo_request")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/events?*endpoint=demo_request*")
    shown = rows(page, "events")
    assert shown and all("demo_request" in r["text"] for r in shown)
    page.goto(f"{demo_site.url}/events?status=dispatched")
    assert {r["status"] for r in rows(page, "events")} == {"dispatched"}
    # text search in payloads: one person's email finds their events, and only those
    event = demo_site.get("/api/events", endpoint="demo_request", limit=1)["events"][0]
    email = demo_site.get(f"/api/events/{event['id']}")["payload"]["email"]
    page.goto(f"{demo_site.url}/events")
    page.fill("input[name=q]", email.upper())  # case does not matter
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**q=*")
    found = rows(page, "events")
    assert event["id"] in {r["id"] for r in found} and len(found) < 10
    shot(page, "events-search")
    page.goto(f"{demo_site.url}/events?q=no-such-text-anywhere")
    assert "No event matches" in page.inner_text("#events")
    answer = page.goto(f"{demo_site.url}/events?before=soon")
    assert answer is not None and answer.status == 400 and "whole number" in page.inner_text("main")
    answer = page.goto(f"{demo_site.url}/events?status=lost")
    assert answer is not None and answer.status == 400 and "dispatched" in page.inner_text("main")
    assert violations == []


@pytest.mark.browser
def test_runs_page_filters_searches_and_pages(page: Any, demo_site: DemoSite) -> None:
    wait_for(lambda: len(demo_site.get("/api/runs", limit=200)["runs"]) > 60, 90, interval=1,
             what="more than a page of runs")
    page.goto(f"{demo_site.url}/runs")
    first = rows(page, "runs")
    assert len(first) == 50
    page.click("#older")
    page.wait_for_url("**/runs?before=*")
    second = rows(page, "runs")
    assert second and not {r["id"] for r in second} & {r["id"] for r in first}
    page.goto(f"{demo_site.url}/runs")
    page.select_option("select[name=workflow]", "purchase")
    page.select_option("select[name=status]", "completed")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/runs?*workflow=purchase*")
    shown = rows(page, "runs")
    assert shown and all("purchase" in r["text"] and r["status"] == "completed" for r in shown)
    # search in the trigger event: the demo request's email finds its SLA run
    run = demo_site.get("/api/runs", workflow="demo_request_sla", limit=1)["runs"][0]
    email = demo_site.get(f"/api/runs/{run['id']}")["trigger"]["data"]["email"]
    page.goto(f"{demo_site.url}/runs?q={email}")
    assert run["id"] in {r["id"] for r in rows(page, "runs")}
    page.click(f"#runs tr[data-id='{run['id']}'] td:nth-child(2) a")
    page.wait_for_url(f"**/runs/{run['id']}")


@pytest.mark.browser
def test_runs_page_shows_new_runs_as_they_arrive(page: Any, demo_site: DemoSite) -> None:
    """The demo keeps starting runs: /runs, left open, gains their rows at the top (server-sent events),
    with the same links, badges and human times as the rows it was rendered with, and without reloading."""
    violations = csp_violations(page)
    page.goto(f"{demo_site.url}/runs")
    page.evaluate("window.__notReloaded = true")
    shown = {r["id"] for r in rows(page, "runs")}
    assert shown, "the demo has runs"
    page.wait_for_function(
        "ids => Array.from(document.querySelectorAll('#runs tr[data-id]')).some(tr => !ids.includes(tr.dataset.id))",
        arg=sorted(shown), timeout=60_000)
    assert page.evaluate("window.__notReloaded === true"), "the page reloaded instead of adding the rows"
    now = rows(page, "runs")
    fresh = [r for r in now if r["id"] not in shown]
    assert now[0]["id"] == fresh[0]["id"], "new runs go on top"
    api_ids = [r["id"] for r in demo_site.get("/api/runs", limit=200)["runs"]]
    assert all(r["id"] in api_ids for r in fresh)
    first = page.locator(f'#runs tr[data-id="{fresh[0]["id"]}"]')
    assert first.locator(f'a[href="/runs/{fresh[0]["id"]}"]').count() == 2
    assert re.search(r"just now|\d+ s ago", first.locator("td").first.inner_text())  # a human time, no epoch
    assert not re.search(r"\b1[78]\d{8}\b", first.inner_text())
    assert "new run" in page.inner_text("#runs-live")
    ids = [r["id"] for r in rows(page, "runs")]
    assert len(ids) == len(set(ids)), "a run shown twice"
    assert violations == []


def test_runs_live_refuses_bad_parameters(demo_site: DemoSite) -> None:
    assert demo_site.api.get("/runs/live", params={"status": "nope"}).status_code == 400
    assert demo_site.api.get("/runs/live", params={"after": "yesterday"}).status_code == 400
    for key in ("nan~x", "inf~x", "-1e999~x"):  # nan would match no run, inf every one
        assert demo_site.api.get("/runs/live", params={"after": key}).status_code == 400, key
        assert demo_site.api.get("/runs", params={"before": key}).status_code == 400, key


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def test_search_is_text_not_a_pattern(store_url: str) -> None:
    store = open_store(store_url)
    try:
        now = time.time()
        events = [NewEvent(id=new_id("evt_"), name="deal", received_at=now, payload={"note": note})
                  for note in ("50% off", "5000 off", "a_b", "axb", "back\\slash")]
        raw = b'{"email": "Ada@Example.com"}'  # a webhook: the payload is stored as its body
        events.append(NewEvent(id=new_id("evt_"), name="hook", received_at=now, body=raw,
                               payload={"email": "Ada@Example.com"}))
        store.append_events(events)
        for term, count in (("50%", 1), ("%", 1), ("a_b", 1), ("_", 1), ("\\", 1), ("OFF", 2), ("ada@EXAMPLE", 1)):
            assert len(store.list_events(search=term)) == count, term
        assert [e.id for e in store.list_events(search=events[3].id)] == [events[3].id]
        assert store.list_events(search="ada@example")[0].payload == {"email": "Ada@Example.com"}
        newest = store.list_events(limit=2)
        rest = store.list_events(before_seq=newest[-1].seq)
        assert [e.id for e in newest + rest] == [e.id for e in reversed(events)]
    finally:
        store.close()


ODD_SEARCHES = ['"', "*", "a*", "NEAR(a b)", "NEAR(", "AND", "'", "''", "%", "_", "\\", "a", "ab", "é", "{\"",
                "x" * 10_000, "a%b", "(((", "\"a\" OR \"b\"", "col:ab", "-ab", "^ab", "\x00ab", "%00", "𝔘𝔫𝔦"]


def test_events_search_takes_any_text(demo_site: DemoSite) -> None:
    """Odd text in the search box (FTS5 syntax, LIKE wildcards, quotes, 1-2 characters, 10 KB) answers the
    page, never a 5xx; an email from a payload finds its event, through the index once it caught up."""
    event = demo_site.get("/api/events", endpoint="demo_request", limit=1)["events"][0]
    email = demo_site.get(f"/api/events/{event['id']}")["payload"]["email"]
    for text in [*ODD_SEARCHES, email, email.upper()[2:-3]]:
        answer = demo_site.api.get("/events", params={"q": text})
        assert answer.status_code == 200, (text[:40], answer.status_code, answer.text[:300])
        if text.startswith(email.upper()[2:-3]) or text == email:
            assert event["id"] in re.findall(r'<tr data-id="([^"]+)"', answer.text), text
    def note() -> str:
        page = demo_site.api.get("/events", params={"q": email}).text
        return "" if "search-note" in page else "index caught up"

    wait_for(note, 30, what="the search index to cover every event (no note on the page)")
    answer = demo_site.api.get("/events", params={"q": "ab"})
    assert "the text index finds 3 characters or more" in answer.text


def test_runs_live_sends_new_runs_and_changed_rows(server: Any) -> None:
    """``/runs/live`` on a real server: a run started after the page was rendered comes as ``event: rows``,
    and a watched run's row comes again as ``event: row`` once it finished with an error."""
    import json as _json

    from opsloop.workflows.runs import RunStore

    runs = RunStore(server.app.store)

    def start(workflow: str) -> str:
        with runs.transaction() as cur:
            run_id = runs.insert_run(cur, workflow, {"id": new_id("evt_"), "name": "live.test", "data": {}},
                                     dedupe_key=new_id("k_"), start_seq=0)
        assert run_id is not None
        return run_id

    watched = start("not_in_this_project")
    top = runs.get(watched)
    assert top is not None
    events: list[tuple[str, dict[str, Any]]] = []
    with server.api() as api, api.stream("GET", "/runs/live", params={
            "after": f"{top.created_at!r}~{top.id}", "watch": watched}) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        lines = answer.iter_lines()
        assert next(lines) == "retry: 2000"
        newer = start("not_in_this_project")
        with runs.transaction() as cur:
            runs.finish(cur, watched, "failed", None, "boom, seen live", waited=False)
        deadline = time.monotonic() + 20
        name = ""
        def done() -> bool:  # the server's workers may move the run on first: wait for the finish itself
            return any(n == "rows" for n, _ in events) and any(
                n == "row" and "boom, seen live" in d["html"] for n, d in events)

        while time.monotonic() < deadline and not done():
            line = next(lines)
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: ") and name in ("rows", "row"):
                events.append((name, _json.loads(line[len("data: "):])))
    rows = [data for n, data in events if n == "rows"]
    changed = [data for n, data in events if n == "row"]
    assert rows and f'data-id="{newer}"' in rows[0]["html"] and f'data-id="{watched}"' not in rows[0]["html"]
    final = [d for d in changed if "boom, seen live" in d["html"]]
    assert final and final[0]["id"] == watched and "status-failed" in final[0]["html"]
    assert all(d["id"] == watched for d in changed)
