"""People as a CDP shows them: search by email, phone or a system's record id; a profile with each golden
field's value, the system whose value won and when; linked records per system; the person's events and
segment history; segments with members and who entered; conflicts."""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import wait_for
from ..metrics.browser import csp_violations, shot
from .conftest import DemoSite

pytestmark = pytest.mark.browser


def query(site: DemoSite, sql: str) -> list[list[Any]]:
    answer = site.api.post("/api/query", json={"sql": sql})
    assert answer.status_code == 200, answer.text
    rows: list[list[Any]] = answer.json()["rows"]
    return rows


def a_person_in_many_systems(site: DemoSite) -> tuple[str, str, str]:
    """(email, phone, crm record id) of a person linked in the CRM and the app, with a phone that won."""

    def find() -> list[list[Any]] | None:
        rows = query(site, "select g.email, g.phone, min(gr.record_id) from identity.golden_records g "
                           "join identity.graph gr using (person_id) where gr.system = 'crm' and g.phone is not null "
                           "and g.phone__source is not null group by 1, 2 order by 1 limit 1")
        return rows or None

    email, phone, crm_id = wait_for(find, 60, interval=1, what="a golden record with a CRM record")[0]
    return str(email), str(phone), str(crm_id)


def test_search_by_email_phone_or_record_id_opens_the_profile(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    email, phone, crm_id = a_person_in_many_systems(demo_site)
    person = demo_site.get("/api/identity/profile", query=email)["person_id"]
    for typed in (email.upper(), f"crm:{crm_id}"):
        page.goto(demo_site.url + "/people")
        page.fill("input[name=q]", typed)
        page.click("form[role=search] button")
        page.wait_for_url(f"{demo_site.url}/people/{person}")
        assert page.locator("h1").inner_text() == email, typed
    # a phone may be shared (a household, a company line): the search lists who has it
    page.goto(demo_site.url + "/people?q=" + phone.replace("+", "%2B"))
    if page.url.endswith(f"/people/{person}"):
        assert page.locator("h1").inner_text() == email
    else:
        assert page.locator(f"#people a[href='/people/{person}']").count() == 1
    page.goto(demo_site.url + "/people?q=nobody-has-this@example.invalid")
    assert "No person has an identifier or record like" in page.inner_text("#people")
    assert violations == []


def test_profile_shows_the_winning_source_per_field(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    email, _phone, _crm = a_person_in_many_systems(demo_site)
    profile = demo_site.get("/api/identity/profile", query=email)
    page.goto(f"{demo_site.url}/people/{profile['person_id']}")
    for name, field in profile["fields"].items():
        row = page.locator(f"#golden tr[data-field='{name}']")
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == ("" if field["value"] is None else str(field["value"])), name
        assert cells[1] == (field["source"] or ""), name
        if field["updated_at"]:
            assert row.locator("td time[datetime]").count() == 1, name
    phone_source = profile["fields"]["phone"]["source"]
    assert phone_source in ("app", "crm", "support")
    # linked records per system, each system once with its record ids
    systems = page.eval_on_selector_all("#records section.system h3", "hs => hs.map(h => h.firstChild.textContent)")
    assert sorted(s.strip() for s in systems) == sorted({r["system"] for r in profile["records"]})
    records = page.inner_text("#records")
    assert all(r["record_id"] in records for r in profile["records"])
    # the person's events: each links to its page and mentions the email
    events = page.locator("#person-events a")
    if events.count():
        events.first.click()
        page.wait_for_url(f"{demo_site.url}/events/*")
        assert email.lower() in page.inner_text("main").lower()
    shot(page, "page-people-profile")
    assert violations == []


def test_segments_list_and_a_segment_with_who_entered(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    summary = {s["segment"]: s for s in demo_site.get("/api/segments")["segments"]}
    page.goto(demo_site.url + "/segments")
    listed = page.eval_on_selector_all("#segments tr[data-segment]", "rs => rs.map(r => r.dataset.segment)")
    assert sorted(listed) == sorted(summary)
    page.click("#segments a[href='/segments/active_customers']")
    page.wait_for_url(demo_site.url + "/segments/active_customers")
    members = int(page.inner_text("#member-count"))
    assert members > 0
    assert page.locator("#members tr").count() - 1 == min(members, 50)  # the newest 50, each linked
    entered = page.locator("#changes tr", has_text="entered")
    assert entered.count() > 0  # the first evaluation entered every active customer
    entered.first.locator("a").click()
    page.wait_for_url(f"{demo_site.url}/people/*")
    history = page.inner_text("#segment-history")
    assert "active_customers" in history and "entered" in history
    assert violations == []


def test_conflicts_page_and_people_navigation(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    conflicts = demo_site.get("/api/identity/conflicts")["conflicts"]
    page.goto(demo_site.url + "/conflicts")
    assert page.locator("body > nav a[aria-current=page]").inner_text() == "People"
    if conflicts:
        assert page.locator("#conflicts tr").count() - 1 >= len(conflicts)
        assert conflicts[0]["value"] in page.inner_text("#conflicts")
    else:
        assert "No conflict" in page.inner_text("#conflicts")
    response = page.goto(demo_site.url + "/segments/nope")
    assert response.status == 404 and "no segment 'nope'" in page.inner_text("main")
    response = page.goto(demo_site.url + "/people/p_nope")
    assert response.status == 404
    assert violations == []
