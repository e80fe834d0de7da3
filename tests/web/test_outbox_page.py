"""The outbox as the destination would show it: Slack messages from their blocks (mrkdwn, buttons), edited
in place with their versions; emails with subject, recipients and body; CRM writes as fields. No raw JSON."""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import wait_for
from ..metrics.browser import csp_violations, shot
from .conftest import DemoSite

pytestmark = pytest.mark.browser


def items(site: DemoSite) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = site.get("/api/outbox")["items"]
    return found


def test_slack_messages_read_as_slack_shows_them(page: Any, demo_site: DemoSite) -> None:
    violations = csp_violations(page)
    edited = wait_for(lambda: [i for i in items(demo_site) if i["destination"] == "slack" and i["version"] > 1
                               and "claimed by" in i["payload"]["text"]], 90, interval=1,
                      what="a claimed demo request's Slack message")[0]
    page.goto(f"{demo_site.url}/outbox?destination=slack")
    assert page.locator("text=\"blocks\"").count() == 0 and "{\"" not in page.inner_text("main")
    card = page.locator(f"li[id='{edited['id']}']")
    body = card.locator(".slack-body").first.inner_text()
    # ":white_check_mark: Grace Wilson claimed by kim after 3 min": the emoji drawn, the text as written
    assert "\u2705" in body and ":white_check_mark:" not in body
    assert edited["payload"]["text"].split(":white_check_mark: ", 1)[-1] in body
    assert "edited" in card.locator(".slack-head").inner_text()
    assert card.get_attribute("data-version") == str(edited["version"])
    versions = card.locator("details.versions")
    assert versions.get_attribute("open") is None
    versions.locator("summary").click()
    earlier = versions.locator("li.version")
    assert earlier.count() == edited["version"] - 1
    first = versions.locator("li.version[data-version='1']")
    assert "New demo request" in first.inner_text()
    assert first.locator(".slack-button.primary").inner_text() == "Claim"  # the posted message had the button
    shot(page, "outbox-slack")

    posted = next(i for i in items(demo_site) if i["destination"] == "slack" and i["version"] == 1
                  and i["payload"].get("blocks"))
    page.goto(f"{demo_site.url}/outbox?destination=slack")
    if page.locator(f"li[id='{posted['id']}']").count() == 0:
        return  # it was updated meanwhile; the versions above showed its button
    fresh = page.locator(f"li[id='{posted['id']}']")
    assert fresh.locator(".slack-button").count() >= 1 and "edited" not in fresh.inner_text()
    assert violations == []


def test_emails_and_record_writes(page: Any, demo_site: DemoSite) -> None:
    email = next(i for i in items(demo_site) if i["destination"] == "email")
    page.goto(f"{demo_site.url}/outbox?destination=email")
    card = page.locator(f"li[id='{email['id']}']")
    assert card.locator("h2.subject").inner_text() == email["payload"]["subject"]
    assert card.locator("dd.to").inner_text() == ", ".join(email["payload"]["to"])
    assert "Sam, Customer Success" in card.locator(".email-body").inner_text()
    shot(page, "outbox-email")
    write = wait_for(lambda: [i for i in items(demo_site) if i["destination"].startswith("sync:")], 90, interval=1,
                     what="a sync's write to the CRM or the support tool")[0]
    page.goto(f"{demo_site.url}/outbox?destination={write['destination']}")
    card = page.locator(f"li[id='{write['id']}']")
    rows = card.locator("table.record tr")
    assert rows.count() == len(write["payload"]["fields"])
    assert write["payload"]["fields"]["email"] in card.inner_text() and "idempotency_key" not in card.inner_text()


def test_the_outbox_pages_instead_of_growing(page: Any, demo_site: DemoSite) -> None:
    wait_for(lambda: len(items(demo_site)) > 55, 90, interval=1, what="more than a page of outbox items")
    page.goto(f"{demo_site.url}/outbox")
    assert page.locator("ol.outbox > li.card").count() == 50
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 50 * 260, height  # a card is a message, not 40 lines of JSON
    first_ids = set(page.eval_on_selector_all("ol.outbox > li.card", "cs => cs.map(c => c.id)"))
    page.click("#older")
    page.wait_for_url("**/outbox?before=*")
    older_ids = set(page.eval_on_selector_all("ol.outbox > li.card", "cs => cs.map(c => c.id)"))
    assert older_ids and not older_ids & first_ids
    answer = page.goto(f"{demo_site.url}/outbox?before=yesterday")
    assert answer is not None and answer.status == 400 and "before" in page.inner_text("main")
