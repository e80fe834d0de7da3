"""The diff engine end to end through the outbox (sandbox) destination."""

from __future__ import annotations

from opsloop import outbox
from opsloop.state import open_store

from .conftest import SyncProject, people

SYNC = """
model: customers
key: email
destination: {type: outbox, object: contacts}
mapping:
  email: email
  firstname: first_name
  phone: phone
  greeting: "Hi {{ first_name }}"
  domain: {sql: "split_part(email, '@', 2)"}
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
