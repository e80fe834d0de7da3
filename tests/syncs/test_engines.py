"""A sync gives the same results on every warehouse that runs syncs (``Warehouse.RUNS_SYNCS``): the same records
reach the local webhook receiver, the diff state in ``opsloop_sync`` is the same, a re-run sends nothing, a
changed row goes out again (alone), and a row the receiver rejects is recorded and retried on the next run."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import EVERY_WAREHOUSE, FakeServer, SyncProject, people
from .test_webhook_sync import SECRET, Receiver

pytestmark = pytest.mark.parametrize("sp", EVERY_WAREHOUSE, indirect=True)


def _state(sp: SyncProject) -> dict[str, tuple[Any, ...]]:
    """key -> (delivered, failing, attempts, error) of the sync's diff state."""
    rows = sp.sql('SELECT key, fp IS NOT NULL, failed_fp IS NOT NULL, attempts, error FROM opsloop_sync."state__hooks"')
    return {str(r[0]): (bool(r[1]), bool(r[2]), int(r[3]), r[4]) for r in rows}


def test_a_sync_sends_each_change_once_on_every_warehouse(sp: SyncProject, fake_server: Any) -> None:
    receiver = Receiver()
    server: FakeServer = fake_server(receiver)
    sp.customers(people(12))
    sp.set_env(HOOK_SECRET=SECRET)
    sp.write_sync("hooks", f"""
        table: {sp.schema}.customers
        key: email
        destination: {{type: webhook, url: "{server.url}/in", secret_env: HOOK_SECRET}}
        mapping: {{email: email, phone: phone, name: {{sql: "upper(first_name)"}}}}
        batch_size: 5
    """)
    receiver.reject_keys = {"user4@example.com"}
    first = sp.run("hooks")
    assert first.status != "failed", first.error
    assert (first.status, first.planned["create"], first.sent, first.failed) == ("partial", 12, 11, 1), first.error
    everyone = {f"user{i}@example.com" for i in range(1, 13)}
    assert set(receiver.applied) == everyone - {"user4@example.com"}
    state = _state(sp)
    assert set(state) == everyone
    assert state["user4@example.com"][:3] == (False, True, 1)
    assert "invalid rows: user4@example.com" in str(state["user4@example.com"][3])
    assert all(state[k] == (True, False, 0, None) for k in everyone - {"user4@example.com"})

    # the receiver accepts it now: only the failed row goes out; then nothing at all
    receiver.reject_keys = set()
    retried = sp.run("hooks")
    assert (retried.status, retried.sent, retried.failed) == ("ok", 1, 0), retried.error
    assert set(receiver.applied) == everyone and set(receiver.applied.values()) == {1}
    again = sp.run("hooks")
    assert (again.status, again.sent, sum(again.planned.values())) == ("ok", 0, 0), again.error
    assert all(v == (True, False, 0, None) for v in _state(sp).values())

    # one changed row goes out again, with its new value; a new row is created
    rows = people(13)
    rows[6] = (7, "user7@example.com", "User7", "+15559999999", "pro")
    sp.customers(rows)
    changed = sp.run("hooks")
    assert (changed.status, changed.planned["create"], changed.planned["update"], changed.sent) == ("ok", 1, 1, 2)
    last = [row for req in server.requests[-1:] for row in req.json()["data"]["rows"]]
    assert sorted(r["key"] for r in last) == ["user13@example.com", "user7@example.com"]
    seven = next(r for r in last if r["key"] == "user7@example.com")
    assert seven["fields"] == {"email": "user7@example.com", "phone": "+15559999999", "name": "USER7"}
    runs = sp.sql("SELECT status, sent, failed FROM opsloop_sync.runs ORDER BY started_at, run_id")
    assert [(str(s), int(n), int(f)) for s, n, f in runs] == [
        ("partial", 11, 1), ("ok", 1, 0), ("ok", 0, 0), ("ok", 2, 0)]
