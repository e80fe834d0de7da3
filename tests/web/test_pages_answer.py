"""Every page answers a logged-in caller with a whole HTML page, one of each kind of thing included.

The browser tests beside this one read what the pages show; they skip where no Chromium is installed. This
one needs no browser, so a page that fails to render (a template reading a field its handler no longer
passes, a handler tripping on a value's type) fails here everywhere.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.web.conftest import DemoSite

LISTS = ["/", "/events", "/runs", "/workflows", "/models", "/sources", "/syncs", "/outbox", "/people", "/segments",
         "/conflicts", "/dashboards"]


def _answer(site: DemoSite, path: str) -> Any:
    """The API's answer, or None where the demo project has no such subsystem (404) or it is not built (409)."""
    answer = site.api.get(path)
    if answer.status_code in (404, 409):
        return None
    assert answer.status_code == 200, (path, answer.text)
    return answer.json()


def _one_of_each(site: DemoSite) -> list[str]:
    paths = []
    runs = site.get("/api/runs")["runs"]
    paths += [f"/runs/{runs[0]['id']}"] if runs else []
    events = site.get("/api/events", limit=1)["events"]
    paths += [f"/events/{events[0]['id']}"] if events else []
    paths += [f"/models/{quote(m['name'])}" for m in (_answer(site, "/api/models") or [])[:1]]
    paths += [f"/sources/{quote(s['name'])}" for s in (_answer(site, "/api/sources") or [])[:1]]
    for sync in (_answer(site, "/api/syncs") or [])[:1]:
        paths.append(f"/syncs/{quote(sync['sync'])}")
        done = site.get(f"/api/syncs/{quote(sync['sync'])}")["runs"]
        paths += [f"/syncs/{quote(sync['sync'])}/runs/{quote(done[0]['run_id'])}"] if done else []
    for segment in ((_answer(site, "/api/segments") or {}).get("segments") or [])[:1]:
        paths.append(f"/segments/{quote(segment['segment'])}")
        preview = _answer(site, f"/api/segments/{quote(segment['segment'])}/preview") or {}
        paths += [f"/people/{quote(p['person_id'])}" for p in (preview.get("sample") or [])[:1]]
    return paths


def test_every_page_renders_for_a_token_holder(demo_site: DemoSite) -> None:
    paths = LISTS + _one_of_each(demo_site)
    assert any(p.startswith("/runs/") for p in paths) and any(p.startswith("/syncs/") for p in paths), paths
    failed = []
    for path in paths:
        answer = demo_site.api.get(path)
        if answer.status_code != 200 or "</html>" not in answer.text:
            failed.append(f"{path}: {answer.status_code} {answer.text[:300]}")
    assert not failed, "\n".join(failed)
