"""HubSpot (CRM v3 batch upsert by email) against a local fake: the phone-number scenario end to end."""

from __future__ import annotations

from typing import Any

from tests.conftest import run_cli

from .conftest import FakeServer, SyncProject, cli, people
from .fakes import FakeHubSpot


def _setup(sp: SyncProject, fake_server: Any, mode: str = "upsert", extra: str = "") -> tuple[FakeHubSpot, FakeServer]:
    hub = FakeHubSpot()
    server = fake_server(hub)
    sp.set_env(HUBSPOT_TOKEN=hub.token)
    sp.write_sync("crm", f"""
        model: customers
        key: email
        destination:
          type: hubspot
          object: contacts
          id_property: email
          base_url: {server.url}
        mapping:
          email: email
          firstname: first_name
          phone: phone
        mode: {mode}
        batch_size: 50
        rate_limit: {{per_second: 1000}}
        {extra}
    """)
    return hub, server


def test_first_run_rerun_and_one_changed_phone(sp: SyncProject, fake_server: Any) -> None:
    sp.customers(people(30))
    hub, server = _setup(sp, fake_server)
    hub.add_existing("user1@example.com", firstname="Old")
    first = sp.run("crm")
    assert (first.status, first.sent, first.failed) == ("ok", 30, 0), first.error
    assert len(hub.contacts) == 30 and hub.contacts["user1@example.com"]["properties"]["firstname"] == "User1"
    upserts = hub.calls(server, "/batch/upsert")
    assert [len(r.json()["inputs"]) for r in upserts] == [30]  # batch_size 50: one request
    state = sp.state("crm")
    assert state["user1@example.com"]["created"] is False  # it existed before opsloop
    assert state["user2@example.com"]["created"] is True
    assert state["user2@example.com"]["dest_id"] == hub.contacts["user2@example.com"]["id"]

    assert sp.run("crm").sent == 0
    assert len(hub.calls(server, "/batch/upsert")) == 1

    sp.sql("UPDATE customers SET phone = '+4915112345678' WHERE id = 9")
    third = sp.run("crm")
    assert third.sent == 1
    last = hub.calls(server, "/batch/upsert")[-1].json()["inputs"]
    assert last == [{"idProperty": "email", "id": "user9@example.com", "objectWriteTraceId": "user9@example.com",
                     "properties": {"email": "user9@example.com", "firstname": "User9", "phone": "+4915112345678"}}]


def test_rejected_phone_kept_with_hubspots_error_then_retried_after_fix(sp: SyncProject, fake_server: Any) -> None:
    rows = people(6)
    rows[2] = (3, "user3@example.com", "User3", "555-CALL-NOW", "pro")
    sp.customers(rows)
    hub, _server = _setup(sp, fake_server, extra="max_retries: 2")
    first = sp.run("crm")
    assert (first.status, first.sent, first.failed) == ("partial", 5, 1)
    error = sp.state("crm")["user3@example.com"]["error"]
    # HubSpot's code beside its message (it sends them as JSON inside the message)
    assert error == ("VALIDATION_ERROR: Property values were not valid: phone: INVALID_PHONE_NUMBER: 555-CALL-NOW "
                     "is not a valid phone number")
    shown = cli("syncs", "show", "crm", "-p", str(sp.root))
    assert shown.returncode == 0, shown.stderr
    assert "user3@example.com" in shown.stdout
    assert "phone: INVALID_PHONE_NUMBER: 555-CALL-NOW is not a valid phone number" in shown.stdout
    listed = cli("syncs", "-p", str(sp.root))
    assert "crm\thubspot\tupsert\tfailing\tpartial" in listed.stdout

    # unchanged data: retried on the next run (attempt 2), then left alone until the data changes
    assert sp.run("crm").failed == 1
    assert sp.run("crm").failed == 0
    assert sp.state("crm")["user3@example.com"]["attempts"] == 2
    sp.sql("UPDATE customers SET phone = '+15550100003' WHERE id = 3")
    fixed = sp.run("crm")
    assert (fixed.status, fixed.sent, fixed.failed) == ("ok", 1, 0)
    assert hub.contacts["user3@example.com"]["properties"]["phone"] == "+15550100003"
    assert sp.state("crm")["user3@example.com"]["error"] is None
    assert max(hub.writes.values()) == 1  # no contact was written twice


def test_whole_batch_400_is_split_to_isolate_the_bad_row(sp: SyncProject, fake_server: Any) -> None:
    rows = people(8)
    rows[5] = (6, "user6@example.com", "User6", "n/a", "pro")
    sp.customers(rows)
    hub, server = _setup(sp, fake_server)
    hub.whole_batch_errors = True
    result = sp.run("crm")
    assert (result.sent, result.failed) == (7, 1)
    assert "user6@example.com" not in hub.contacts and len(hub.contacts) == 7
    assert sp.state("crm")["user6@example.com"]["error"].endswith(
        "HTTP 400: VALIDATION_ERROR: Property values were not valid: phone: INVALID_PHONE_NUMBER: n/a is not a "
        "valid phone number")
    sizes = [len(r.json()["inputs"]) for r in hub.calls(server, "/batch/upsert")]
    assert sizes[0] == 8 and sizes.count(1) >= 1 and len(sizes) <= 7


def test_429_and_5xx_are_retried(sp: SyncProject, fake_server: Any) -> None:
    sp.customers(people(3))
    hub, server = _setup(sp, fake_server)
    hub.inject = [(429, {}), (502, {}), (429, {"Retry-After": "1"})]
    result = sp.run("crm")
    assert (result.status, result.sent) == ("ok", 3)
    assert len(hub.calls(server, "/batch/upsert")) == 4


def test_mirror_archives_only_records_opsloop_created(sp: SyncProject, fake_server: Any) -> None:
    sp.customers(people(10))
    hub, _server = _setup(sp, fake_server, mode="mirror")
    hub.add_existing("user1@example.com")
    hub.add_existing("user2@example.com")
    hub.add_existing("someone@else.com")
    assert sp.run("crm").sent == 10
    sp.sql("DELETE FROM customers WHERE id IN (1, 2, 3)")
    result = sp.run("crm")
    assert result.status == "ok", result.error
    assert (result.planned["delete"], result.planned["forget"]) == (1, 2)
    assert hub.archived == ["user3@example.com"]
    assert {"user1@example.com", "user2@example.com", "someone@else.com"} <= set(hub.contacts)
    # the breaker: removing 5 of the 7 records opsloop created stops the run
    sp.sql("DELETE FROM customers WHERE id BETWEEN 4 AND 8")
    stopped = cli("sync", "crm", "-p", str(sp.root))
    assert stopped.returncode == 1
    assert "would delete 5 of the 7 records" in stopped.stdout and "--confirm-deletes" in stopped.stdout
    assert hub.archived == ["user3@example.com"]
    go = cli("sync", "crm", "--confirm-deletes", "-p", str(sp.root))
    assert go.returncode == 0, go.stdout + go.stderr
    assert len(hub.archived) == 6


def test_validate_checks_columns_and_hubspot_properties(sp: SyncProject, fake_server: Any) -> None:
    sp.customers(people(1))
    _setup(sp, fake_server)
    path = sp.root / "syncs" / "crm.yml"
    text = path.read_text().replace("  firstname: first_name\n", "  firstname: first_nme\n  favourite: plan\n")
    path.write_text(text)
    result = run_cli("validate", "-p", str(sp.root))
    assert result.returncode == 1
    lines = text.splitlines()
    col_line = next(i for i, ln in enumerate(lines, 1) if "first_nme" in ln)
    prop_line = next(i for i, ln in enumerate(lines, 1) if "favourite" in ln)
    assert f"syncs/crm.yml:{col_line}: mapping.firstname: no column 'first_nme' in the source" in result.stderr
    assert f"syncs/crm.yml:{prop_line}: hubspot has no field 'favourite'" in result.stderr


def test_update_mode_never_creates(sp: SyncProject, fake_server: Any) -> None:
    sp.customers(people(3))
    hub, server = _setup(sp, fake_server, mode="update")
    hub.add_existing("user2@example.com", firstname="Old")
    result = sp.run("crm")
    assert (result.sent, result.failed) == (1, 2)
    assert set(hub.contacts) == {"user2@example.com"}
    assert hub.contacts["user2@example.com"]["properties"]["firstname"] == "User2"
    assert sp.state("crm")["user1@example.com"]["error"] == "OBJECT_NOT_FOUND: Object not found"
    assert len(hub.calls(server, "/batch/update")) == 1 and not hub.calls(server, "/batch/upsert")


def test_ca_file_trusts_a_private_ca(sp: SyncProject, fake_server: Any) -> None:
    from tests.sources.fake_hubspot import serve_tls

    sp.customers(people(2))
    hub = FakeHubSpot()
    server = fake_server(hub)
    cert = serve_tls(server, sp.root)
    sp.set_env(HUBSPOT_TOKEN=hub.token)
    text = f"""
        model: customers
        key: email
        destination:
          type: hubspot
          base_url: {server.url}
          {{extra}}
        mapping:
          email: email
    """
    sp.write_sync("crm", text.format(extra="timeout: 5"))
    failed = sp.run("crm")
    assert (failed.sent, hub.contacts) == (0, {})
    assert "CERTIFICATE_VERIFY_FAILED" in str(sp.state("crm")["user1@example.com"]["error"])
    sp.write_sync("crm", text.format(extra=f"ca_file: {cert.name}"))
    result = sp.run("crm")
    assert (result.status, result.sent) == ("ok", 2), result.error
    assert set(hub.contacts) == {"user1@example.com", "user2@example.com"}


def test_validate_names_the_scope_a_token_lacks_for_the_field_check(sp: SyncProject) -> None:
    from tests.sources.fake_hubspot import HubSpotFake

    sp.customers(people(1))
    hub = HubSpotFake(granted={"crm.objects.contacts.read"})  # HubSpot's 403 MISSING_SCOPES body for the rest
    try:
        sp.set_env(HUBSPOT_TOKEN=hub.token)
        sp.write_sync("crm", f"""
            model: customers
            key: email
            destination:
              type: hubspot
              base_url: {hub.url}
            mapping:
              email: email
        """)
        result = run_cli("validate", "-p", str(sp.root))
        assert result.returncode == 1
        assert "syncs/crm.yml:3: cannot list the destination's fields: hubspot properties of contacts: HTTP 403: " \
               "MISSING_SCOPES: This app hasn't been granted all required scopes to make this call." in result.stderr
        assert "scopes: One or more of the following scopes are required: crm.schemas.contacts.read" in result.stderr
    finally:
        hub.close()


def test_a_revoked_token_fails_each_batch_once_not_row_by_row(sp: SyncProject, fake_server: Any) -> None:
    """A 401 is about the credentials, not the rows: one request per batch, every row failed with HubSpot's
    text, and the next run (with a good token) sends them all."""
    sp.customers(people(8))
    hub, server = _setup(sp, fake_server)
    sp.set_env(HUBSPOT_TOKEN="pat-revoked")
    result = sp.run("crm")
    assert (result.sent, result.failed) == (0, 8)
    assert len(hub.calls(server, "/batch/upsert")) == 1
    assert sp.state("crm")["user3@example.com"]["error"].endswith(
        "HTTP 401: INVALID_AUTHENTICATION: Authentication credentials not found.")
    sp.set_env(HUBSPOT_TOKEN=hub.token)
    again = sp.run("crm")
    assert (again.sent, again.failed) == (8, 0) and len(hub.contacts) == 8
