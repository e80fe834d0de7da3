"""Zendesk users (create_or_update_many + job status polling) and organizations against a local fake."""

from __future__ import annotations

from typing import Any

from .conftest import FakeServer, SyncProject, people
from .fakes import FakeZendesk


def _setup(sp: SyncProject, fake_server: Any, mode: str = "upsert", obj: str = "users") -> tuple[FakeZendesk,
                                                                                                   FakeServer]:
    zd = FakeZendesk()
    server = fake_server(zd)
    sp.set_env(ZENDESK_TOKEN="zd-test")
    sp.write_sync("support", f"""
        table: customers
        key: email
        destination: {{type: zendesk, base_url: "{server.url}", email: agent@example.com, object: {obj}}}
        mapping:
          name: first_name
          phone: phone
          user_fields.plan: plan
        mode: {mode}
    """)
    return zd, server


def test_users_job_polling_rerun_change_and_rejected_phone(sp: SyncProject, fake_server: Any) -> None:
    rows = people(12)
    rows[4] = (5, "user5@example.com", "User5", "+1 (555) CALL", "pro")
    sp.customers(rows)
    zd, server = _setup(sp, fake_server)
    zd.add_existing("user1@example.com", name="Someone")
    zd.inject = [(429, {"Retry-After": "1"})]
    first = sp.run("support")
    assert (first.status, first.sent, first.failed) == ("partial", 11, 1)
    assert zd.polls >= 2  # queued -> working -> completed
    assert zd.users["user2@example.com"]["user_fields"] == {"plan": "pro"}
    assert zd.users["user1@example.com"]["name"] == "User1"
    state = sp.state("support")
    assert state["user5@example.com"]["error"] == (
        "PhoneNumberInvalid: Phone number: +1 (555) CALL is not a valid phone number")
    assert state["user1@example.com"]["created"] is False and state["user2@example.com"]["created"] is True

    retry = sp.run("support")  # the failed row is retried, alone, and fails again with the same error
    assert (retry.sent, retry.failed) == (0, 1)
    posts = [r for r in server.requests if r.path.startswith("/api/v2/users/create_or_update_many")]
    assert [len(r.json()["users"]) for r in posts[-1:]] == [1]

    sp.sql("UPDATE customers SET phone = '+15550100005' WHERE id = 5")
    fixed = sp.run("support")
    assert (fixed.status, fixed.sent) == ("ok", 1)
    assert zd.users["user5@example.com"]["phone"] == "+15550100005"
    assert sp.run("support").sent == 0
    assert set(zd.writes.values()) == {1}


def test_mirror_destroys_only_users_opsloop_created(sp: SyncProject, fake_server: Any) -> None:
    sp.customers(people(10))
    zd, _ = _setup(sp, fake_server, mode="mirror")
    zd.add_existing("user1@example.com")
    assert sp.run("support").sent == 10
    sp.sql("DELETE FROM customers WHERE id IN (1, 2)")
    result = sp.run("support")
    assert (result.status, result.planned["delete"], result.planned["forget"]) == ("ok", 1, 1)
    assert "user1@example.com" in zd.users and "user2@example.com" not in zd.users


def test_organizations_create_or_update(sp: SyncProject, fake_server: Any) -> None:
    sp.customers([(1, "acme", "Acme", None, "pro"), (2, "globex", "Globex", None, "free")])
    zd, _ = _setup(sp, fake_server, obj="organizations")
    path = sp.root / "syncs" / "support.yml"
    text = path.read_text().replace("  phone: phone\n", "")
    path.write_text(text.replace("user_fields.plan", "organization_fields.plan"))
    result = sp.run("support")
    assert (result.status, result.sent) == ("ok", 2), result.error
    assert zd.orgs["acme"]["organization_fields"] == {"plan": "pro"}
    assert sp.state("support")["acme"]["created"] is True
