"""axe-core (from the ``axe-playwright-python`` package, whose axe.min.js ships inside it: no CDN) finds no
serious or critical violation on any page, and every action is reachable from the keyboard."""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import wait_for
from .conftest import DemoSite
from .test_layout import every_page, settle

pytestmark = pytest.mark.browser
BLOCKING = ("serious", "critical")


def violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
            for v in found if v.get("impact") in BLOCKING]


def test_no_serious_or_critical_violation_on_any_page(page: Any, demo_site: DemoSite) -> None:
    problems: dict[str, list[str]] = {}
    for path in every_page(demo_site):
        page.goto(demo_site.url + path)
        settle(page)
        found = violations(page)
        if found:
            problems[path] = found
    assert problems == {}


def test_every_action_is_reachable_from_the_keyboard(page: Any, demo_site: DemoSite) -> None:
    page.goto(demo_site.url + "/syncs/hubspot_contacts")
    reached: list[str] = []
    for _ in range(60):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.id || document.activeElement.textContent.trim()"))
        if "run-now" in reached and "pull-now" not in reached:
            break
    assert "run-now" in reached
    # Enter on the focused button asks first (the confirmation is a dialog), as a click does
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.keyboard.press("Enter")
    wait_for(lambda: asked, 5, interval=0.05, what="the confirmation")
    assert page.url == demo_site.url + "/syncs/hubspot_contacts"  # dismissed: nothing was posted
    assert asked and asked[0].startswith("Run hubspot_contacts now?")
