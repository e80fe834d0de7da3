"""The phone scenario end to end: identity's golden record, syncs, and local HubSpot and Zendesk servers.

The app, the CRM (HubSpot) and the support tool (Zendesk) each hold a different phone for Ada. The app's
change wins and reaches the CRM and the support tool exactly once; a later CRM edit does not override the
app's value; a value that came from the CRM is not sent back to the CRM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop.syncs import SyncRunner
from tests.conftest import make_app, wait_for
from tests.identity.conftest import IDENTITY_YML, IdentityWorld, make_world
from tests.syncs.conftest import FakeServer
from tests.syncs.fakes import FakeHubSpot, FakeZendesk

ADA = "ada@example.com"
YML = IDENTITY_YML.replace("fields: {phone: phone, name: name, plan: plan}",
                           "fields: {phone: phone, name: name, plan: plan, email: email}").replace(
    "  plan: {survivorship: priority, priority: [app]}\n",
    "  plan: {survivorship: priority, priority: [app]}\n"
    "  email: {survivorship: priority, priority: [app, crm, support], normalize: email}\n")


class Loop:
    def __init__(self, tmp_path: Path) -> None:
        self.hub, self.zd = FakeHubSpot(), FakeZendesk()
        self.hub_server, self.zd_server = FakeServer(self.hub), FakeServer(self.zd)
        self.world: IdentityWorld = make_world(tmp_path, YML)
        root = self.world.root
        with (root / ".env").open("a") as env:
            env.write(f"\nHUBSPOT_TOKEN={self.hub.token}\nZENDESK_TOKEN=zd-test\n")
        (root / "syncs" / "crm.yml").write_text(f"""\
table: identity.golden_records
key: email
system: crm                 # the origin guard: a value that came from the CRM is never sent to it
destination: {{type: hubspot, object: contacts, id_property: email, base_url: "{self.hub_server.url}"}}
mapping: {{email: email, phone: phone}}
trigger: {{event: profile.updated}}
""")
        (root / "syncs" / "support.yml").write_text(f"""\
table: identity.golden_records
key: email
system: support
destination: {{type: zendesk, base_url: "{self.zd_server.url}", email: agent@example.com, object: users}}
mapping: {{email: email, phone: phone}}
trigger: {{event: profile.updated}}
""")
        self.world.app.close()
        self.world.app = make_app(root, time_scale=0.01)

    def source(self, table: str, phone: str | None, when: str, **extra: Any) -> None:
        rid = {"src.app_users": "u1", "src.crm_contacts": "c1", "src.support_users": "s1"}[table]
        row: dict[str, Any] = {"id": rid, "email": ADA, "phone": phone, "name": "Ada", "updated_at": when, **extra}
        if table == "src.app_users":
            row.setdefault("plan", "pro")
        if table == "src.crm_contacts":
            row.setdefault("company", "AE")
            row.setdefault("app_user_id", None)
        self.world.upsert(table, **row)

    def sync(self, name: str) -> Any:
        return SyncRunner(self.world.app).run(name)

    def close(self) -> None:
        self.world.app.close()
        self.hub_server.close()
        self.zd_server.close()


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    lp = Loop(tmp_path)
    yield lp
    lp.close()


def test_app_phone_reaches_crm_and_support_once_without_downgrade_or_echo(loop: Loop) -> None:
    hub, zd, w = loop.hub, loop.zd, loop.world
    hub.add_existing(ADA, phone="+14155550202")
    zd.add_existing(ADA, phone="+14155550303")
    loop.source("src.app_users", "+1 (415) 555-0101", "2026-01-01T00:00:00Z")
    loop.source("src.crm_contacts", "+14155550202", "2026-01-02T00:00:00Z")
    loop.source("src.support_users", "415.555.0303", "2026-01-03T00:00:00Z")
    w.build()
    assert (loop.sync("crm").sent, loop.sync("support").sent) == (1, 1)
    assert hub.contacts[ADA]["properties"]["phone"] == "+14155550101"
    assert zd.users[ADA]["phone"] == "+14155550101"
    writes = (hub.writes[ADA], zd.writes[ADA])

    # the app's change wins and reaches both systems exactly once
    loop.source("src.app_users", "+1 415 555 0199", "2026-02-01T00:00:00Z")
    assert w.build()["profile_updates"] == 1
    for _ in range(2):
        loop.sync("crm")
        loop.sync("support")
    assert hub.contacts[ADA]["properties"]["phone"] == zd.users[ADA]["phone"] == "+14155550199"
    assert (hub.writes[ADA], zd.writes[ADA]) == (writes[0] + 1, writes[1] + 1)

    # a later CRM edit does not override the app's value: nothing changes, nothing is sent anywhere (dated
    # before opsloop's last write to HubSpot, it is not a new edit; test_enforce.py corrects one made after)
    loop.source("src.crm_contacts", "+14155550777", "2026-03-01T00:00:00Z")
    hub.contacts[ADA]["properties"]["phone"] = "+14155550777"  # the edit happened in HubSpot
    assert w.build()["profile_updates"] == 0
    assert (loop.sync("crm").sent, loop.sync("support").sent) == (0, 0)
    assert w.golden(w.person_of("app", "u1"))["phone__source"] == "app"
    assert zd.users[ADA]["phone"] == "+14155550199"

    # when the app no longer has a phone, the CRM's wins: the support tool gets it, the CRM is not echoed to
    loop.source("src.app_users", None, "2026-04-01T00:00:00Z")
    w.build()
    assert w.golden(w.person_of("app", "u1"))["phone__source"] == "crm"
    calls_before = len(hub.calls(loop.hub_server, "/batch/upsert"))
    loop.sync("crm")
    assert loop.sync("support").sent == 1
    assert zd.users[ADA]["phone"] == "+14155550777"
    new_calls = hub.calls(loop.hub_server, "/batch/upsert")[calls_before:]
    assert [i["properties"].get("phone") for r in new_calls for i in r.json()["inputs"]] in ([], [None])
    assert hub.contacts[ADA]["properties"]["phone"] == "+14155550777"


def test_profile_updated_triggers_the_syncs_in_the_running_server(loop: Loop) -> None:
    hub, zd, w = loop.hub, loop.zd, loop.world
    loop.source("src.app_users", "+14155550101", "2026-01-01T00:00:00Z")
    loop.source("src.crm_contacts", "+14155550202", "2026-01-02T00:00:00Z")
    w.build()

    def scenario(aloop: asyncio.AbstractEventLoop) -> None:
        # The build above changed the CRM's records: its identity.built runs the CRM sync (which enforces the
        # hierarchy in crm) at start; that first run sends Ada's golden record. The support tool's did not change.
        wait_for(lambda: hub.contacts.get(ADA, {}).get("properties", {}).get("phone") == "+14155550101", 20,
                 what="the CRM sync's first run, from the identity.built of the build before start")
        loop.source("src.app_users", "+14155550123", "2026-02-01T00:00:00Z")
        w.service.build()  # writes profile.updated; the syncs' event triggers run them
        wait_for(lambda: hub.contacts.get(ADA, {}).get("properties", {}).get("phone") == "+14155550123", 20,
                 what="HubSpot to receive the app's phone")
        wait_for(lambda: zd.users.get(ADA, {}).get("phone") == "+14155550123", 20,
                 what="Zendesk to receive the app's phone")

    async def main() -> None:
        await w.app.start()
        try:
            await asyncio.to_thread(scenario, asyncio.get_running_loop())
        finally:
            await w.app.stop()

    asyncio.run(main())
    assert hub.writes[ADA] == 2 and zd.writes[ADA] == 1
