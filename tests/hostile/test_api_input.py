"""Every API route validates its input, answers a mistake with a JSON 4xx naming the parameter, and is
published in the OpenAPI document at /api/openapi.json (behind the token)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsloop.web.openapi import api_routes, openapi_path, undeclared

from ..conftest import ServerThread, make_app, wait_for
from ._fuzz import example_project, send_app_events
from .conftest import Running

# (method, path, request options, status, the parameter the error names or None, words the error holds)
MISTAKES: list[tuple[str, str, dict[str, Any], int, str | None, str]] = [
    ("GET", "/api/events?limit=abc", {}, 400, "limit", "integer"),
    ("GET", "/api/events?limit=-1", {}, 400, "limit", "greater than or equal to 1"),
    ("GET", "/api/events?since=yesterday-ish", {}, 400, "since", "ISO 8601"),
    ("GET", "/api/events?since=nan", {}, 400, "since", "finite"),
    ("GET", "/api/events?status=lost", {}, 400, "status", "one of"),
    ("POST", "/api/replay", {"content": b"{"}, 400, "body", "not JSON"),
    ("POST", "/api/replay", {"content": b"[1, 2]"}, 400, "body", "JSON object"),
    ("POST", "/api/replay", {"content": b'{"since": NaN}'}, 400, "body", "NaN"),
    ("POST", "/api/replay", {"content": b"[" * 100_000}, 400, "body", "not JSON"),
    ("POST", "/api/replay", {"json": {"sinse": "2026-01-01"}}, 422, "sinse", "unknown field"),
    ("POST", "/api/replay", {"json": {"since": "last week"}}, 422, "since", "ISO 8601"),
    ("POST", "/api/events/evt_none/replay", {}, 404, "event_id", "no event"),
    ("POST", "/api/events/evt_none/replay", {"content": b"{"}, 400, "body", "not JSON"),
    ("GET", "/api/metrics/x?since=99999999d", {}, 400, "since", "duration"),
    ("GET", "/api/runs?until=2026-13-45", {}, 400, "until", "ISO 8601"),
    ("POST", "/api/runs/replay", {"json": {"status": "happy"}}, 422, "status", "one of"),
    ("POST", "/api/runs/run_none/rerun", {"json": {"input": 5}}, 422, "input", "dictionary"),
    ("POST", "/api/runs/run_none/rerun", {}, 404, "run_id", "no run"),
    ("POST", "/api/runs/run_none/cancel", {}, 404, "run_id", "no run"),
    ("POST", "/api/models/build", {"json": {"select": "orders"}}, 422, "select", "list"),
    ("POST", "/api/query", {"json": {}}, 422, "sql", "required"),
    ("POST", "/api/query", {"json": {"sql": "select 1", "limit": "many"}}, 422, "limit", "integer"),
    ("GET", "/api/nowhere", {}, 404, None, "openapi.json"),
    ("DELETE", "/api/events", {}, 405, None, "not allowed"),
]


@pytest.mark.slow
def test_mistakes_get_a_json_4xx_naming_the_parameter(up: Running) -> None:
    with up.api() as api:
        for method, path, options, status, parameter, words in MISTAKES:
            answer = api.request(method, path, **options)
            where = f"{method} {path} {options}"
            assert answer.status_code == status, f"{where}: {answer.status_code} {answer.text[:300]}"
            assert answer.headers["content-type"] == "application/json", where
            body = answer.json()
            assert words in body["error"], f"{where}: {body}"
            assert body.get("parameter") == parameter, f"{where}: {body}"
        # the right input still works, on the same routes
        event_id = up.good_event("grace@example.com")
        assert [e["id"] for e in api.get("/api/events", params={"limit": "1"}).json()["events"]] == [event_id]
        replayed = api.post(f"/api/events/{event_id}/replay")
        assert replayed.status_code == 202, replayed.text
        assert api.post("/api/replay", json={"since": "2000-01-01T00:00:00Z", "status": "failed"}).status_code == 202


@pytest.fixture
def example_server(tmp_path: Path) -> Iterator[tuple[Path, ServerThread]]:
    with example_project(tmp_path / "saas") as root, ServerThread(make_app(root)) as server:
        yield root, server


def test_every_api_route_is_in_the_document_and_back(example_server: tuple[Path, ServerThread]) -> None:
    _root, server = example_server
    routes = server.server.config.app.fallback.routes
    assert undeclared(routes) == []
    with server.api() as api:
        document = api.get("/api/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    in_app = {(method.lower(), openapi_path(route.path)) for route, method in api_routes(routes)}
    in_document = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert in_app == in_document
    assert len(in_app) >= 30  # the example project has sources, syncs, metrics and dashboards
    pull = document["paths"]["/api/sources/{name}/pull"]["post"]
    assert pull["parameters"][0]["schema"]["examples"] == ["hubspot", "stripe", "zendesk"]
    assert {"400", "401", "404", "409"} <= set(pull["responses"])
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]
    assert httpx.get(f"{server.url}/api/openapi.json").status_code == 401


def test_names_that_do_not_exist_are_404_and_real_ones_work(example_server: tuple[Path, ServerThread]) -> None:
    root, server = example_server
    with server.api() as api:
        missing = api.post("/api/sources/nope/pull")
        assert missing.status_code == 404, missing.text  # it was 502
        assert missing.json()["parameter"] == "name" and "stripe" in missing.json()["error"]
        pulled = api.post("/api/sources/stripe/pull", params={"full_refresh": "maybe"})
        assert pulled.status_code == 400 and pulled.json()["parameter"] == "full_refresh", pulled.text
        pulled = api.post("/api/sources/stripe/pull", timeout=120)
        assert pulled.status_code == 200 and pulled.json()["status"] == "succeeded", pulled.text
        for path in ("/api/metrics/nope", "/api/dashboards/nope", "/api/dashboards/nope/events",
                     "/api/models/nope/compiled", "/api/syncs/nope", "/api/dashboards/overview/tiles/999"):
            answer = api.get(path)
            assert answer.status_code == 404 and "error" in answer.json(), f"{path}: {answer.text}"
        assert api.post("/api/syncs/nope/run").status_code == 404
        assert api.post("/api/workflows/nope/pause").status_code == 404
        metric = api.get("/api/metrics/customer_count", params={"since": "99999999d"})
        assert metric.status_code == 400 and metric.json()["parameter"] == "since", metric.text
        assert api.post("/api/models/build", json={"full_refresh": True}, timeout=120).json()["ok"] is True
        wait_for(lambda: api.get("/api/metrics/customer_count", params={"since": "30d", "grain": "week"}).status_code
                 == 200, 30, what="the metric to read the built model")
        tile = api.get("/api/dashboards/overview/tiles/0", params={"since": "1y"})
        assert tile.status_code == 200, tile.text
        run = api.post("/api/syncs/hubspot_contacts/run", content=json.dumps({"dry_run": "perhaps"}))
        assert run.status_code == 422 and run.json()["parameter"] == "dry_run", run.text
        event_ids = send_app_events(root, server.url, 1)
        assert api.get(f"/api/events/{event_ids[0]}").json()["id"] == event_ids[0]
        # the one route the fuzz leaves out (it never ends): a real board's stream opens with its hello
        with api.stream("GET", "/api/dashboards/overview/events", timeout=15) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            first = next(stream.iter_text())
        assert "event: hello" in first
