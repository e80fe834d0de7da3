"""The state store contract, run on SQLite and on the real local Postgres."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop._ids import new_id
from opsloop.state import NewEvent, StateStore, open_store


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path}/state.sqlite")
    else:
        s = open_store(request.getfixturevalue("pg_url"))
    yield s
    s.close()


def ev(**kw: Any) -> NewEvent:
    base: dict[str, Any] = {"id": new_id("evt_"), "name": "thing.happened", "received_at": time.time(),
                            "endpoint": "hook", "payload": {"a": 1}, "body": b'{"a":1}'}
    base.update(kw)
    return NewEvent(**base)


def test_migrations_are_idempotent(store: StateStore) -> None:
    assert store.migrate() == []
    versions = [r[0] for r in store.query("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions[0] == 1


def test_append_read_and_cursor(store: StateStore) -> None:
    results = store.append_events([ev(), ev(status="quarantined"), ev()])
    assert [r.duplicate_of for r in results] == [None, None, None]
    accepted = store.read_events(0)
    assert [e.id for e in accepted] == [results[0].event_id, results[2].event_id]
    assert accepted[0].payload == {"a": 1} and accepted[0].body == b'{"a":1}'
    store.set_cursor("c", accepted[0].seq)
    assert store.get_cursor("c") == accepted[0].seq
    assert [e.id for e in store.read_events(store.get_cursor("c"))] == [results[2].event_id]


def test_a_payload_that_is_the_body_is_stored_once(store: StateStore) -> None:
    body = '{"email": "ada@example.com", "note": "caf\u00e9 \u2615"}'.encode()
    same = ev(body=body, payload_text=body.decode(), payload=None)
    redacted = ev(body=b'{"phone":"[redacted]"}', payload_text=None, payload={"phone": "[redacted]"})
    quarantined = ev(body=body, payload_text=body.decode(), payload=None, status="quarantined")
    store.append_events([same, redacted, quarantined])
    stored = dict(store.query("SELECT id, payload FROM events"))
    assert stored[same.id] == "" and stored[quarantined.id] == ""  # not a second copy of the body
    assert stored[redacted.id] == '{"phone": "[redacted]"}'
    light = {e.id: e for e in store.read_events(0, with_body=False, parse=False)}
    assert light[same.id].payload_text == body.decode() and light[same.id].body is None
    full = {e.id: e for e in store.read_events(0)}
    assert full[same.id].payload == {"email": "ada@example.com", "note": "caf\u00e9 \u2615"}
    assert full[same.id].body == body and full[redacted.id].payload == {"phone": "[redacted]"}
    shown = store.get_event(quarantined.id)
    assert shown is not None and shown.payload == full[same.id].payload
    listed = {e.id: e for e in store.list_events()}
    assert listed[same.id].payload_text == body.decode()


def test_dedupe_inside_window_and_after_it(store: StateStore) -> None:
    now = time.time()
    first = store.append_events([ev(idempotency_key="k1", dedupe_until=now + 60)])[0]
    second, third = store.append_events(
        [ev(idempotency_key="k1", dedupe_until=now + 60), ev(idempotency_key="k1", dedupe_until=now + 60)]
    )
    assert second.duplicate_of == first.event_id and third.duplicate_of == first.event_id
    assert store.get_event(second.event_id).status == "duplicate"  # type: ignore[union-attr]
    assert len(store.read_events(0)) == 1
    # after the window, the same key is a new event
    later = store.append_events([ev(idempotency_key="k1", received_at=now + 120, dedupe_until=now + 180)])[0]
    assert later.duplicate_of is None


def test_retention_keeps_quarantined_and_failed(store: StateStore) -> None:
    past = time.time() - 10
    old_ok = store.append_events([ev(expires_at=past)])[0]
    old_q = store.append_events([ev(status="quarantined", expires_at=past)])[0]
    old_failed = store.append_events([ev(expires_at=past)])[0]
    store.mark_events([old_failed.event_id], "failed", {"reason": "boom"})
    fresh = store.append_events([ev(expires_at=time.time() + 1000)])[0]
    assert store.purge_expired() == 1
    assert store.get_event(old_ok.event_id) is None
    assert store.get_event(old_q.event_id) is not None
    assert store.get_event(old_failed.event_id) is not None
    assert store.get_event(fresh.event_id) is not None


def test_list_filters(store: StateStore) -> None:
    store.append_events([ev(endpoint="a"), ev(endpoint="b", status="rejected"), ev(endpoint="a", name="x.y")])
    assert len(store.list_events(endpoint="a")) == 2
    assert [e.status for e in store.list_events(status="rejected")] == ["rejected"]
    assert [e.name for e in store.list_events(name="x.y")] == ["x.y"]
    assert store.count_events() == 3


def test_transaction_rolls_back_on_error(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.transaction() as cur:
        store.append_events_in(cur, [ev()])
        raise RuntimeError("boom")
    assert store.count_events() == 0
