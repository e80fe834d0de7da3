"""Sources into a Postgres warehouse (dlt's Postgres destination): incremental loads, change events, JSON,
schema drift, a failed run that lands nothing, and a warehouse sources do not support yet."""

from __future__ import annotations

from typing import Any

import pytest

from opsloop.sources import SourceError

from ._fake import Reply
from .fake_hubspot import HubSpotFake
from .test_hubspot import hs  # noqa: F401 - the HubSpot fixture, on the Postgres project below
from .test_rest_files import ItemsApi, _rest, api  # noqa: F401 - the REST fake and its fixture


@pytest.mark.postgres
@pytest.mark.parametrize("proj", ["postgres"], indirect=True)
def test_rest_full_incremental_json_and_change_events(proj: Any, api: ItemsApi) -> None:  # noqa: F811
    _rest(proj, api, "events: true\n")
    first = proj.pull("shop")
    assert first.status == "succeeded" and first.run.rows == 25
    assert proj.sql("SELECT count(*), count(DISTINCT id) FROM shop.items") == [(25, 25)]
    # nested lists land as jsonb, queryable with Postgres' JSON operators
    assert proj.sql("SELECT tags->1->>'v' FROM shop.items WHERE id = 7") == [("7",)]
    assert proj.events("shop.") == []  # a first load writes one summary event, no per-record ones
    api.items[3].update(name="renamed", updated_at="2024-02-01T00:00:00Z")
    api.items[26] = {**api.items[1], "id": 26, "updated_at": "2024-02-01T00:00:01Z"}
    api.log.clear()
    again = proj.pull("shop")
    assert again.run.rows == 2
    assert api.log[0].arg("updated_since") == "2024-01-01T00:00:25Z"
    assert proj.sql("SELECT name FROM shop.items WHERE id = 3") == [("renamed",)]
    assert proj.sql("SELECT count(*) FROM shop.items") == [(26,)]
    updated = proj.events("shop.items.updated")
    assert [e.payload["id"] for e in updated] == [3]
    # the unchanged jsonb column is not reported as changed (Postgres hands it back parsed, the page as text)
    assert set(updated[0].payload["changed"]) == {"name", "updated_at"}
    assert updated[0].payload["changed"]["name"] == {"old": "item 3", "new": "renamed"}
    assert [e.payload["id"] for e in proj.events("shop.items.created")] == [26]


@pytest.mark.postgres
@pytest.mark.parametrize("proj", ["postgres"], indirect=True)
def test_rest_schema_drift_widens_in_postgres(proj: Any, api: ItemsApi) -> None:  # noqa: F811
    _rest(proj, api)
    proj.pull("shop")
    api.items[5].update(price=12.5, updated_at="2024-05-01T00:00:00Z", color="blue", tags="not a list")
    result = proj.pull("shop")
    assert result.status == "succeeded"
    assert "items.price: widened BIGINT -> DOUBLE" in result.drift
    assert any("items.tags: the warehouse has JSON but the source now sends VARCHAR" in d for d in result.drift)
    assert proj.sql("SELECT price, color FROM shop.items WHERE id = 5") == [(12.5, "blue")]
    assert proj.sql("SELECT price FROM shop.items WHERE id = 4") == [(40.0,)]
    cols = dict(proj.sql("SELECT column_name, data_type FROM information_schema.columns "
                         "WHERE table_schema = 'shop' AND table_name = 'items'"))
    assert cols["price"] == "double precision" and cols["tags"] == "jsonb"


@pytest.mark.postgres
@pytest.mark.parametrize("proj", ["postgres"], indirect=True)
def test_rest_failed_run_lands_nothing_then_resumes(proj: Any, api: ItemsApi) -> None:  # noqa: F811
    _rest(proj, api, "retry_attempts: 2\n")
    proj.pull("shop")
    for i in range(1, 26):
        api.items[i].update(price=1000 + i, updated_at=f"2024-03-01T00:00:{i:02d}Z")
    failure = Reply(500, {"error": {"message": "boom"}}, {"Retry-After": "0"})
    api.inject.extend([(lambda r: r.arg("page") == "2", failure)] * 2)
    with pytest.raises(SourceError, match=r"HTTP 500 after retrying \(boom\)"):
        proj.pull("shop")
    assert proj.sql("SELECT count(*) FROM shop.items WHERE price > 1000") == [(0,)]
    result = proj.pull("shop")
    assert result.status == "succeeded" and result.run.rows == 25
    assert proj.sql("SELECT count(*), count(DISTINCT id), min(price) FROM shop.items") == [(25, 25, 1001)]


@pytest.mark.postgres
@pytest.mark.parametrize("proj", ["postgres"], indirect=True)
def test_hubspot_changes_reach_postgres_with_events(proj: Any, hs: HubSpotFake) -> None:  # noqa: F811
    proj.pull("crm")
    hs.put("contacts", "3", lifecyclestage="customer", phone="+15550003")
    result = proj.pull("crm")
    assert result.status == "succeeded"
    assert proj.sql("SELECT lifecyclestage, phone FROM crm.contacts WHERE id = '3'") == [("customer", "+15550003")]
    assert proj.sql("SELECT companies_ids FROM crm.contacts WHERE id = '1'") == [(["100"],)]
    changed = proj.events("hubspot.contact.updated")[0].payload["changed"]
    assert changed["lifecyclestage"] == {"old": "lead", "new": "customer"}
    assert changed["phone"] == {"old": None, "new": "+15550003"}


def test_a_warehouse_sources_do_not_support_is_named(proj: Any, api: ItemsApi) -> None:  # noqa: F811
    config = proj.root / "opsloop.yml"
    config.write_text(config.read_text().replace("type: duckdb", "type: clickhouse"))
    _rest(proj, api)
    with pytest.raises(SourceError, match=r"sources load into a DuckDB or Postgres warehouse; .* is clickhouse"):
        proj.pull("shop")
    assert api.log == []  # refused before a request went out


@pytest.mark.postgres
@pytest.mark.parametrize("proj", ["postgres"], indirect=True)
def test_one_worker_runs_the_source_schedules_and_a_standby_takes_over(
        proj: Any, api: ItemsApi, pg_url: str, server_factory: Any) -> None:  # noqa: F811
    """Two workers on one Postgres state store: only the one leading the warehouse work pulls on schedule
    (two would pull the source twice and write its change events twice)."""
    from tests.conftest import wait_for

    _rest(proj, api, 'schedule: "0 0 * * *"\n')  # never pulled yet, so due at start-up
    workers = [server_factory(proj.root, state_url=pg_url, role="worker", lead_retry=0.2) for _ in range(2)]
    schedulers = [w.app.services["sources"] for w in workers]
    done = wait_for(lambda: [s for s in schedulers if s.completed], 60, what="the scheduled pull")
    assert len(done) == 1 and done[0].completed == [("shop", "succeeded")]
    leader = schedulers.index(done[0])
    standby = workers[1 - leader]
    assert "warehouse-loader" in workers[leader].app._leading
    assert "warehouse-loader" not in standby.app._leading and schedulers[1 - leader].completed == []
    assert len(api.requests_to("/v1/items")) == 3  # one pull's three pages, not two pulls'
    workers[leader].__exit__(None, None, None)
    wait_for(lambda: "warehouse-loader" in standby.app._leading, 15, what="the standby to take the lead")


def test_cli_pull_names_an_unreachable_postgres_warehouse(proj: Any, api: ItemsApi) -> None:  # noqa: F811
    from tests.conftest import free_port, run_cli, use_postgres_warehouse

    use_postgres_warehouse(proj.root, f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    _rest(proj, api)
    result = run_cli("pull", "--project", str(proj.root))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot connect to the Postgres warehouse" in result.stderr
    assert "did not answer" not in result.stderr  # not mistaken for a DuckDB file that `opsloop up` owns
    assert api.log == []
