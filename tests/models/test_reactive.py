"""While `opsloop up` runs: events that land in raw.events rebuild the models downstream and emit
``model.built``; CLI verbs go through the server's API instead of hitting DuckDB's lock."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx

from opsloop.project.scaffold import init_project
from tests.conftest import ServerThread, run_cli, wait_for

from .conftest import SHOP


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    init_project(root)
    for name in ("models", "seeds", "macros"):
        shutil.rmtree(root / name, ignore_errors=True)
        shutil.copytree(SHOP / name, root / name)
    shutil.copy(SHOP / "dbt_project.yml", root / "dbt_project.yml")
    (root / "events" / "web.yml").write_text("description: page views from the website\nevent: page.viewed\n")
    with (root / ".env").open("a") as env:
        env.write("\nOPSLOOP_MODELS_DEBOUNCE=0.2\n")
    return root


def _model_built(srv: ServerThread) -> list[dict]:  # type: ignore[type-arg]
    events = srv.app.store.list_events(limit=500)
    return [e.payload for e in events if e.name == "model.built"]


def test_events_rebuild_downstream_models(tmp_path: Path, server_factory: Callable[..., ServerThread]) -> None:
    root = _project(tmp_path)
    srv = server_factory(root)
    with srv.api() as api:
        first = api.post("/api/models/build", json={"exclude": ["bad_data"]}).json()
        assert first["ok"], first
        assert any(p["model"] == "fct_orders" and p["rows"] == 9 for p in wait_for(lambda: _model_built(srv)))
        assert {p["model"] for p in _model_built(srv) if p["kind"] == "seed"} == {
            "customers", "products", "orders", "country_codes"}  # seeds announce themselves too
        before = len(_model_built(srv))
        for i in range(5):
            r = httpx.post(f"{srv.url}/hooks/web", json={"customer_id": i % 2 + 1, "page": "/pricing"})
            assert r.status_code in (200, 202), r.text
        built = wait_for(lambda: [p for p in _model_built(srv)[: len(_model_built(srv)) - before]
                                  if p["model"] == "events_log"], timeout=20, what="events_log rebuilt")
        loaded = srv.app.warehouse.query("select count(*) from raw.events where source != 'models'").rows[0][0]
        assert built[0]["relation"] == "main.events_log" and built[0]["changed_rows"] >= 5
        assert built[0]["rows"] >= loaded
        expected = {"stg_events", "events_log", "customer_last_event", "page_views"}
        names = wait_for(lambda: expected <= (found := {p["model"] for p in _model_built(srv)[: len(
            _model_built(srv)) - before]}) and found, timeout=20, what="the downstream of raw.events rebuilt")
        assert "fct_orders" not in names  # not downstream of raw.events
        refreshes = srv.app.services["models"].refreshes
        assert refreshes >= 1
        wait_for(lambda: not srv.app.services["models"]._pending, what="no refresh pending")
        assert srv.app.services["models"].refreshes <= refreshes + 1  # its own model.built events start no loop
        query = {"sql": "select page, views from page_views"}
        wait_for(lambda: api.post("/api/query", json=query).json()["rows"] == [["/pricing", 5]], timeout=20,
                 what="page_views to count all five views")

        # the CLI goes through the server that owns the DuckDB file
        (root / "state" / "server.json").write_text(json.dumps({"pid": os.getpid(), "host": "127.0.0.1",
                                                                  "port": srv.port}))
        proc = run_cli("query", "select count(*) as n from events_log where event_name = 'page.viewed'",
                       "-p", str(root), "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == [{"n": 5}]
        proc = run_cli("build", "-p", str(root), "-s", "stg_orders", "--json")
        assert proc.returncode == 0, proc.stderr
        assert [r["name"] for r in json.loads(proc.stdout)["results"] if r["kind"] == "model"] == ["stg_orders"]
        proc = run_cli("compile", "fct_orders", "-p", str(root))
        assert "__dbt__cte__int_order_items" in proc.stdout
        proc = run_cli("query", "delete from events_log", "-p", str(root))
        assert proc.returncode == 1 and "read-only" in proc.stderr and "lock" not in proc.stderr
        assert api.post("/api/query", json={"sql": "select 1"}, headers={"Authorization": "Bearer x"}).status_code \
            == 401


def test_service_python_api(tmp_path: Path, server_factory: Callable[..., ServerThread]) -> None:
    import asyncio

    root = _project(tmp_path)
    srv = server_factory(root)
    service = srv.app.services["models"]
    loop = srv.app.bus._loop  # the server's event loop
    future = asyncio.run_coroutine_threadsafe(service.build_async(select=["+fct_orders"], kinds=("model", "seed")),
                                              loop)
    results = future.result(60)
    assert {r.name for r in results if r.kind == "model"} == {"stg_orders", "stg_products", "fct_orders"}
    assert all(r.status == "success" for r in results), [(r.name, r.message) for r in results]


def test_service_build_without_a_loop(tmp_path: Path) -> None:
    from tests.conftest import make_app

    root = _project(tmp_path)
    app = make_app(root)
    try:
        results = app.services["models"].build(select=["+stg_orders"], kinds=("model", "seed"))
        assert {r.name for r in results} == {"orders", "stg_orders"}
        built = [e.payload for e in app.store.list_events(limit=50) if e.name == "model.built"]
        assert sorted(built, key=lambda p: p["model"]) == [
            {"model": "orders", "relation": "main.orders", "rows": 10, "changed_rows": 10, "kind": "seed"},
            {"model": "stg_orders", "relation": "main.stg_orders", "rows": None, "changed_rows": 0, "kind": "model"}]
    finally:
        app.close()
