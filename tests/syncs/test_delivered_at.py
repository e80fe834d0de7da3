"""``delivered_at`` in the sync state, on DuckDB and Postgres: set by each write, kept by failures and skips,
added to a state table from before it (from ``updated_at``). Enforcement reads it (tests/identity/test_enforce.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import BOTH_WAREHOUSES, SyncProject, people

pytestmark = pytest.mark.parametrize("sp", BOTH_WAREHOUSES, indirect=True)

SYNC = """
    table: {schema}.customers
    key: email
    destination: {{type: outbox, object: contacts}}
    mapping: {{email: email, phone: phone}}
"""


def delivered(sp: SyncProject) -> dict[str, Any]:
    return {k: v for k, v in sp.sql('SELECT key, delivered_at FROM opsloop_sync."state__contacts"')}


def test_delivered_at_moves_with_each_write_only(sp: SyncProject) -> None:
    sp.customers(people(3))
    sp.write_sync("contacts", SYNC.format(schema=sp.schema))
    assert sp.run("contacts").sent == 3
    first = delivered(sp)
    assert len(first) == 3 and all(first.values())
    sp.customers([(1, "user1@example.com", "User1", "+15550009999", "pro"), *people(2, start=2)])
    assert sp.run("contacts").sent == 1
    second = delivered(sp)
    assert second["user1@example.com"] > first["user1@example.com"]
    assert {k: second[k] for k in ("user2@example.com", "user3@example.com")} == {
        k: first[k] for k in ("user2@example.com", "user3@example.com")}
    assert sp.run("contacts", reset=True).status == "reset"
    assert all(v >= second["user1@example.com"] for v in delivered(sp).values())


def test_a_state_table_from_before_delivered_at_gets_it(sp: SyncProject) -> None:
    sp.customers(people(2))
    sp.write_sync("contacts", SYNC.format(schema=sp.schema))
    assert sp.run("contacts").sent == 2
    sp.sql('ALTER TABLE opsloop_sync."state__contacts" DROP COLUMN delivered_at')
    updated = {k: v for k, v in sp.sql('SELECT key, updated_at FROM opsloop_sync."state__contacts"')}
    sp.customers([*people(2), (3, "user3@example.com", "User3", "+15550000003", "pro")])
    assert sp.run("contacts").sent == 1
    now = delivered(sp)
    assert {k: now[k] for k in updated} == updated
    assert now["user3@example.com"] is not None
