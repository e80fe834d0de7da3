"""Behind the door: an odd event that got into the log (from an older opsloop, from code, a replay) is
contained: the consumer that fails on it marks it failed with the error and goes on with the next."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from opsloop import load_project
from opsloop._ids import new_id
from opsloop.errors import WarehouseError
from opsloop.events.log import Consumer, EventBus
from opsloop.settings import resolve_settings
from opsloop.state import EventRecord, NewEvent, open_store

from .. import conftest as base
from ._door import event, listings_answer, raw_count, restart, run_for, runs_answer, still_works
from .conftest import Running

BOM = b"\xef\xbb\xbf"


def _deep(levels: int) -> str:
    return '{"email": "deep@example.com", "name": "Deep", "x": ' + "[" * levels + "]" * levels + "}"


# stored as an opsloop before the door's checks stored them: the payload is the body, as it came
POISON: dict[str, bytes] = {
    "bom": BOM + b'{"email": "bom@example.com", "name": "Byte Order"}',
    "surrogate": b'{"email": "s@example.com", "name": "\\ud800"}',
    "deep500": _deep(500).encode(),
    "deep10k": _deep(10_000).encode(),
    "truncated": b'{"email": "t@example.com", "na',
}
NAN = b'{"email": "nan@example.com", "name": "Not a Number", "score": NaN}'


def _inject(root: Path, bodies: dict[str, bytes]) -> dict[str, str]:
    """Append accepted demo_request events straight into the running server's state store."""
    project = load_project(root)
    store = open_store(resolve_settings(project).state_url, root)
    ids: dict[str, str] = {}
    events = []
    for what, body in bodies.items():
        ids[what] = new_id("evt_")
        events.append(NewEvent(id=ids[what], name="demo_request.created", received_at=time.time(),
                               endpoint="demo_request", body=body, payload_text=body.decode("utf-8"),
                               headers={"content-type": "application/json"}, expires_at=time.time() + 86400))
    try:
        store.append_events(events)
    finally:
        store.close()
    return ids


def _failed_ids(r: Running) -> set[str]:
    listed = base.run_cli("events", "--status", "failed", "--json", cwd=r.root)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    return {e["id"] for e in json.loads(listed.stdout)}


@pytest.mark.slow
def test_odd_events_in_the_log_are_contained(up: Running) -> None:
    ids = _inject(up.root, {**POISON, "nan": NAN})
    good = still_works(up, "after-odd-events@example.com")

    def all_failed() -> bool:
        return {event(up, ids[w])["status"] for w in POISON} == {"failed"}

    base.wait_for(all_failed, 30, what="every poison event marked failed")
    for what in POISON:
        stored = event(up, ids[what])
        assert stored["error"]["consumer"] in ("warehouse-loader", "workflows"), (what, stored)
        assert stored["error"]["reason"], (what, stored)
    assert "RecursionError" in event(up, ids["deep500"])["error"]["reason"]
    assert event(up, ids["bom"])["body"].startswith("\ufeff")
    assert event(up, ids["surrogate"])["payload"] is None or "ud800" in json.dumps(event(up, ids["surrogate"]))
    # NaN is carried (DuckDB's JSON holds it; the API shows it as text instead of failing)
    base.wait_for(lambda: raw_count(up, ids["nan"]) == 1, 30, what="the NaN event in raw.events")
    assert event(up, ids["nan"])["payload"]["score"] == "nan"
    assert set(ids[w] for w in POISON) <= _failed_ids(up)
    listings_answer(up, good, *ids.values())
    base.wait_for(lambda: run_for(up, ids["nan"]), 30, what="a run for the NaN event")
    assert ids["surrogate"] in runs_answer(up)  # the loader failed on it, the workflow did not

    restart(up)
    after = still_works(up, "after-restart@example.com")
    listings_answer(up, good, after, *ids.values())
    runs_answer(up)
    assert {event(up, ids[w])["status"] for w in POISON} == {"failed"}
    assert set(ids[w] for w in POISON) <= _failed_ids(up)

    # once fixed, a failed event is replayed and goes through
    (up.root / "fixed.json").write_text('{"email": "bom@example.com", "name": "Byte Order"}')
    replayed = base.run_cli("replay", ids["bom"], "--payload", "@fixed.json", "--json", cwd=up.root)
    assert replayed.returncode == 0, replayed.stderr
    new_id_ = json.loads(replayed.stdout)[0]["id"]
    base.wait_for(lambda: raw_count(up, new_id_) == 1, 30, what="the replayed event in raw.events")
    base.wait_for(lambda: run_for(up, new_id_), 30, what="a run for the replayed event")
    assert event(up, ids["bom"])["status"] == "replayed"


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_batch_with_a_poison_event_loads_the_rest(project_dir: Path, store: str,
                                                    request: pytest.FixtureRequest) -> None:
    overrides = {"state_url": request.getfixturevalue("pg_url")} if store == "postgres" else {}
    app = base.make_app(project_dir, **overrides)

    async def scenario() -> list[str]:
        # emitted before start: the loader meets all of them in its first batch
        good = [await app.emit("order.placed", {"n": i}) for i in range(3)]
        poison = await app.emit("order.placed", {"note": "cut mid-emoji \ud83d"})  # DuckDB's JSON refuses it
        good += [await app.emit("order.placed", {"n": i}) for i in range(3, 6)]
        await app.start()
        try:
            def loaded() -> bool:
                try:
                    rows = app.warehouse.query("SELECT count(*) FROM raw.events WHERE name = 'order.placed'").rows
                except WarehouseError:  # raw.events not made yet
                    return False
                return int(rows[0][0]) == 6

            await asyncio.to_thread(base.wait_for, loaded, 20, 0.05, "the six good events in raw.events")
            failed = await asyncio.to_thread(base.wait_for, lambda: (e := app.store.get_event(poison)) and
                                             e.status == "failed" and e, 20, 0.05, "the poison event marked failed")
            assert failed.error["consumer"] == "warehouse-loader"
            assert "surrogate" in failed.error["reason"]
            later = await app.emit("order.placed", {"n": 99})
            await asyncio.to_thread(base.wait_for, lambda: app.warehouse.query(
                f"SELECT count(*) FROM raw.events WHERE event_id = '{later}'").rows[0][0] == 1, 20, 0.05,
                "a later event in raw.events")
            shown = failed.detail()
            json.dumps(shown, allow_nan=False).encode("utf-8")  # what /api/events/ID writes
        finally:
            await app.stop()
        return good

    assert len(asyncio.run(scenario())) == 6


def test_a_consumer_retries_a_systemic_failure_instead_of_blaming_the_event(tmp_path: Path) -> None:
    store = open_store("sqlite:///state.sqlite", tmp_path)
    event_id = store.append_events([NewEvent(id=new_id("evt_"), name="x", received_at=time.time(), payload={})])[0]
    calls: list[int] = []

    async def flaky(events: list[EventRecord]) -> None:
        calls.append(len(events))
        if len(calls) < 3:
            raise ConnectionError("warehouse unreachable")

    async def scenario() -> None:
        consumer = Consumer("flaky", store, EventBus(), flaky, poll=0.05)
        task = asyncio.create_task(consumer.run())
        try:
            await asyncio.to_thread(base.wait_for, lambda: len(calls) >= 3, 10, 0.05, "three attempts")
        finally:
            consumer.stop()
            await task

    try:
        asyncio.run(scenario())
        stored = store.get_event(event_id.event_id)
        assert stored is not None and stored.status == "received" and stored.error is None
        assert store.get_cursor("flaky") == event_id.seq
    finally:
        store.close()


def test_a_run_waiting_for_an_event_skips_an_unreadable_one(project_dir: Path) -> None:
    (project_dir / "workflows" / "answer.yml").write_text(
        "on: lead.created\nsteps:\n"
        "  - id: answer\n"
        "    wait_for: {event: lead.answered, match: \"event.data.email == trigger.data.email\", timeout: 1h}\n"
    )
    app = base.make_app(project_dir)

    async def scenario() -> tuple[str, str, str]:
        await app.start()
        try:
            await app.emit("lead.created", {"email": "w@example.com"})

            def state() -> tuple[str, str] | None:
                rows = app.store.query("SELECT status, output FROM wf_runs WHERE workflow = 'answer'")
                return (str(rows[0][0]), str(rows[0][1])) if rows else None

            await asyncio.to_thread(base.wait_for, lambda: (s := state()) and s[0] == "waiting", 20, 0.05,
                                    "the answer run to wait")
            poison = new_id("evt_")  # as an older opsloop could have stored it: a body that is not JSON
            body = b'{"email": "w@example.com", "by": '
            await asyncio.to_thread(app.store.append_events, [NewEvent(
                id=poison, name="lead.answered", received_at=time.time(), body=body, payload_text=body.decode())])
            good = await app.emit("lead.answered", {"email": "w@example.com", "by": "Ada"})
            status, output = await asyncio.to_thread(
                base.wait_for, lambda: (s := state()) and s[0] not in ("waiting", "running", "queued") and s, 20,
                0.05, "the answer run to finish")
        finally:
            await app.stop()
        return status, output, good

    status, output, good = asyncio.run(scenario())
    assert status == "completed", output
    assert good in output


def test_a_consumer_finds_poison_events_by_halving_the_batch(tmp_path: Path) -> None:
    store = open_store("sqlite:///state.sqlite", tmp_path)
    events = [NewEvent(id=new_id("evt_"), name="x", received_at=time.time(), payload={"i": i}) for i in range(200)]
    store.append_events(events)
    poison = {events[17].id, events[150].id}
    calls: list[int] = []
    handled: list[str] = []

    async def handler(batch: list[EventRecord]) -> None:
        calls.append(len(batch))
        if poison & {e.id for e in batch}:
            raise ValueError("this batch holds a poison event")
        handled.extend(e.id for e in batch)

    async def scenario() -> None:
        consumer = Consumer("halving", store, EventBus(), handler, batch=500, poll=0.05)
        task = asyncio.create_task(consumer.run())
        try:
            await asyncio.to_thread(base.wait_for, lambda: store.get_cursor("halving") == 200, 10, 0.05,
                                    "the cursor past the batch")
        finally:
            consumer.stop()
            await task

    try:
        asyncio.run(scenario())
        assert handled == [e.id for e in events if e.id not in poison]  # each once, in log order
        assert len(calls) <= 2 + 2 * 2 * 8  # the batch, then two halvings of depth log2(200) at most
        for event_id in poison:
            stored = store.get_event(event_id)
            assert stored is not None and stored.status == "failed"
            assert stored.error == {"reason": "ValueError: this batch holds a poison event", "consumer": "halving"}
    finally:
        store.close()


def test_an_event_failed_by_one_consumer_still_reaches_the_others(project_dir: Path) -> None:
    app = base.make_app(project_dir)
    seen: list[str] = []

    async def handler(record: EventRecord) -> None:
        seen.append(record.id)

    app.on_event("order.*", handler)

    async def scenario() -> tuple[str, str]:
        odd = await app.emit("order.placed", {"note": "cut mid-emoji \ud83d"})
        # the warehouse loader got there first and failed on it
        await asyncio.to_thread(app.store.fail_event, odd, "warehouse-loader", "ConversionException: no low surrogate")
        later = await app.emit("order.placed", {"n": 1})
        await app.start()
        try:
            await asyncio.to_thread(base.wait_for, lambda: later in seen, 20, 0.05, "the dispatcher to pass both on")
        finally:
            await app.stop()
        return odd, later

    odd, later = asyncio.run(scenario())
    assert seen == [odd, later]
    app = base.make_app(project_dir)
    try:
        stored = app.store.get_event(odd)
        assert stored is not None and stored.status == "failed"  # the loader's failure stays visible
        assert stored.error["consumer"] == "warehouse-loader"
    finally:
        app.close()
