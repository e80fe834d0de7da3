"""Salesforce, Slack, email (a real SMTP server) and Postgres (a real database) destinations."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest

from tests.conftest import PG_DSN

from .conftest import SyncProject, people
from .fakes import FakeSalesforce, FakeSlack


def test_salesforce_upsert_by_external_id_with_record_errors(sp: SyncProject, fake_server: Any) -> None:
    rows = [(i, f"user{i}@example.com", f"Last{i}", f"+1555{i:07d}", "pro") for i in range(1, 6)]
    rows[1] = (2, "user2@example.com", None, "+15550000002", "pro")
    sp.customers(rows)
    sf = FakeSalesforce()
    server = fake_server(sf)
    sp.set_env(SALESFORCE_TOKEN=sf.token)
    sp.write_sync("sfdc", f"""
        table: customers
        key: email
        destination: {{type: salesforce, instance_url: "{server.url}", object: Contact,
                       external_id_field: Ext_Id__c}}
        mapping: {{LastName: first_name, Phone: phone, Email: email}}
        mode: mirror
    """)
    sf.inject = [(503, {})]
    first = sp.run("sfdc")
    assert (first.status, first.sent, first.failed) == ("partial", 4, 1)
    assert sp.state("sfdc")["user2@example.com"]["error"] == (
        "REQUIRED_FIELD_MISSING: Required fields are missing: [LastName] (LastName)")
    assert sp.run("sfdc").failed == 1  # retried, still missing
    sp.sql("UPDATE customers SET first_name = 'Fixed' WHERE id = 2")
    assert sp.run("sfdc").sent == 1
    assert sf.records["user2@example.com"]["LastName"] == "Fixed"
    assert sp.run("sfdc").sent == 0
    sp.sql("DELETE FROM customers WHERE id = 5")
    assert sp.run("sfdc").sent == 1
    assert sf.deleted == ["user5@example.com"]


def test_slack_per_row_digest_429_and_channel_errors(sp: SyncProject, fake_server: Any) -> None:
    sp.customers(people(3))
    slack = FakeSlack()
    server = fake_server(slack)
    sp.set_env(SLACK_BOT_TOKEN=slack.token)
    sp.write_sync("notify", f"""
        table: customers
        key: email
        destination:
          type: slack
          channel: "#sales"
          base_url: "{server.url}/"
          text: "New signup {{{{ email }}}} on {{{{ plan }}}}"
        mapping: {{email: email, plan: plan}}
        mode: insert
        rate_limit: {{per_second: 100}}
    """)
    slack.inject = [(429, {"Retry-After": "1"})]
    result = sp.run("notify")
    assert (result.status, result.sent) == ("ok", 3), result.error
    assert [m["text"] for m in slack.messages] == [f"New signup user{i}@example.com on pro" for i in (1, 2, 3)]
    sp.sql("UPDATE customers SET plan = 'enterprise' WHERE id = 1")
    assert sp.run("notify").sent == 0  # insert-only: a change to a known row is not announced again

    path = sp.root / "syncs" / "notify.yml"
    path.write_text(path.read_text().replace('"#sales"', '"#nowhere"'))
    sp.customers(people(4))
    bad = sp.run("notify")
    assert bad.failed == 1 and sp.state("notify")["user4@example.com"]["error"] == (
        "slack chat.postMessage: channel_not_found")

    path.write_text(path.read_text().replace('"#nowhere"', '"#sales"').replace(
        "text:", "style: digest\n  text:"))
    sp.customers(people(6))
    digest = sp.run("notify")
    assert digest.sent == 3
    assert slack.messages[-1]["text"].splitlines() == [
        "opsloop sync notify: 3 row(s)", "• New signup user4@example.com on pro",
        "• New signup user5@example.com on pro", "• New signup user6@example.com on pro"]


class _Collect:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("bounce"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[_Collect, int]]:
    from aiosmtpd.controller import Controller

    from tests.conftest import free_port

    handler = _Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


def test_email_per_row_over_real_smtp(sp: SyncProject, smtp: tuple[_Collect, int]) -> None:
    handler, port = smtp
    rows = people(3)
    rows[2] = (3, "bounce@example.com", "Bo", None, "free")
    sp.customers(rows)
    sp.write_sync("welcome", f"""
        table: customers
        key: email
        destination:
          type: email
          port: {port}
          from: "team@opsloop.example"
          to: "{{{{ email }}}}"
          subject: "Welcome, {{{{ name }}}}"
          body: "You are on the {{{{ plan }}}} plan."
        mapping: {{email: email, name: first_name, plan: plan}}
        mode: insert
    """)
    result = sp.run("welcome")
    assert (result.sent, result.failed) == (2, 1)
    assert sorted(m["To"] for m in handler.messages) == ["user1@example.com", "user2@example.com"]
    first = next(m for m in handler.messages if m["To"] == "user1@example.com")
    assert first["Subject"] == "Welcome, User1" and first.get_payload().strip() == "You are on the pro plan."
    assert "550 5.1.1 mailbox unavailable" in sp.state("welcome")["bounce@example.com"]["error"]
    assert sp.run("welcome").sent == 0 and len(handler.messages) == 2


@pytest.mark.postgres
def test_postgres_table_upsert_and_mirror(sp: SyncProject, pg_url: str) -> None:
    import psycopg

    schema = f"dest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".contacts (email TEXT PRIMARY KEY, phone TEXT NOT NULL, plan TEXT)')
        conn.execute(f"INSERT INTO \"{schema}\".contacts VALUES ('user1@example.com', '+1', 'old')")
    try:
        rows = people(5)
        rows[3] = (4, "user4@example.com", "U4", None, "pro")
        sp.customers(rows)
        sp.set_env(DEST_PG=PG_DSN)
        sp.write_sync("pgdest", f"""
            table: customers
            key: email
            destination: {{type: postgres, url_env: DEST_PG, table: {schema}.contacts, key_column: email}}
            mapping: {{phone: phone, plan: plan}}
            mode: mirror
            null_policy: overwrite
        """)
        first = sp.run("pgdest")
        assert (first.sent, first.failed) == (4, 1)
        assert "null value in column \"phone\"" in sp.state("pgdest")["user4@example.com"]["error"]
        assert sp.state("pgdest")["user1@example.com"]["created"] is False
        sp.sql("UPDATE customers SET phone = '+15550000004' WHERE id = 4")
        assert sp.run("pgdest").sent == 1
        sp.sql("DELETE FROM customers WHERE id IN (1, 5)")
        result = sp.run("pgdest", confirm_deletes=True)
        assert (result.planned["delete"], result.planned["forget"]) == (1, 1)
        with psycopg.connect(PG_DSN) as conn:
            got = conn.execute(f'SELECT email, phone FROM "{schema}".contacts ORDER BY email').fetchall()
        assert got == [("user1@example.com", "+15550000001"), ("user2@example.com", "+15550000002"),
                       ("user3@example.com", "+15550000003"), ("user4@example.com", "+15550000004")]
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.postgres
def test_sync_state_store_on_postgres(sp: SyncProject, pg_url: str) -> None:
    from opsloop.syncs import SyncRunner

    sp.customers(people(4))
    sp.write_sync("contacts", """
        table: customers
        key: email
        destination: {type: outbox}
        mapping: {phone: phone}
    """)
    app = sp.app(state_url=pg_url)
    try:
        runner = SyncRunner(app)
        assert runner.run("contacts").sent == 4
        assert runner.run("contacts").sent == 0
        status = runner.status.get("contacts")
        assert status is not None and status["last_status"] == "ok" and status["running"] is False
    finally:
        app.close()
