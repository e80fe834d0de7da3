"""Every load is an event the models react to, end to end, inside a running server, with no command run:

a phone edited in (a local stand-in for) HubSpot -> the scheduled pull of ``sources/hubspot.yml`` ->
``source.hubspot.loaded`` names ``hubspot.contacts`` -> the staged model over ``source('hubspot', 'contacts')``
rebuilds -> ``model.built`` -> the identity build -> ``profile.updated`` -> the sync writes the new phone to
(a stand-in for) Zendesk, and the metric over the staged model (a dashboard tile) moves. Later scheduled
pulls that only re-read the lag window (nothing changed) rebuild nothing.

Then the same for a seed loaded through the server (``opsloop seed`` with `opsloop up` running), for a
workflow that writes the warehouse and says so (``event.emit: warehouse.changed``), and for a pull made
while no server runs: the next start rebuilds what reads the pulled table.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import httpx

from opsloop.project.scaffold import init_project

from ..conftest import ServerThread, make_app, wait_for
from ..sources.fake_hubspot import HubSpotFake
from ..syncs.conftest import FakeServer
from ..syncs.fakes import FakeZendesk

ADA = "ada@example.com"


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


def _project(root: Path, hubspot: HubSpotFake, zendesk_url: str, schedule: str | None) -> None:
    init_project(root)
    with (root / ".env").open("a") as env:
        env.write(f"HUBSPOT_TOKEN={hubspot.token}\nZENDESK_API_TOKEN=zd-test\nOPSLOOP_MODELS_DEBOUNCE=100ms\n")
    _write(root, "sources/hubspot.yml", f"""\
        type: hubspot
        token_env: HUBSPOT_TOKEN
        base_url: {hubspot.url}
        objects:
          - name: contacts
            properties: [email, firstname, phone]
        owners: false
        pipelines: []
        {f'schedule: "{schedule}"' if schedule else ''}
        """)
    _write(root, "models/sources.yml", """\
        version: 2
        sources:
          - name: hubspot
            tables:
              - name: contacts
        """)
    _write(root, "models/staging/stg_contacts.sql", """\
        {{ config(materialized='table') }}
        select id, email, firstname as name, phone, cast(updated_at as timestamp) as updated_at
        from {{ source('hubspot', 'contacts') }}
        """)
    _write(root, "seeds/plans.csv", "email,plan\nada@example.com,free\n")
    _write(root, "models/marts/contact_plans.sql", """\
        {{ config(materialized='table') }}
        select c.email, c.phone, p.plan from {{ ref('stg_contacts') }} c left join {{ ref('plans') }} p using (email)
        """)
    _write(root, "models/marts/tagged.sql", """\
        {{ config(materialized='table') }}
        select email, tag from {{ source('ops', 'tags') }}
        """)
    _write(root, "models/ops.yml", """\
        version: 2
        sources:
          - name: ops
            tables:
              - name: tags
        """)
    _write(root, "identity.yml", """\
        identifiers:
          email: {normalize: email}
          phone: {normalize: phone, region: US}
        merge_rules: [email]
        sources:
          - system: crm
            relation: main.stg_contacts
            record_id: id
            updated_at: updated_at
            identifiers: {email: email, phone: phone}
            fields: {email: email, phone: phone, name: name}
        fields:
          phone: {survivorship: priority, priority: [crm], normalize: phone}
          email: {survivorship: priority, priority: [crm]}
          name: {survivorship: most_recent}
        """)
    _write(root, "syncs/zendesk_users.yml", f"""\
        sql: select email, name, phone from identity.golden_records where email is not null
        key: email
        destination:
          type: zendesk
          object: users
          id_field: email
          subdomain: example
          base_url: {zendesk_url}
          email: agent@example.com
          token_env: ZENDESK_API_TOKEN
        mapping: {{email: email, name: name, phone: phone}}
        mode: upsert
        trigger: {{event: profile.updated}}
        system: support
        """)
    _write(root, "metrics/contacts.yml", """\
        semantic_models:
          - name: contacts
            model: ref('stg_contacts')
            defaults: {agg_time_dimension: updated_at}
            entities:
              - {name: contact, type: primary, expr: id}
            dimensions:
              - {name: updated_at, type: time}
            measures:
              - {name: distinct_phones, agg: count_distinct, expr: phone}
        metrics:
          - {name: distinct_phones, type: simple, type_params: {measure: distinct_phones}}
        """)
    _write(root, "dashboards/contacts.yml", """\
        title: Contacts
        tiles:
          - {type: kpi, metric: distinct_phones, title: Distinct phones, period: year}
        """)
    _write(root, "workflows/tag.py", """\
        import asyncio

        from opsloop import Context, workflow


        @workflow(on="tag.requested")
        async def tag(ctx: Context) -> None:
            data = ctx.event["data"]

            def write() -> None:
                ctx.app.warehouse.execute("insert into ops.tags values (?, ?)", [data["email"], data["tag"]])

            await ctx.step("write", asyncio.to_thread, write)
            # the write is the workflow's own: it tells the models which table changed
            await ctx.emit("warehouse.changed", {"tables": ["ops.tags"], "by": "workflow tag"})
        """)


def _zendesk_phones(zendesk: FakeServer, email: str) -> list[str | None]:
    phones = []
    for req in list(zendesk.requests):
        if req.method == "POST" and req.path.startswith("/api/v2/users/create_or_update_many"):
            phones += [u.get("phone") for u in req.json().get("users") or [] if u.get("email") == email]
    return phones


def _query(api: httpx.Client, sql: str) -> list[list[Any]]:
    answer = api.post("/api/query", json={"sql": sql})
    return list(answer.json()["rows"]) if answer.status_code == 200 else []


def _distinct_phones(api: httpx.Client) -> float | None:
    answer = api.get("/api/metrics/distinct_phones", params={"grain": "year", "since": "100y"})
    if answer.status_code != 200:
        return None
    rows = answer.json()["rows"]
    return float(sum(r[-1] or 0 for r in rows)) if rows else 0.0


def test_a_hubspot_phone_edit_reaches_zendesk_and_the_metric_with_no_command_run(tmp_path: Path) -> None:
    hubspot = HubSpotFake()
    hubspot.put("contacts", "1", email=ADA, firstname="Ada", phone="+1 415 555 0100")
    hubspot.put("contacts", "2", email="bob@example.com", firstname="Bob", phone="+1 415 555 0100")
    zendesk = FakeServer(FakeZendesk())
    root = tmp_path / "co"
    _project(root, hubspot, zendesk.url, schedule="* * * * * */2")  # every 2 seconds (croniter's 6th field)
    try:
        with ServerThread(make_app(root, load_interval=0.1)) as srv:
            api = srv.api()
            # the first scheduled pull loads both contacts; the models and the identity baseline follow
            wait_for(lambda: _query(api, "select phone from identity.golden_records where email = "
                                         "'ada@example.com'") == [["+14155550100"]], 60, interval=0.1,
                     what="the identity baseline from the first scheduled pull")
            wait_for(lambda: _distinct_phones(api) == 1.0, 30, interval=0.1, what="one distinct phone")
            assert _query(api, "select phone from contact_plans where email = 'ada@example.com'") == [
                ["+1 415 555 0100"]]
            assert _zendesk_phones(zendesk, ADA) == []  # a baseline changes no profile: nothing to send

            # A phone edited in HubSpot: nobody runs anything.
            hubspot.put("contacts", "1", phone="+1 415 555 0177")
            wait_for(lambda: _zendesk_phones(zendesk, ADA) == ["+14155550177"], 60,
                     interval=0.1, what="the edited phone in Zendesk")
            assert _query(api, "select phone from stg_contacts where id = '1'") == [["+1 415 555 0177"]]
            wait_for(lambda: _distinct_phones(api) == 2.0, 30, interval=0.1,
                     what="the metric over the staged model to count two distinct phones")
            built = _query(api, "select json_extract_string(payload, '$.model') from raw.events "
                                "where name = 'model.built' order by seq")
            assert ["stg_contacts"] in built and ["contact_plans"] in built
            loaded = _query(api, "select json_extract_string(payload, '$.tables.contacts') from raw.events "
                                 "where name = 'source.hubspot.loaded'")
            assert ["hubspot.contacts"] in loaded
            # the sync's first run sends every row once; Bob's did not change since
            assert _zendesk_phones(zendesk, "bob@example.com") in ([], ["+14155550100"])

            # Later scheduled pulls re-read the lag window and find nothing changed: no rebuild.
            def builds() -> int:
                rows = _query(api, "select count(*) from raw.events where name = 'model.built' and "
                                   "json_extract_string(payload, '$.model') = 'stg_contacts'")
                return int(rows[0][0]) if rows else -1

            def loaded() -> int:
                rows = _query(api, "select count(*) from raw.events where name = 'source.hubspot.loaded'")
                return int(rows[0][0]) if rows else -1

            pulls = loaded()
            wait_for(lambda: loaded() >= pulls + 1, 30, interval=0.1, what="one more scheduled pull in raw.events")
            before = builds()
            wait_for(lambda: loaded() >= pulls + 3, 30, interval=0.1, what="two more scheduled pulls in raw.events")
            unchanged = _query(api, "select json_extract_string(payload, '$.unchanged[0]') from raw.events "
                                    "where name = 'source.hubspot.loaded' order by seq desc limit 1")
            assert unchanged == [["hubspot.contacts"]]
            assert srv.app.services["models"].debounce is not None
            assert builds() == before, "an unchanged pull rebuilt stg_contacts"
    finally:
        hubspot.close()
        zendesk.close()


def test_seeds_workflow_writes_and_a_pull_without_a_server(tmp_path: Path) -> None:
    hubspot = HubSpotFake()
    hubspot.put("contacts", "1", email=ADA, firstname="Ada", phone="+1 415 555 0100")
    zendesk = FakeServer(FakeZendesk())
    root = tmp_path / "co"
    _project(root, hubspot, zendesk.url, schedule=None)
    try:
        # A pull with no server running: it writes source.hubspot.loaded to the log ...
        app = make_app(root)
        from opsloop.sources import pull

        assert pull(app, "hubspot").status == "succeeded"
        app.warehouse.execute("create schema if not exists ops")
        app.warehouse.execute("create table ops.tags as select 'ada@example.com' as email, 'vip' as tag")
        app.close()
        # ... and the next start rebuilds what reads hubspot.contacts (and the seed's models)
        with ServerThread(make_app(root, load_interval=0.1)) as srv:
            api = srv.api()
            wait_for(lambda: _query(api, "select phone, plan from contact_plans"), 60, interval=0.1,
                     what="contact_plans built at start from the pull made without a server")
            assert _query(api, "select phone, plan from contact_plans") == [["+1 415 555 0100", "free"]]

            # A seed loaded through the server (`opsloop seed` while `opsloop up` runs): what reads it rebuilds.
            (root / "seeds" / "plans.csv").write_text("email,plan\nada@example.com,pro\n", encoding="utf-8")
            seeded = api.post("/api/models/build", json={"select": ["plans"], "kinds": ["seed"]}, timeout=60)
            assert seeded.status_code == 200 and [r["name"] for r in seeded.json()["results"]] == ["plans"]
            wait_for(lambda: _query(api, "select plan from contact_plans") == [["pro"]], 30, interval=0.1,
                     what="contact_plans rebuilt after the seed load")
            changed = _query(api, "select payload from raw.events where name = 'warehouse.changed'")
            assert any('"main.plans"' in row[0] for row in changed), changed

            # A workflow that writes ops.tags says so: the model over source('ops', 'tags') rebuilds.
            assert _query(api, "select count(*) from tagged") == []  # nothing has built it yet
            future = asyncio.run_coroutine_threadsafe(
                srv.app.emit("tag.requested", {"email": "bob@example.com", "tag": "new"}), srv.app._loop)  # type: ignore[arg-type]
            future.result(10)
            wait_for(lambda: _query(api, "select count(*) from tagged") == [[2]], 30, interval=0.1,
                     what="the tagged model rebuilt after the workflow's warehouse.changed")
    finally:
        hubspot.close()
        zendesk.close()


def test_only_opsloops_own_load_events_name_tables() -> None:
    from opsloop.models.service import changed_tables
    from opsloop.state import EventRecord

    def event(name: str, payload: Any, endpoint: str | None = None) -> EventRecord:
        return EventRecord(seq=1, id="evt_1", endpoint=endpoint, name=name, received_at=0.0, idempotency_key=None,
                           headers={}, body=None, payload=payload, status="received", error=None,
                           source="internal", related_id=None, expires_at=None, dispatched_at=None)

    loaded = {"source": "crm", "rows": 2, "tables": {"contacts": "crm.contacts", "deals": "CRM.Deals"}}
    assert changed_tables(event("source.crm.loaded", loaded)) == ["crm.contacts", "crm.deals"]
    assert changed_tables(event("warehouse.changed", {"tables": ["ops.tags"]})) == ["ops.tags"]
    assert changed_tables(event("warehouse.changed", {"tables": "ops.tags"})) == ["ops.tags"]
    # a webhook naming itself so, a payload without tables, a name that is no relation: nothing
    assert changed_tables(event("warehouse.changed", {"tables": ["ops.tags"]}, endpoint="app")) == []
    assert changed_tables(event("source.crm.loaded", {"rows": 2})) == []
    assert changed_tables(event("warehouse.changed", {"tables": ["tags", 7, None]})) == []
    assert changed_tables(event("source.crm.failed", loaded)) == []
    # a pull that compared the re-read rows and found none changed leaves that table out
    assert changed_tables(event("source.crm.loaded", {**loaded, "unchanged": ["crm.deals"]})) == ["crm.contacts"]
