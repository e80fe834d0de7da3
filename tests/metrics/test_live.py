"""Server push without a browser: tiles over raw.events refresh when events land; scheduled tiles tick."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import ServerThread, free_port, make_app, wait_for
from .conftest import seed_app


def pushes(stream: httpx.Response) -> Iterator[dict[str, object]]:
    for line in stream.iter_lines():
        if line.startswith("data:") and "tiles" in line:
            yield json.loads(line[5:])


def test_a_webhook_refreshes_tiles_that_read_raw_events(example_server: ServerThread) -> None:
    with example_server.api() as api:
        assert api.get("/api/dashboards/live/tiles/0").json()["value"] == 0
        with api.stream("GET", "/api/dashboards/live/events") as stream:
            got = httpx.post(f"{example_server.url}/hooks/purchase",
                             json={"customer_id": 7, "name": "Hedy", "plan": "team", "amount": 12.5})
            assert got.status_code in (200, 202)
            posted = time.monotonic()
            for message in pushes(stream):
                if 0 in message["tiles"]:  # type: ignore[operator]
                    break
            assert time.monotonic() - posted < 5
            assert "new event" in str(message["reason"])
        tile = api.get("/api/dashboards/live/tiles/0").json()
        assert tile["value"] == 1 and tile["refreshed_at"] > 0
        chart = api.get("/api/dashboards/live/tiles/1").json()
        assert chart["series"][0]["y"][-1] == 12.5
        team = api.get("/api/metrics/purchases_received", params={"where": "plan=team"}).json()
        assert team["rows"] == [[1]]


def test_scheduled_tile_is_pushed_on_its_schedule(example_server: ServerThread) -> None:
    with example_server.api() as api, api.stream("GET", "/api/dashboards/live/events") as stream:
        start = time.monotonic()
        first = next(pushes(stream))
        assert first["tiles"] == [2] and "every 1s" in str(first["reason"])
        assert time.monotonic() - start < 4


def test_unknown_dashboard_and_tile(example_server: ServerThread) -> None:
    with example_server.api() as api:
        assert api.get("/api/dashboards/nope/tiles/0").status_code == 404
        assert api.get("/api/dashboards/live/tiles/9").status_code == 404
        assert api.get("/api/dashboards/live").json()["tiles"][0]["title"] == "Purchases received"
    with httpx.Client(base_url=example_server.url) as anon:
        assert anon.get("/api/dashboards/live/events").status_code == 401
        assert anon.get("/dashboards/live").status_code == 303


@pytest.mark.parametrize("receivers", [0, 1])
def test_an_open_stream_does_not_hold_the_stop(example_dir: Path, receivers: int) -> None:
    """SIGTERM with a dashboard open: the push stream ends at once and `opsloop up` exits cleanly, well
    before uvicorn's 10 s grace period for open responses. With a receiver process the stream passes
    through it, and a webhook it takes is pushed to the open dashboard."""
    probe = make_app(example_dir)
    seed_app(probe)
    token = probe.settings.api_token
    probe.close()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "opsloop", "up", "--project", str(example_dir), "--port",
                             str(port), "--receivers", str(receivers)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 30, what="opsloop up to answer /healthz")
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                           timeout=30)
        with api.stream("GET", "/api/dashboards/live/events") as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")  # the stream is open
            got = httpx.post(f"http://127.0.0.1:{port}/hooks/purchase",
                             json={"customer_id": 7, "name": "Hedy", "plan": "team", "amount": 12.5})
            assert got.status_code == 202
            for line in lines:
                if line.startswith("data:") and "new event" in line:
                    break
            asked = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rest = list(lines)  # ends when the server closes the stream
            assert time.monotonic() - asked < 5, rest
        output, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, output
        assert time.monotonic() - asked < 5, output
        assert "stopped cleanly" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_pull_into_a_raw_relation_refreshes_the_tiles_over_it(example_dir: Path) -> None:
    """A metric over a table a source loads (``relation: shop.items``, no model) is pushed when the pull's
    ``source.<name>.loaded`` event lands, not only on ``model.built``; a pull that found the table unchanged
    pushes nothing."""
    import asyncio

    from opsloop.state import EventRecord

    (example_dir / "metrics" / "items.yml").write_text(
        "semantic_models:\n  - name: items\n    relation: shop.items\n"
        "    defaults: {agg_time_dimension: updated_at}\n    dimensions:\n      - {name: updated_at, type: time}\n"
        "    measures:\n      - {name: item_count, agg: count}\n"
        "metrics:\n  - {name: items_in_stock, type: simple, type_params: {measure: item_count}}\n")
    (example_dir / "dashboards" / "stock.yml").write_text(
        "title: Stock\ntiles:\n  - {type: kpi, metric: items_in_stock}\n")
    app = make_app(example_dir)
    try:
        service = app.services["metrics"]

        def loaded(unchanged: list[str]) -> EventRecord:
            return EventRecord(seq=1, id="evt_1", endpoint=None, name="source.shop.loaded", received_at=time.time(),
                               idempotency_key=None, headers={}, body=None, status="done", error=None,
                               payload={"tables": {"items": "shop.items"}, "unchanged": unchanged},
                               source="sources", related_id=None, expires_at=None, dispatched_at=None)

        async def pushed(unchanged: list[str]) -> list[dict[str, object]]:
            queue = service.subscribe("stock")
            try:
                await service.on_raw_loaded([loaded(unchanged)])
                return [queue.get_nowait() for _ in range(queue.qsize())]
            finally:
                service.unsubscribe("stock", queue)

        assert [m["tiles"] for m in asyncio.run(pushed([]))] == [[0]]
        assert asyncio.run(pushed(["shop.items"])) == []
    finally:
        app.close()
