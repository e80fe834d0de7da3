"""The diff engine end to end through the outbox (sandbox) destination."""

from __future__ import annotations

import pytest

from opsloop import outbox
from opsloop.state import open_store

from .conftest import EVERY_WAREHOUSE, SyncProject, people

pytestmark = pytest.mark.parametrize("sp", EVERY_WAREHOUSE, indirect=True)

SYNC = """
model: customers
key: email
destination: {type: outbox, object: contacts}
mapping:
  email: email
  firstname: first_name
  phone: phone
  greeting: "Hi {{ first_name }}"
  domain: {sql: "substr(email, strpos(email, '@') + 1)"}  # SQL every engine here runs
"""


def _items(sp: SyncProject) -> list[outbox.OutboxItem]:
    store = open_store(f"sqlite:///{sp.root}/state/opsloop.sqlite")
    try:
        return outbox.list_items(store, "sync:contacts", limit=10000)
    finally:
        store.close()


def test_first_run_unchanged_rerun_and_one_change(sp: SyncProject) -> None:
    sp.customers(people(20))
    sp.write_sync("contacts", SYNC)
    first = sp.run("contacts")
    assert first.status == "ok", first.error
    assert (first.planned["create"], first.sent, first.failed) == (20, 20, 0)
    items = _items(sp)
    assert len(items) == 20
    one = next(i for i in items if i.key == "user3@example.com")
    assert one.payload["fields"] == {"email": "user3@example.com", "firstname": "User3", "phone": "+15550000003",
                                     "greeting": "Hi User3", "domain": "example.com"}

    again = sp.run("contacts")
    assert (again.status, again.sent, sum(again.planned.values())) == ("ok", 0, 0)
    assert len(_items(sp)) == 20

    sp.sql("UPDATE customers SET phone = '+15559999999' WHERE id = 7")
    changed = sp.run("contacts")
    assert (changed.planned["update"], changed.sent) == (1, 1)
    newest = _items(sp)[0]
    assert newest.key == "user7@example.com" and newest.payload["fields"]["phone"] == "+15559999999"
    runs = sp.sql("SELECT status, sent FROM opsloop_sync.runs ORDER BY started_at")
    assert runs == [("ok", 20), ("ok", 0), ("ok", 1)]


MIRROR = """
table: customers
key: email
destination: {type: outbox, object: contacts}
mapping: {email: email, phone: phone}
mode: mirror
"""


def test_dry_run_sends_nothing_and_shows_samples(sp: SyncProject) -> None:
    sp.customers(people(12))
    sp.write_sync("contacts", SYNC)
    plan = sp.run("contacts", dry_run=True)
    assert plan.status == "dry_run"
    assert plan.planned["create"] == 12
    assert len(plan.samples["create"]) == 5
    assert plan.samples["create"][0]["fields"]["greeting"].startswith("Hi User")
    assert _items(sp) == []
    assert sp.run("contacts").sent == 12


def test_mirror_delete_breaker_then_confirm(sp: SyncProject) -> None:
    sp.customers(people(10))
    sp.write_sync("contacts", MIRROR)
    assert sp.run("contacts").sent == 10
    sp.sql("DELETE FROM customers WHERE id <= 3")
    stopped = sp.run("contacts")
    assert stopped.status == "stopped"
    assert "would delete 3 of the 10 records" in (stopped.error or "")
    assert not [i for i in _items(sp) if i.action == "delete"]
    confirmed = sp.run("contacts", confirm_deletes=True)
    assert (confirmed.status, confirmed.planned["delete"], confirmed.sent) == ("ok", 3, 3)
    deleted = sorted(i.key or "" for i in _items(sp) if i.action == "delete")
    assert deleted == ["user1@example.com", "user2@example.com", "user3@example.com"]
    # one more removal is 1 of 7 (14%): under the 20% breaker, so it goes through
    sp.sql("DELETE FROM customers WHERE id = 4")
    assert sp.run("contacts").planned["delete"] == 1


def test_reset_marks_rows_delivered_without_sending(sp: SyncProject) -> None:
    sp.customers(people(5))
    sp.write_sync("contacts", SYNC)
    reset = sp.run("contacts", reset=True)
    assert (reset.status, reset.planned["reset"]) == ("reset", 5)
    assert sp.run("contacts").sent == 0
    assert _items(sp) == []
    sp.sql("UPDATE customers SET first_name = 'Ann' WHERE id = 2")
    assert sp.run("contacts").sent == 1
    full = sp.run("contacts", full=True)
    assert full.sent == 5


def test_null_policy_and_origin_guard(sp: SyncProject) -> None:
    sp.customers(
        [(1, "a@x.com", "Ann", None, "hubspot"), (2, "b@x.com", "Bo", "+1555", "stripe")],
        "id INTEGER, email VARCHAR, first_name VARCHAR, phone VARCHAR, phone__source VARCHAR",
    )
    sp.write_sync("contacts", """
        table: customers
        key: email
        destination: {type: outbox}
        mapping: {email: email, phone: phone, firstname: first_name}
        system: stripe
    """)
    assert sp.run("contacts").sent == 2
    fields = {i.key: i.payload["fields"] for i in _items(sp)}
    # a null never overwrites the destination's value; a value that came from stripe is not echoed back to it
    assert fields == {"a@x.com": {"email": "a@x.com", "firstname": "Ann"},
                      "b@x.com": {"email": "b@x.com", "firstname": "Bo"}}
