"""HubSpot against a local fake of its CRM v3 API."""

from __future__ import annotations

import time
from typing import Any

import pytest

from opsloop.sources import SourceAuthError, SourceError
from opsloop.sources._state import SourceState

from ._fake import Reply
from .fake_hubspot import ALL_SCOPES, HubSpotFake, serve_tls


@pytest.fixture
def hs(proj: Any) -> Any:
    fake = HubSpotFake()
    for i in range(1, 8):
        fake.put("contacts", str(i), email=f"p{i}@example.com", firstname=f"P{i}", lifecyclestage="lead")
    fake.put("companies", "100", name="Acme", domain="acme.test")
    fake.link("contacts", "1", "companies", "100")
    fake.put("deals", "500", dealname="Big one", amount="1000", dealstage="appointmentscheduled")
    proj.env(HS_TOKEN="pat-na1-good")
    proj.source("crm", f"""\
        type: hubspot
        token_env: HS_TOKEN
        base_url: {fake.url}
        page_size: 3
        retry_attempts: 3
        objects:
          - name: contacts
            associations: [companies]
          - companies
          - deals
        """)
    yield fake
    fake.close()


def test_first_full_load(proj: Any, hs: HubSpotFake) -> None:
    result = proj.pull("crm")
    assert result.status == "succeeded"
    assert result.run.streams["contacts"]["rows"] == 7
    assert proj.sql("SELECT email, firstname, companies_ids FROM crm.contacts WHERE id = '1'") == [
        ("p1@example.com", "P1", '["100"]')]
    assert proj.sql("SELECT count(*) FROM crm.owners") == [(1,)]
    assert proj.sql("SELECT stages->>'$[1].id' FROM crm.deals_pipelines") == [("closedwon",)]
    # 3 pages of contacts via GET with after=, properties from the properties API
    lists = [r for r in hs.requests_to("/crm/v3/objects/contacts") if r.method == "GET"]
    assert [r.arg("after") for r in lists] == [None, "3", "6"]
    assert "email" in (lists[0].arg("properties") or "")
    # a first load writes no per-record events, one summary event
    assert proj.events("hubspot.") == []
    loaded = proj.events("source.crm.loaded")
    assert loaded[0].payload["streams"]["contacts"] == 7


def test_incremental_search_picks_only_changes_and_emits_events(proj: Any, hs: HubSpotFake) -> None:
    proj.pull("crm")
    hs.log.clear()
    hs.put("contacts", "3", lifecyclestage="customer")
    hs.put("contacts", "8", email="new@example.com", firstname="New")
    hs.archive("contacts", "5")
    hs.link("contacts", "8", "companies", "100")
    result = proj.pull("crm")
    # the two changes, the archived contact, and contact 7 again: it changed inside the 5-minute lag
    # window before the cursor
    assert result.run.streams["contacts"]["rows"] == 4
    searches = [r for r in hs.log if r.path == "/crm/v3/objects/contacts/search"]
    assert len(searches) == 1
    f = searches[0].json()["filterGroups"][0]["filters"][0]
    assert f["propertyName"] == "lastmodifieddate" and f["operator"] == "GTE"
    assert proj.sql("SELECT lifecyclestage FROM crm.contacts WHERE id = '3'") == [("customer",)]
    assert proj.sql("SELECT companies_ids FROM crm.contacts WHERE id = '8'") == [('["100"]',)]
    updated = proj.events("hubspot.contact.updated")
    assert len(updated) == 1
    changed = updated[0].payload["changed"]
    assert changed["lifecyclestage"] == {"old": "lead", "new": "customer"}
    assert set(changed) == {"lifecyclestage", "lastmodifieddate", "updated_at"}
    created = proj.events("hubspot.contact.created")
    assert [e.payload["id"] for e in created] == ["8"]
    assert proj.sql("SELECT count(*) FROM crm.contacts") == [(8,)]
    assert [e.payload["id"] for e in proj.events("hubspot.contact.deleted")] == ["5"]
    assert proj.sql("SELECT archived FROM crm.contacts WHERE id = '5'") == [(True,)]


def test_lag_window_rereads_late_changes_without_duplicates(proj: Any, hs: HubSpotFake) -> None:
    proj.pull("crm")
    cursor = SourceState(proj.apps[-1].store).streams("crm")["contacts"].cursor
    hs.log.clear()
    proj.pull("crm")
    f = next(r for r in hs.log if r.path.endswith("contacts/search")).json()["filterGroups"][0]["filters"][0]
    from opsloop.sources.connectors.hubspot import _ms

    assert int(f["value"]) == _ms(cursor["since"]) - 300_000
    assert proj.sql("SELECT count(*), count(DISTINCT id) FROM crm.contacts") == [(7, 7)]
    assert [e.payload for e in proj.events("hubspot.contact")] == []
    # the re-read rows are unchanged: the models reading crm.contacts need no rebuild (docs/models.md)
    loaded = proj.events("source.crm.loaded")
    assert loaded[0].payload["unchanged"] == []  # a first load compares nothing
    assert "crm.contacts" in loaded[-1].payload["unchanged"]
    hs.put("contacts", "7", lifecyclestage="customer")
    proj.pull("crm")
    assert "crm.contacts" not in proj.events("source.crm.loaded")[-1].payload["unchanged"]


def test_crash_mid_run_then_resume(proj: Any, hs: HubSpotFake) -> None:
    proj.pull("crm")
    for i in range(1, 8):
        hs.put("contacts", str(i), lifecyclestage="opportunity")
    fail = Reply(503, {"status": "error", "message": "Service unavailable"}, {"Retry-After": "0"})
    for _ in range(3):
        hs.inject.append((lambda r: r.path.endswith("/search") and r.json().get("after") == "3", fail))
    with pytest.raises(SourceError, match="HubSpot still answered HTTP 503"):
        proj.pull("crm")
    assert proj.sql("SELECT count(*) FROM crm.contacts WHERE lifecyclestage = 'opportunity'") == [(0,)]
    assert proj.events("hubspot.contact.updated") == []
    result = proj.pull("crm")
    assert result.status == "succeeded"
    assert proj.sql("SELECT count(*), count(DISTINCT id) FROM crm.contacts WHERE lifecyclestage = 'opportunity'") \
        == [(7, 7)]
    assert len(proj.events("hubspot.contact.updated")) == 7


def test_schema_change_new_property_between_runs(proj: Any, hs: HubSpotFake) -> None:
    proj.pull("crm")
    hs.put("contacts", "2", favourite_color="teal")
    result = proj.pull("crm")
    assert result.status == "succeeded"
    assert proj.sql("SELECT favourite_color FROM crm.contacts WHERE id = '2'") == [("teal",)]
    assert proj.sql("SELECT count(*) FROM crm.contacts WHERE favourite_color IS NULL") == [(6,)]


def test_daily_limit_ends_partial_and_resumes_next_run(proj: Any, hs: HubSpotFake) -> None:
    hs.daily_remaining = 3  # properties + two pages of contacts
    result = proj.pull("crm")
    assert result.status == "partial"
    assert "HubSpot daily API limit reached (RATE_LIMIT" not in (result.run.message or "")
    assert "daily API limit reached" in (result.run.message or "") and "resumes at" in (result.run.message or "")
    assert proj.sql("SELECT count(*) FROM crm.contacts") == [(6,)]
    daily = [r for r in hs.log if r.path.startswith("/crm")]
    assert len(daily) == 4  # the 429 is not retried
    hs.daily_remaining = None
    hs.log.clear()
    result = proj.pull("crm")
    assert result.status == "succeeded"
    lists = [r for r in hs.requests_to("/crm/v3/objects/contacts") if r.method == "GET"]
    assert [r.arg("after") for r in lists] == ["6"]  # continued where it stopped
    assert proj.sql("SELECT count(*), count(DISTINCT id) FROM crm.contacts") == [(7, 7)]


def test_secondly_429_is_retried_after_retry_after(proj: Any, hs: HubSpotFake) -> None:
    hs.inject.append((lambda r: r.arg("after") == "3", Reply(429, {
        "status": "error", "message": "You have reached your ten_secondly_rolling limit.", "errorType":
        "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}, {"Retry-After": "1"})))
    started = time.monotonic()
    result = proj.pull("crm")
    assert result.status == "succeeded" and result.run.streams["contacts"]["rows"] == 7
    assert time.monotonic() - started >= 1.0


def test_revoked_token(proj: Any, hs: HubSpotFake) -> None:
    proj.pull("crm")
    hs.token = "pat-na1-rotated"
    with pytest.raises(SourceAuthError) as info:
        proj.pull("crm")
    assert str(info.value).startswith(
        "source 'crm': HubSpot refused the credentials (HTTP 401: INVALID_AUTHENTICATION: Authentication "
        "credentials not found.")
    assert "HS_TOKEN" in str(info.value)
    runs = SourceState(proj.apps[-1].store).runs("crm")
    assert runs[0].status == "failed" and "refused the credentials" in (runs[0].message or "")
    assert proj.events("source.crm.failed")


# -- scopes ---------------------------------------------------------------------------------------
CONTACTS_AND_COMPANIES = {"crm.objects.contacts.read", "crm.schemas.contacts.read", "crm.objects.companies.read",
                          "crm.schemas.companies.read"}


def _default_source(proj: Any, fake: HubSpotFake) -> None:
    """The source exactly as docs/sources.md's minimal example: nothing but the type, token and URL."""
    proj.env(HS_TOKEN="pat-na1-good")
    proj.source("crm", f"""\
        type: hubspot
        token_env: HS_TOKEN
        base_url: {fake.url}
        """)


def _seeded(granted: set[str]) -> HubSpotFake:
    fake = HubSpotFake(granted=granted)
    fake.put("contacts", "1", email="ada@example.com", firstname="Ada", phone="+4915112345678")
    fake.put("contacts", "2", email="bob@example.com", firstname="Bob")
    fake.put("companies", "100", name="Acme", domain="acme.test")
    fake.put("deals", "500", dealname="Big one", amount="1000")
    return fake


def test_token_without_owner_pipeline_or_deal_scopes_pulls_contacts_and_companies_with_warnings(
        proj: Any) -> None:
    from tests.conftest import run_cli

    fake = _seeded(CONTACTS_AND_COMPANIES)
    try:
        _default_source(proj, fake)
        out = run_cli("pull", "crm", "-p", str(proj.root))
        assert out.returncode == 0, out.stderr
        assert "crm.contacts: 2 rows -> crm.contacts (done)" in out.stdout
        assert "crm.companies: 1 rows" in out.stdout and "crm.owners: 0 rows -> crm.owners (done)" in out.stdout
        assert "crm: succeeded" in out.stdout
        # each skipped stream is named with the scope it needs and how to stop asking
        assert "skipped owners (the token lacks the scope crm.objects.owners.read; grant it, or set " \
               "owners: false" in out.stdout
        assert "skipped deals (the token lacks the scope crm.objects.deals.read; grant it, or list objects: " \
               "without deals to stop asking)" in out.stdout
        assert "skipped deals_pipelines (the token lacks the scope crm.objects.deals.read; grant it, or set " \
               "pipelines: []" in out.stdout
        assert proj.sql("SELECT email FROM crm.contacts ORDER BY id") == [("ada@example.com",),
                                                                           ("bob@example.com",)]
        assert proj.sql("SELECT name FROM crm.companies") == [("Acme",)]
        # the fake really refused them (the warnings are not guesses)
        refused = [r.path for r in fake.log if r.path in ("/crm/v3/owners", "/crm/v3/pipelines/deals")]
        assert sorted(refused) == ["/crm/v3/owners", "/crm/v3/pipelines/deals"]
        # the warning is kept with the run, for `opsloop sources` and the runs page
        runs = SourceState(proj.app().store).runs("crm")
        assert runs[0].status == "succeeded" and "crm.objects.owners.read" in (runs[0].message or "")
    finally:
        fake.close()


def test_property_list_without_schema_scope_falls_back_to_default_properties(proj: Any) -> None:
    fake = _seeded(CONTACTS_AND_COMPANIES - {"crm.schemas.companies.read"} | {"crm.objects.owners.read"})
    try:
        proj.env(HS_TOKEN="pat-na1-good")
        proj.source("crm", f"""\
            type: hubspot
            token_env: HS_TOKEN
            base_url: {fake.url}
            objects: [contacts, companies]
            pipelines: []
            """)
        result = proj.pull("crm")
        assert result.status == "succeeded"
        message = result.run.message or ""
        assert "companies has only HubSpot's default properties (the token lacks the scope " \
               "crm.schemas.companies.read" in message
        assert proj.sql("SELECT count(*) FROM crm.companies") == [(1,)]
        assert proj.sql("SELECT count(*) FROM crm.owners") == [(1,)]
        # contacts still got every property (their schema scope is granted)
        assert proj.sql("SELECT phone FROM crm.contacts WHERE id = '1'") == [("+4915112345678",)]
    finally:
        fake.close()


def test_stream_the_project_asks_for_fails_naming_the_missing_scope(proj: Any) -> None:
    fake = _seeded(CONTACTS_AND_COMPANIES)
    try:
        proj.env(HS_TOKEN="pat-na1-good")
        proj.source("crm", f"""\
            type: hubspot
            token_env: HS_TOKEN
            base_url: {fake.url}
            objects: [contacts]
            owners: true
            pipelines: []
            """)
        with pytest.raises(SourceAuthError) as info:
            proj.pull("crm")
        assert str(info.value).startswith(
            "source 'crm': the HubSpot token in HS_TOKEN lacks the scope crm.objects.owners.read needed for the "
            "owners stream (HTTP 403)")
        assert info.value.status == 403
    finally:
        fake.close()


def test_404_on_an_optional_stream_writes_what_the_others_got(proj: Any) -> None:
    fake = _seeded(set(ALL_SCOPES))
    try:
        _default_source(proj, fake)
        fake.inject.append((lambda r: r.path == "/crm/v3/pipelines/deals", Reply(404, {
            "status": "error", "message": "Unable to infer object type from: deals", "category": "OBJECT_NOT_FOUND",
            "correlationId": "c0ffee"})))
        result = proj.pull("crm")
        assert result.status == "succeeded"
        assert "skipped deals_pipelines (HubSpot answered 404 for /crm/v3/pipelines/deals; set pipelines: [] to " \
               "stop asking)" in (
            result.run.message or "")
        assert proj.sql("SELECT count(*) FROM crm.contacts") == [(2,)]
        assert proj.sql("SELECT count(*) FROM crm.deals") == [(1,)]
        assert proj.sql("SELECT count(*) FROM crm.owners") == [(1,)]
    finally:
        fake.close()


def test_docs_list_every_option_and_the_scope_of_every_default_stream() -> None:
    from pathlib import Path

    from opsloop.sources.config import HubSpotSource, _SourceBase

    from .fake_hubspot import required_scope

    doc = (Path(__file__).resolve().parents[2] / "docs" / "sources.md").read_text()
    section = doc.split("## hubspot\n", 1)[1].split("\n## ", 1)[0]
    own = set(HubSpotSource.model_fields) - set(_SourceBase.model_fields) - {"type"}
    for option in own:
        assert f"| `{option}` |" in section, option
    paths = ["/crm/v3/objects/contacts", "/crm/v3/objects/companies", "/crm/v3/objects/deals", "/crm/v3/owners",
             "/crm/v3/pipelines/deals", "/crm/v3/properties/contacts"]
    for path in paths:
        scope = required_scope("GET", path)
        assert scope and f"`{scope}`" in section, path


def test_example_source_needs_exactly_the_scopes_its_comment_names(tmp_path: Any) -> None:
    from tests.conftest import run_cli

    root = tmp_path / "co"
    assert run_cli("init", str(root), "--example", "saas").returncode == 0
    comment = (root / "sources" / "hubspot.yml").read_text()
    fake = _seeded({"crm.objects.contacts.read", "crm.objects.companies.read"})
    try:
        assert "exactly crm.objects.contacts.read and crm.objects.companies.read" in comment
        out = run_cli("pull", "hubspot", "-p", str(root),
                      env={"HUBSPOT_API_URL": fake.url, "HUBSPOT_TOKEN": fake.token})
        assert out.returncode == 0, out.stderr
        assert "hubspot: succeeded, 3 rows" in out.stdout and "warning" not in out.stdout
        assert not [r for r in fake.log if r.path.startswith(("/crm/v3/owners", "/crm/v3/pipelines"))]
    finally:
        fake.close()


def test_ca_file_trusts_a_private_ca(proj: Any) -> None:
    fake = _seeded(set(ALL_SCOPES))
    try:
        cert = serve_tls(fake, proj.root)
        proj.env(HS_TOKEN="pat-na1-good")
        source = f"type: hubspot\ntoken_env: HS_TOKEN\nbase_url: {fake.url}\nretry_attempts: 1\n"
        proj.source("crm", source)
        with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
            proj.pull("crm")
        proj.source("crm", source + f"ca_file: {cert.name}\ntimeout: 5\n")
        result = proj.pull("crm")
        assert result.status == "succeeded" and result.run.streams["contacts"]["rows"] == 2
    finally:
        fake.close()


def test_a_token_that_can_read_no_stream_fails_the_pull(proj: Any) -> None:
    fake = _seeded(set())
    try:
        _default_source(proj, fake)
        with pytest.raises(SourceAuthError) as info:
            proj.pull("crm")
        message = str(info.value)
        assert message.startswith("source 'crm': the HubSpot token in HS_TOKEN can read none of the streams: ")
        for scope in ("crm.objects.contacts.read", "crm.objects.companies.read", "crm.objects.deals.read",
                      "crm.objects.owners.read"):
            assert scope in message
        assert SourceState(proj.apps[-1].store).runs("crm")[0].status == "failed"
    finally:
        fake.close()


def test_explicit_properties_still_load_the_modified_date(proj: Any, hs: HubSpotFake) -> None:
    """With `properties:` listed, the first load asks for the modified date too, so the next (search) pull
    finds nothing changed in a record nobody touched."""
    proj.source("crm", f"""\
        type: hubspot
        token_env: HS_TOKEN
        base_url: {hs.url}
        objects:
          - name: contacts
            properties: [email, firstname]
        """)
    proj.pull("crm")
    lists = [r for r in hs.requests_to("/crm/v3/objects/contacts") if r.method == "GET"]
    assert "lastmodifieddate" in (lists[0].arg("properties") or "").split(",")
    assert proj.sql("SELECT count(*) FROM crm.contacts WHERE lastmodifieddate IS NOT NULL") == [(7,)]
    proj.pull("crm")
    assert proj.events("hubspot.contact") == []
    hs.put("contacts", "2", firstname="Renamed")
    proj.pull("crm")
    [updated] = proj.events("hubspot.contact.updated")
    assert set(updated.payload["changed"]) >= {"firstname"} and "email" not in updated.payload["changed"]
