"""A rep's losing edit in the CRM is corrected inside a running server, with no command run and no cron.

A local server stands in for HubSpot as both the source (``sources/hubspot.yml``, pulled every 2 seconds) and
the destination of ``syncs/crm.yml``. identity.yml ranks the app above the CRM for the phone. The chain:
the rep edits Ada's phone -> the scheduled pull -> ``stg_contacts`` rebuilds -> the identity build sees the
CRM's new phone (the golden phone stays the app's: no ``profile.updated``) and appends ``identity.built``
naming system ``crm`` -> the CRM sync runs and writes the app's phone back, once. The pull of that write
brings back the golden value: another ``identity.built`` and another run, which sends nothing.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from opsloop.project.scaffold import init_project

from ..conftest import ServerThread, make_app, wait_for
from ..sources._fake import Reply
from ..sources.fake_hubspot import HubSpotFake

ADA = "ada@example.com"
APP_PHONE, CRM_PHONE, REP_PHONE = "+14155550101", "+14155550202", "+14155550777"


class LiveHubSpot(HubSpotFake):
    """The source fake on the real clock (so edits and opsloop's writes order as they happen), taking the
    destination's ``batch/upsert`` by ``idProperty: email`` as HubSpot does."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[dict[str, Any]] = []
        self.route("POST", r"/crm/v3/objects/contacts/batch/upsert", self.upsert)

    def put(self, obj: str, oid: str, **props: Any) -> None:
        self.clock = max(self.clock, int(time.time() * 1000)) - 3_600_000 + 1  # put() adds an hour
        super().put(obj, oid, **props)

    def upsert(self, req: Any) -> Reply:
        results = []
        for item in req.json()["inputs"]:
            assert item.get("idProperty") == "email", item
            oid = next((o for o, r in self.objects["contacts"].items() if r["properties"].get("email") == item["id"]),
                       str(100 + len(self.objects["contacts"])))
            self.writes.append({"id": oid, **item["properties"]})
            self.put("contacts", oid, **{"email": item["id"], **item["properties"]})
            rec = self.objects["contacts"][oid]
            results.append({"id": oid, "new": False, "properties": dict(rec["properties"]), "archived": False,
                            "createdAt": rec["createdAt"], "updatedAt": rec["updatedAt"],
                            "objectWriteTraceId": item.get("objectWriteTraceId")})
        return Reply(200, {"status": "COMPLETE", "results": results, "startedAt": "2026-01-01T00:00:00Z",
                           "completedAt": "2026-01-01T00:00:01Z"})

    def phone(self) -> Any:
        return self.objects["contacts"]["1"]["properties"].get("phone")


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


def _project(root: Path, hubspot: LiveHubSpot) -> None:
    init_project(root)
    with (root / ".env").open("a") as env:
        env.write(f"HUBSPOT_TOKEN={hubspot.token}\nOPSLOOP_MODELS_DEBOUNCE=100ms\n")
    _write(root, "sources/hubspot.yml", f"""\
        type: hubspot
        token_env: HUBSPOT_TOKEN
        base_url: {hubspot.url}
        objects:
          - name: contacts
            properties: [email, firstname, phone]
        owners: false
        pipelines: []
        schedule: "* * * * * */2"
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
    _write(root, "identity.yml", """\
        identifiers:
          email: {normalize: email}
          phone: {normalize: phone, region: US}
        merge_rules: [email]
        sources:
          - system: app
            relation: app.users
            record_id: id
            updated_at: updated_at
            identifiers: {email: email}
            fields: {email: email, phone: phone}
          - system: crm
            relation: main.stg_contacts
            record_id: id
            updated_at: updated_at
            identifiers: {email: email}
            fields: {email: email, phone: phone}
        fields:
          phone: {survivorship: priority, priority: [app, crm], normalize: phone}
          email: {survivorship: priority, priority: [app, crm]}
        """)
    _write(root, "syncs/crm.yml", f"""\
        table: identity.golden_records
        key: email
        system: crm
        destination: {{type: hubspot, object: contacts, id_property: email, token_env: HUBSPOT_TOKEN,
                       base_url: "{hubspot.url}"}}
        mapping: {{email: email, phone: phone}}
        trigger: {{event: profile.updated}}
        """)


def _documented_identity_built() -> dict[str, Any]:
    page = (Path(__file__).resolve().parents[2] / "docs" / "identity.md").read_text()
    [doc] = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", page, re.S) if '"identity.built"' in b]
    return dict(doc)


def _query(api: httpx.Client, sql: str) -> list[list[Any]]:
    answer = api.post("/api/query", json={"sql": sql})
    return list(answer.json()["rows"]) if answer.status_code == 200 else []


def _count(api: httpx.Client, name: str) -> int:
    rows = _query(api, f"select count(*) from raw.events where name = '{name}'")
    return int(rows[0][0]) if rows else -1


def _corrections(api: httpx.Client) -> list[list[Any]]:
    return _query(api, "select json_extract_string(payload, '$.old'), json_extract_string(payload, '$.new') "
                       "from raw.events where name = 'sync.crm.corrected' order by seq")


def test_a_reps_losing_edit_is_corrected_once_with_no_command_and_no_cron(tmp_path: Path) -> None:
    hubspot = LiveHubSpot()
    hubspot.put("contacts", "1", email=ADA, firstname="Ada", phone=CRM_PHONE)
    root = tmp_path / "co"
    _project(root, hubspot)
    try:
        app = make_app(root)
        app.warehouse.execute("create schema if not exists app")
        app.warehouse.execute("create table app.users as select 'u1' as id, 'ada@example.com' as email, "
                              "'+1 (415) 555-0101' as phone, now() - interval 3 hour as updated_at")
        app.close()
        with ServerThread(make_app(root, load_interval=0.1)) as srv:
            api = srv.api()
            # The first pull and build (a baseline: no profile.updated): identity.built runs the sync, whose
            # first run sends every row.
            wait_for(lambda: hubspot.phone() == APP_PHONE, 60, interval=0.1,
                     what="the app's phone written into HubSpot after the first identity build")
            assert _count(api, "profile.updated") == 0
            built = wait_for(lambda: _query(api, "select payload from raw.events where name = 'identity.built' "
                                                 "order by seq"), 30, interval=0.1, what="identity.built in raw.events")
            first = json.loads(built[0][0])
            assert first["systems"] == {"app": {"changed": 1, "deleted": 0}, "crm": {"changed": 1, "deleted": 0}}
            assert set(first) == set(_documented_identity_built()["payload"])

            def settled(writes: int, corrections: int) -> None:
                """The pull of opsloop's write came back as the golden value and two more pulls changed nothing."""
                wait_for(lambda: _query(api, "select value from identity.field_values where system = 'crm' "
                                             "and field = 'phone'") == [[APP_PHONE]], 30, interval=0.1,
                         what="the pull of the correction seen by an identity build")
                pulls = _count(api, "source.hubspot.loaded")
                wait_for(lambda: _count(api, "source.hubspot.loaded") >= pulls + 2, 30, interval=0.1,
                         what="two more scheduled pulls")
                wait_for(lambda: not any(not t.done() for t in srv.app.services["syncs"]._running.values()),
                         30, interval=0.05, what="the CRM sync to be idle")
                assert len(hubspot.writes) == writes, hubspot.writes
                wait_for(lambda: _count(api, "source.hubspot.loaded") >= pulls + 3, 30, interval=0.1,
                         what="a third pull in raw.events (the log before it is loaded too)")
                assert len(_corrections(api)) == corrections

            settled(1, 0)
            runs = _count(api, "sync.crm.completed")

            # The rep edits the phone in HubSpot. Nobody runs anything.
            hubspot.put("contacts", "1", phone="(415) 555-0777")
            wait_for(lambda: len(hubspot.writes) == 2, 60, interval=0.1, what="the correction of the rep's edit")
            assert hubspot.phone() == APP_PHONE and hubspot.writes[-1] == {"id": "1", "email": ADA,
                                                                            "phone": APP_PHONE}
            # raw.events is loaded from the event log every load_interval: wait for it there
            wait_for(lambda: _corrections(api) == [[REP_PHONE, APP_PHONE]], 30, interval=0.1,
                     what="sync.crm.corrected with the rep's phone in raw.events")
            assert _query(api, "select phone, phone__source from identity.golden_records") == [[APP_PHONE, "app"]]
            assert _count(api, "profile.updated") == 0  # a losing edit changes no golden value
            settled(2, 1)  # the echo of the write triggered a run that sent nothing
            assert _count(api, "sync.crm.completed") >= runs + 2
            last = json.loads(_query(api, "select payload from raw.events where name = 'identity.built' "
                                          "order by seq desc limit 1")[0][0])
            assert last["systems"] == {"crm": {"changed": 1, "deleted": 0}}  # the echo's build
    finally:
        hubspot.close()
