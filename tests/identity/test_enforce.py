"""The hierarchy enforced in the systems a sync writes: a sales rep's losing edit in the CRM is corrected.

The app outranks the CRM for the phone (``priority: [app, crm, support]``). A rep edits Ada's phone in
HubSpot (a local server standing in for it); the next pull and identity build see it, the golden phone stays
the app's, and the next run of the CRM sync writes the app's phone back — once: not again before the next
pull, and not after the pull brings back the value opsloop wrote. ``enforce: false`` leaves the rep's value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop import load_project
from tests.conftest import make_app, wait_for
from tests.identity.test_e2e_syncs import ADA, Loop
from tests.syncs.conftest import cli
from tests.syncs.fakes import zendesk_now

APP_PHONE, CRM_PHONE, REP_PHONE = "+14155550101", "+14155550202", "+14155550777"


def ago(hours: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)).isoformat()


class Enforced(Loop):
    """The phone scenario's project, the CRM sync mapping the phone and the (most recent) name."""

    def __init__(self, tmp_path: Path, crm_extra: str = "") -> None:
        super().__init__(tmp_path)
        self.write_crm(crm_extra)

    def write_crm(self, extra: str = "") -> None:
        root = self.world.root
        (root / "syncs" / "crm.yml").write_text(f"""\
table: identity.golden_records
key: email
system: crm
destination: {{type: hubspot, object: contacts, id_property: email, base_url: "{self.hub_server.url}"}}
mapping: {{email: email, phone: phone, firstname: name}}
{extra}""")
        self.world.app.close()
        self.world.app = make_app(root, time_scale=0.01)

    def start(self) -> None:
        """Ada in the three systems; the first build and the first run of both syncs."""
        self.hub.add_existing(ADA, phone=CRM_PHONE, firstname="Ada")
        self.zd.add_existing(ADA, phone="+14155550303")
        self.source("src.app_users", "+1 (415) 555-0101", ago(3))
        self.source("src.crm_contacts", CRM_PHONE, ago(2))
        self.source("src.support_users", "415.555.0303", ago(1))
        self.world.build()
        assert (self.sync("crm").sent, self.sync("support").sent) == (1, 1)
        assert self.hub.contacts[ADA]["properties"]["phone"] == APP_PHONE

    def pull_crm(self) -> None:
        """What a pull of HubSpot loads: the contact as HubSpot holds it now, with its ``updatedAt``."""
        contact = self.hub.contacts[ADA]
        props = contact["properties"]
        self.source("src.crm_contacts", props.get("phone"), contact["updatedAt"],
                    name=props.get("firstname") or "Ada")
        self.world.build()

    def corrected(self) -> list[dict[str, Any]]:
        return [e.payload for e in self.world.events("sync.crm.corrected")]


@pytest.fixture
def enforced(tmp_path: Path) -> Iterator[Enforced]:
    lp = Enforced(tmp_path)
    yield lp
    lp.close()


def test_a_reps_losing_edit_is_corrected_exactly_once_and_not_echoed(enforced: Enforced) -> None:
    hub, w = enforced.hub, enforced.world
    enforced.start()
    writes = hub.writes[ADA]

    # the rep edits the phone in HubSpot; the pull and the build see it; the app's phone still wins
    hub.edit(ADA, phone="(415) 555-0777")
    enforced.pull_crm()
    person = w.person_of("app", "u1")
    assert w.golden(person)["phone"] == APP_PHONE and w.golden(person)["phone__source"] == "app"
    assert w.rows("SELECT count(*) AS n FROM identity.outbox")[0]["n"] == 0

    planned = enforced.world.app
    from opsloop.syncs import SyncRunner

    dry = SyncRunner(planned).run("crm", dry_run=True)
    assert dry.planned["update"] == 1 and dry.planned["correct"] == 1
    assert dry.samples["correct"][0]["corrects"][0]["old"] == REP_PHONE
    assert hub.writes[ADA] == writes  # a dry run sends nothing

    run = enforced.sync("crm")
    assert (run.status, run.sent, run.corrected) == ("ok", 1, 1)
    assert hub.contacts[ADA]["properties"]["phone"] == APP_PHONE
    assert hub.writes[ADA] == writes + 1
    [event] = enforced.corrected()
    assert {k: event[k] for k in ("sync", "key", "person_id", "system", "record_id", "field", "destination_field",
                                  "old", "new", "source", "rank", "system_rank", "survivorship")} == {
        "sync": "crm", "key": ADA, "person_id": person, "system": "crm", "record_id": "c1", "field": "phone",
        "destination_field": "phone", "old": REP_PHONE, "new": APP_PHONE, "source": "app", "rank": 1,
        "system_rank": 2, "survivorship": "priority"}
    assert event["run_id"] == run.run_id and event["edited_at"]
    completed = w.events("sync.crm.completed")[-1].payload
    assert completed["corrected"] == 1

    # before the next pull, the CRM's row still shows the rep's value: it is not corrected a second time
    assert enforced.sync("crm").sent == 0
    # the pull brings back the value opsloop wrote: no edit, no profile change, nothing sent anywhere
    enforced.pull_crm()
    assert w.golden(person)["phone__source"] == "app"
    assert w.rows("SELECT count(*) AS n FROM identity.outbox")[0]["n"] == 0
    assert (enforced.sync("crm").sent, enforced.sync("support").sent) == (0, 0)
    assert hub.writes[ADA] == writes + 1 and len(enforced.corrected()) == 1

    # the rep types the same number again: a new edit, corrected once more
    hub.edit(ADA, phone=REP_PHONE)
    enforced.pull_crm()
    assert enforced.sync("crm").corrected == 1
    assert enforced.sync("crm").sent == 0
    assert hub.contacts[ADA]["properties"]["phone"] == APP_PHONE and hub.writes[ADA] == writes + 2
    assert [e["old"] for e in enforced.corrected()] == [REP_PHONE, REP_PHONE]


def test_a_winning_edit_is_kept_and_only_the_losing_field_is_corrected(enforced: Enforced) -> None:
    hub, w = enforced.hub, enforced.world
    enforced.start()
    # name is most_recent: the rep's name wins and stays; the phone (app first) is corrected
    hub.edit(ADA, phone=REP_PHONE, firstname="Ada Lovelace")
    enforced.pull_crm()
    person = w.person_of("app", "u1")
    assert w.golden(person)["name"] == "Ada Lovelace" and w.golden(person)["name__source"] == "crm"
    run = enforced.sync("crm")
    assert (run.sent, run.corrected) == (1, 1)
    assert hub.contacts[ADA]["properties"] == {"email": ADA, "phone": APP_PHONE, "firstname": "Ada Lovelace"}
    assert [e["field"] for e in enforced.corrected()] == ["phone"]
    # the same edit arrives in the support tool's sync as the winning name, not as a correction
    assert enforced.sync("support").corrected == 0


def test_a_phone_written_differently_is_the_same_value(enforced: Enforced) -> None:
    enforced.start()
    enforced.hub.edit(ADA, phone="(415) 555-0101")  # the app's number, in another format
    enforced.pull_crm()
    assert enforced.sync("crm").sent == 0 and enforced.corrected() == []


def test_a_cleared_value_is_a_losing_value(enforced: Enforced) -> None:
    enforced.start()
    enforced.hub.edit(ADA, phone=None)  # the rep empties the phone
    enforced.pull_crm()
    assert enforced.sync("crm").corrected == 1
    assert enforced.hub.contacts[ADA]["properties"]["phone"] == APP_PHONE
    [event] = enforced.corrected()
    assert (event["old"], event["new"]) == (None, APP_PHONE)


def test_an_agents_losing_edit_in_zendesk_is_corrected_once(enforced: Enforced) -> None:
    zd, w = enforced.zd, enforced.world
    enforced.start()
    written = zd.users[ADA]["updated_at"]
    # Zendesk's updated_at has whole seconds: an edit in the second of opsloop's write would look older
    wait_for(lambda: zendesk_now() > written, 3, interval=0.01, what="the next second on Zendesk's clock")
    zd.edit(ADA, phone="+14155550888")
    user = zd.users[ADA]
    enforced.source("src.support_users", user["phone"], user["updated_at"])  # the pull of Zendesk
    w.build()
    writes = zd.writes[ADA]
    run = enforced.sync("support")
    assert (run.sent, run.corrected) == (1, 1) and zd.writes[ADA] == writes + 1
    assert zd.users[ADA]["phone"] == APP_PHONE
    [event] = [e.payload for e in w.events("sync.support.corrected")]
    assert (event["system"], event["record_id"], event["old"], event["new"], event["source"], event["rank"],
            event["system_rank"]) == ("support", "s1", "+14155550888", APP_PHONE, "app", 1, 3)
    assert enforced.sync("support").sent == 0 and enforced.sync("crm").sent == 0


def test_enforce_false_leaves_the_losing_value(tmp_path: Path) -> None:
    lp = Enforced(tmp_path, "enforce: false\n")
    try:
        lp.start()
        lp.hub.edit(ADA, phone=REP_PHONE)
        lp.pull_crm()
        writes = lp.hub.writes[ADA]
        run = lp.sync("crm")
        assert (run.sent, run.corrected) == (0, 0) and "correct" not in run.planned
        assert lp.hub.contacts[ADA]["properties"]["phone"] == REP_PHONE and lp.hub.writes[ADA] == writes
        assert lp.corrected() == []
    finally:
        lp.close()


def test_enforce_is_validated(enforced: Enforced) -> None:
    from opsloop.errors import ConfigError

    crm = enforced.world.root / "syncs" / "crm.yml"
    text = crm.read_text()
    crm.write_text(text + "enforce: maybe\n")
    with pytest.raises(ConfigError) as info:
        load_project(enforced.world.root)
    assert "syncs/crm.yml:6" in str(info.value) and "enforce" in str(info.value)
    # an explicit enforce: true where it cannot apply: the file, the line and why
    crm.write_text(text.replace("system: crm", "system: hubspot") + "enforce: true\n")
    enforced.world.app.close()  # the CLI opens the DuckDB file itself
    out = cli("validate", "-p", str(enforced.world.root))
    assert out.returncode == 1
    assert ("syncs/crm.yml:6: enforce: true cannot apply: identity.yml reads no source of system 'hubspot' "
            "(its systems: app, crm, support)") in out.stdout + out.stderr
    # the default (enforce unset) applies where it can and is silent elsewhere
    crm.write_text(text.replace("system: crm", "system: hubspot"))
    assert cli("validate", "-p", str(enforced.world.root)).returncode == 0
    enforced.world.app = make_app(enforced.world.root)


def test_the_syncs_page_example_is_true(enforced: Enforced) -> None:
    """docs/syncs.md's sync file runs as shown, and its corrected event is the one a run appends."""
    import json
    import re

    page = (Path(__file__).resolve().parents[2] / "docs" / "syncs.md").read_text()
    [sync_yml] = [b for b in re.findall(r"```yaml\n(.*?)```", page, re.S) if b.startswith("# syncs/crm.yml")]
    [documented] = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", page, re.S) if "sync.crm.corrected" in b]
    local = sync_yml.replace("token_env: HUBSPOT_TOKEN}",
                             f'token_env: HUBSPOT_TOKEN, base_url: "{enforced.hub_server.url}"}}')
    assert local != sync_yml
    (enforced.world.root / "syncs" / "crm.yml").write_text(local)
    enforced.world.app.close()
    enforced.world.app = make_app(enforced.world.root, time_scale=0.01)
    enforced.start()
    enforced.hub.edit(ADA, phone="(415) 555-0777")
    enforced.pull_crm()
    assert enforced.sync("crm").corrected == 1
    [event] = enforced.world.events("sync.crm.corrected")
    assert event.name == documented["name"]
    assert set(event.payload) == set(documented["payload"])
    unstable = {"run_id", "edited_at"}
    assert {k: v for k, v in event.payload.items() if k not in unstable} == {
        k: v for k, v in documented["payload"].items() if k not in unstable}
