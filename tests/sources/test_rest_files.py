"""`rest` and `files` sources, config validation and the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opsloop import load_project
from opsloop._subsystems import validate_project as run_validators
from opsloop.errors import ConfigError
from opsloop.sources import SourceAuthError, SourceError
from tests.conftest import run_cli

from ._fake import FakeServer, Reply


class ItemsApi(FakeServer):
    """GET /v1/items?updated_since=&page=N -> {"data": [...], "next": url|null}; bearer token auth."""

    def __init__(self, n: int = 25, page_size: int = 10) -> None:
        super().__init__()
        self.token = "tok_good"
        self.page_size = page_size
        self.items: dict[int, dict[str, Any]] = {
            i: {"id": i, "name": f"item {i}", "price": i * 10, "updated_at": f"2024-01-01T00:00:{i:02d}Z",
                "tags": [{"k": "color", "v": "red"}, {"k": "n", "v": str(i)}]}
            for i in range(1, n + 1)
        }
        self.route("GET", "/v1/items", self.list_items)

    def list_items(self, req: Any) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"error": {"message": "invalid token", "type": "auth"}})
        since = req.arg("updated_since")
        page = int(req.arg("page", "1"))
        rows = sorted((r for r in self.items.values() if not since or r["updated_at"] > since),
                      key=lambda r: r["updated_at"])
        chunk = rows[(page - 1) * self.page_size: page * self.page_size]
        more = page * self.page_size < len(rows)
        nxt = f"{self.url}/v1/items?page={page + 1}" + (f"&updated_since={since}" if since else "") if more else None
        return Reply(200, {"data": chunk, "next": nxt})


REST_YML = """\
type: rest
client:
  base_url: {url}/v1/
  auth:
    type: bearer
    token: ${{ITEMS_TOKEN}}
  paginator:
    type: json_link
    next_url_path: next
resource_defaults:
  primary_key: id
  write_disposition: merge
resources:
  - name: items
    endpoint:
      path: items
      data_selector: data
      params:
        updated_since:
          type: incremental
          cursor_path: updated_at
          initial_value: "2000-01-01T00:00:00Z"
{extra}"""


@pytest.fixture
def api() -> Any:
    server = ItemsApi()
    yield server
    server.close()


def _rest(proj: Any, api: ItemsApi, extra: str = "") -> None:
    proj.env(ITEMS_TOKEN="tok_good")
    proj.source("shop", REST_YML.format(url=api.url, extra=extra))


def test_rest_full_then_incremental_only_changes(proj: Any, api: ItemsApi) -> None:
    _rest(proj, api)
    result = proj.pull("shop")
    assert result.status == "succeeded" and result.run.rows == 25
    assert proj.sql("SELECT count(*), count(DISTINCT id) FROM shop.items") == [(25, 25)]
    # nested lists stay on the row as JSON, queryable by SQL
    assert proj.sql("SELECT tags->>'$[1].v' FROM shop.items WHERE id = 7") == [("7",)]
    assert len(api.requests_to("/v1/items")) == 3
    api.items[3]["name"] = "renamed"
    api.items[3]["updated_at"] = "2024-02-01T00:00:00Z"
    api.items[26] = {**api.items[1], "id": 26, "updated_at": "2024-02-01T00:00:01Z"}
    api.log.clear()
    result = proj.pull("shop")
    assert result.run.rows == 2
    assert api.log[0].arg("updated_since") == "2024-01-01T00:00:25Z"
    assert proj.sql("SELECT name FROM shop.items WHERE id = 3") == [("renamed",)]
    assert proj.sql("SELECT count(*) FROM shop.items") == [(26,)]
    loaded = proj.events("source.shop.loaded")
    assert [e.payload["streams"] for e in loaded] == [{"items": 25}, {"items": 2}]


def test_rest_crash_mid_run_resumes_without_gaps_or_duplicates(proj: Any, api: ItemsApi) -> None:
    _rest(proj, api, "retry_attempts: 2\n")
    proj.pull("shop")
    for i in range(1, 26):
        api.items[i]["price"] = 1000 + i
        api.items[i]["updated_at"] = f"2024-03-01T00:00:{i:02d}Z"
    api.inject.append((lambda r: r.arg("page") == "2", Reply(500, {"error": {"message": "boom"}},
                                                                  {"Retry-After": "0"})))
    api.inject.append((lambda r: r.arg("page") == "2", Reply(500, {"error": {"message": "boom"}},
                                                                  {"Retry-After": "0"})))
    with pytest.raises(SourceError, match=r"HTTP 500 after retrying \(boom\)"):
        proj.pull("shop")
    status = proj.sql("SELECT count(*) FROM shop.items WHERE price > 1000")
    assert status == [(0,)]  # nothing from the failed run landed
    result = proj.pull("shop")
    assert result.status == "succeeded" and result.run.rows == 25
    assert proj.sql("SELECT count(*), count(DISTINCT id), min(price) FROM shop.items") == [(25, 25, 1001)]
    runs = [r.status for r in __import__("opsloop.sources._state", fromlist=["x"]).SourceState(
        proj.apps[-1].store).runs("shop")]
    assert runs == ["succeeded", "failed", "succeeded"]


def test_rest_429_retry_after_is_honoured(proj: Any, api: ItemsApi) -> None:
    import time

    _rest(proj, api)
    api.inject.append((lambda r: r.arg("page") == "2", Reply(429, {"error": {"message": "slow down"}},
                                                                  {"Retry-After": "1"})))
    started = time.monotonic()
    result = proj.pull("shop")
    assert result.run.rows == 25
    assert time.monotonic() - started >= 1.0
    assert len(api.requests_to("/v1/items")) == 4


def test_rest_schema_change_between_runs(proj: Any, api: ItemsApi) -> None:
    _rest(proj, api)
    proj.pull("shop")
    api.items[5].update(price=12.5, updated_at="2024-05-01T00:00:00Z", color="blue", tags="not a list")
    result = proj.pull("shop")
    assert result.status == "succeeded"
    assert "items.price: widened BIGINT -> DOUBLE" in result.drift
    assert any("items.tags: the warehouse has JSON but the source now sends VARCHAR; this cannot be widened"
               in d for d in result.drift)
    assert proj.sql("SELECT price, color FROM shop.items WHERE id = 5") == [(12.5, "blue")]
    cols = dict(proj.sql("SELECT column_name, data_type FROM information_schema.columns "
                         "WHERE table_schema = 'shop' AND table_name = 'items'"))
    assert cols["price"] == "DOUBLE" and cols["color"] == "VARCHAR"
    assert "cannot be widened" in (result.run.message or "")


def test_rest_request_budget_stops_partial_and_resumes(proj: Any, api: ItemsApi) -> None:
    _rest(proj, api, "max_requests_per_day: 2\n")
    result = proj.pull("shop")
    assert result.status == "partial"
    assert "used its budget of 2 requests for today" in (result.run.message or "")
    assert "resumes at" in (result.run.message or "")
    assert proj.sql("SELECT count(*) FROM shop.items") == [(20,)]
    assert len(api.log) == 2
    from opsloop.sources import source_status

    status = source_status(proj.apps[-1])[0]
    assert status["state"] == "partial"
    assert status["streams"]["items"]["cursor"] == "2024-01-01T00:00:20Z"


def test_rest_revoked_token_names_source_and_vendor_answer(proj: Any, api: ItemsApi) -> None:
    _rest(proj, api)
    proj.pull("shop")
    api.token = "tok_rotated"
    with pytest.raises(SourceAuthError) as info:
        proj.pull("shop")
    text = str(info.value)
    assert "source 'shop'" in text and "HTTP 401: invalid token" in text


def test_files_csv_jsonl_parquet_reload_only_changed(proj: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = proj.root / "data"
    data.mkdir()
    (data / "a.csv").write_text("id,amount\n1,10\n2,20\n")
    (data / "e.jsonl").write_text('{"id": 1, "kind": "x", "items": [{"sku": "a"}]}\n{"id": 2, "kind": "y"}\n')
    pq.write_table(pa.table({"id": [1, 2, 3], "v": ["a", "b", "c"]}), data / "p.parquet")
    proj.source("local", """\
        type: files
        streams:
          - {name: orders, path: "data/*.csv", primary_key: id}
          - {name: events, path: data/e.jsonl}
          - {name: things, path: data/p.parquet, primary_key: [id]}
        """)
    result = proj.pull("local")
    assert result.run.streams["orders"]["rows"] == 2 and result.run.streams["events"]["rows"] == 2
    assert proj.sql("SELECT count(*) FROM local.things") == [(3,)]
    assert proj.sql("SELECT items->>'$[0].sku' FROM local.events WHERE id = 1") == [("a",)]
    (data / "b.csv").write_text("id,amount\n2,25\n3,30\n")
    result = proj.pull("local")
    assert result.run.streams == {
        "orders": {"rows": 2, "status": "done", "table": "local.orders"},
        "events": {"rows": 0, "status": "done", "table": "local.events"},
        "things": {"rows": 0, "status": "done", "table": "local.things"},
    }
    assert proj.sql("SELECT id, amount FROM local.orders ORDER BY id") == [(1, 10), (2, 25), (3, 30)]


def test_validate_reports_file_and_line(proj: Any) -> None:
    proj.source("bad", """\
        type: hubspot
        token_env: HS_TOKEN
        objectz: [contacts]
        """)
    proj.source("worse", """\
        # a comment
        type: salesforse
        """)
    proj.source("cron", """\
        type: stripe
        schedule: "every hour"
        """)
    with pytest.raises(ConfigError) as info:
        load_project(proj.root)
    text = str(info.value)
    assert "sources/bad.yml:3: unknown key 'objectz'" in text
    assert "sources/worse.yml:2: unknown source type 'salesforse' (use one of: salesforce, hubspot" in text
    assert "sources/cron.yml:2: schedule: 'every hour' is not a cron expression" in text


def test_validate_names_missing_secret(proj: Any) -> None:
    proj.source("hs", "type: hubspot\ntoken_env: HS_TOKEN_MISSING\n")
    problems = run_validators(load_project(proj.root))
    assert [str(p) for p in problems if "hs.yml" in p.file] == [
        "sources/hs.yml:2: the secret HS_TOKEN_MISSING is not set (add HS_TOKEN_MISSING=... to .env or the "
        "environment)"
    ]


def test_cli_pull_and_sources(proj: Any, api: ItemsApi) -> None:
    _rest(proj, api, 'schedule: "0 * * * *"\n')
    out = run_cli("pull", "shop", "-p", str(proj.root))
    assert out.returncode == 0, out.stderr
    assert "shop.items: 25 rows -> shop.items (done)" in out.stdout
    assert "shop: succeeded, 25 rows" in out.stdout
    out = run_cli("sources", "--json", "-p", str(proj.root))
    data = json.loads(out.stdout)
    assert data[0]["name"] == "shop" and data[0]["state"] == "succeeded" and data[0]["rows_total"] == 25
    assert data[0]["streams"]["items"]["cursor"] == "2024-01-01T00:00:25Z"
    assert data[0]["next_run"] is not None
    out = run_cli("sources", "-p", str(proj.root))
    assert out.stdout.splitlines()[0].split("\t")[:3] == ["source", "type", "state"]
    api.token = "revoked"
    out = run_cli("pull", "shop", "-p", str(proj.root))
    assert out.returncode == 1
    assert "error: source 'shop': " in out.stderr and "refused the credentials (HTTP 401: invalid token)" in out.stderr
    assert "Traceback" not in out.stderr
    out = run_cli("pull", "nope", "-p", str(proj.root))
    assert out.returncode == 1 and "no source named 'nope'; sources: shop" in out.stderr


def test_scheduled_pull_runs_inside_up_and_emits_loaded(proj: Any, api: ItemsApi, server_factory: Any) -> None:
    from tests.conftest import wait_for

    _rest(proj, api, 'schedule: "*/5 * * * *"\n')
    srv = server_factory(proj.root)
    scheduler = srv.app.services["sources"]
    # never run before, so the first pull happens at start-up; the next waits for the cron time
    wait_for(lambda: scheduler.completed, 30, what="the scheduled pull")
    assert scheduler.completed == [("shop", "succeeded")]
    assert srv.app.warehouse.query("SELECT count(*) FROM shop.items").rows == [(25,)]
    wait_for(lambda: srv.app.warehouse.query(
        "SELECT count(*) FROM raw.events WHERE name = 'source.shop.loaded'").rows == [(1,)], 10,
        what="source.shop.loaded in raw.events")
    import time

    due = scheduler.due_at("shop", time.time())
    assert due > time.time() and int(due) % 300 == 0
    with srv.api() as client:
        assert client.get("/healthz").status_code == 200


def test_crash_between_load_and_cursor_commit_repeats_nothing(proj: Any, api: ItemsApi, monkeypatch: Any) -> None:
    """The narrowest window: rows are in the warehouse, the process dies before the cursor is written."""
    from opsloop.sources._state import SourceState

    _rest(proj, api)
    proj.pull("shop")
    for i in (4, 9):
        api.items[i].update(price=-i, updated_at=f"2024-06-0{i % 9 + 1}T00:00:00Z")
    real = SourceState.finish_run

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(SourceState, "finish_run", crash)
    with pytest.raises(KeyboardInterrupt):
        proj.pull("shop")
    monkeypatch.setattr(SourceState, "finish_run", real)
    assert proj.sql("SELECT count(*) FROM shop.items WHERE price < 0") == [(2,)]  # loaded, cursor not moved
    api.log.clear()
    result = proj.pull("shop")
    assert api.log[0].arg("updated_since") == "2024-01-01T00:00:25Z"  # the old cursor
    assert result.run.rows == 2
    assert proj.sql("SELECT count(*), count(DISTINCT id) FROM shop.items") == [(25, 25)]
    statuses = [r.status for r in SourceState(proj.apps[-1].store).runs("shop")]
    assert statuses == ["succeeded", "interrupted", "succeeded"]


def test_cli_pull_goes_through_the_running_server(proj: Any, api: ItemsApi, server_factory: Any) -> None:
    _rest(proj, api)
    srv = server_factory(proj.root)
    _ = srv.app.warehouse.con  # the server process owns the DuckDB file
    env = {"OPSLOOP_PORT": str(srv.port)}
    out = run_cli("pull", "shop", "-p", str(proj.root), env=env)
    assert out.returncode == 0, out.stderr
    assert "shop.items: 25 rows -> shop.items (done)" in out.stdout
    assert srv.app.warehouse.query("SELECT count(*) FROM shop.items").rows == [(25,)]
    with srv.api() as client:
        status = client.get("/api/sources").json()
        assert status[0]["name"] == "shop" and status[0]["rows_total"] == 25
        assert client.post("/api/sources/nope/pull").json()["message"].startswith("no source named 'nope'")
    import httpx

    assert httpx.post(f"{srv.url}/api/sources/shop/pull").status_code == 401


def test_cli_validate_names_file_and_line(proj: Any) -> None:
    proj.source("bad", "type: stripe\nkey_env: STRIPE_KEY\nobjects: [customers, refunds]\n")
    proj.source("nokey", "type: hubspot\ntoken_env: NOT_SET_ANYWHERE\n")
    out = run_cli("validate", "-p", str(proj.root))
    assert out.returncode == 1
    text = out.stdout + out.stderr
    assert "sources/bad.yml:3: objects.1: Input should be 'customers', 'subscriptions'" in text
    assert "Traceback" not in text
    (proj.root / "sources" / "bad.yml").unlink()
    out = run_cli("validate", "-p", str(proj.root))
    text = out.stdout + out.stderr
    assert "sources/nokey.yml:2: the secret NOT_SET_ANYWHERE is not set" in text


def test_pull_while_the_warehouse_connection_is_busy(proj: Any) -> None:
    """Inside `opsloop up` the event loader and model builds use the warehouse's own connection while a pull
    runs; DuckDB refuses a call on a busy connection, so the pull must load through a cursor of its own."""
    import threading

    data = proj.root / "data"
    data.mkdir()
    (data / "a.csv").write_text("id,amount\n1,10\n2,20\n")
    proj.source("local", "type: files\nstreams:\n  - {name: orders, path: \"data/*.csv\", primary_key: id}\n")
    app = proj.app()
    release, started = threading.Event(), threading.Event()

    def hold() -> int:
        started.set()
        release.wait(60)
        return 1

    con = app.warehouse.con
    con.create_function("opsloop_test_hold", hold, [], "INTEGER", side_effects=True)
    busy = threading.Thread(target=lambda: con.execute("SELECT opsloop_test_hold()").fetchall())
    busy.start()
    try:
        assert started.wait(10), "the holding query did not start"
        from opsloop.sources import pull

        result = pull(app, "local")
    finally:
        release.set()
        busy.join(10)
    assert result.status == "succeeded" and result.run.rows == 2
    assert proj.sql("SELECT id, amount FROM local.orders ORDER BY id") == [(1, 10), (2, 20)]


def test_csv_phone_numbers_and_zip_codes_stay_text(proj: Any) -> None:
    data = proj.root / "data"
    data.mkdir()
    (data / "people.csv").write_text("id,phone,zip,score\n1,+15550100,02134,1.5\n2,+15550101,90210,2\n")
    proj.source("local", "type: files\nstreams:\n  - {name: people, path: data/people.csv, primary_key: id}\n")
    assert proj.pull("local").status == "succeeded"
    assert proj.sql("SELECT id, phone, zip, score FROM local.people ORDER BY id") == [
        (1, "+15550100", "02134", 1.5), (2, "+15550101", "90210", 2.0)]


def test_a_second_pull_of_the_same_source_is_refused_not_interleaved(proj: Any, api: ItemsApi) -> None:
    """dlt's working folder for a source is shared: a pull while another process pulls it is refused."""
    import subprocess
    import sys

    _rest(proj, api)
    lock = proj.root / "state" / "dlt" / "opsloop_shop.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('held', flush=True); sys.stdin.read()", str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(SourceError, match="is being pulled by another process on this machine"):
            proj.pull("shop")
        assert api.log == []  # refused before a request went out
    finally:
        holder.communicate("", timeout=10)
    assert proj.pull("shop").run.rows == 25
