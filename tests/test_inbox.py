"""The webhook inbox over real HTTP: every status code, dedupe, redaction, quarantine and replay."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from opsloop.events.signatures import SignedRequest, make_preset

from .conftest import ServerThread, wait_for


def signed_post(srv: ServerThread, endpoint: str, payload: object, msg_id: str | None = None,
                raw: bytes | None = None, client: httpx.Client | None = None) -> httpx.Response:
    cfg = srv.app.project.endpoints[endpoint]
    secret = srv.app.project.secret(cfg.signature.secret_env or "")
    body = raw if raw is not None else json.dumps(payload).encode()
    preset = make_preset(cfg.signature, secret)
    headers = preset.sign(SignedRequest(body, {"webhook-id": msg_id} if msg_id else {}), time.time())
    url = f"{srv.url}/hooks/{endpoint}"
    if client is not None:
        return client.post(url, content=body, headers=headers)
    return httpx.post(url, content=body, headers=headers, timeout=10)


GOOD = {"email": "ada@example.com", "name": "Ada", "company": "AE"}


def test_accepts_signed_event_and_dispatches_it(server: ServerThread) -> None:
    response = signed_post(server, "demo_request", GOOD, msg_id="m-1")
    assert response.status_code == 202
    event_id = response.json()["id"]
    assert event_id.startswith("evt_")
    with server.api() as api:
        detail = wait_for(lambda: (d := api.get(f"/api/events/{event_id}").json())["status"] == "dispatched" and d)
    assert detail["payload"] == GOOD and detail["name"] == "demo_request.created"
    assert detail["headers"]["webhook-id"] == "m-1"


def test_an_event_no_handler_wants_is_dispatched_as_stored(server: ServerThread) -> None:
    """Webhooks feed workflows, loads and models (which read the log); with no handler for their name the
    dispatcher has nothing to do, so they are stored dispatched. An event a handler wants waits for it."""
    app = server.app
    seen: list[str] = []

    async def handler(event):  # type: ignore[no-untyped-def]
        seen.append(event.id)

    app.on_event("demo_request.*", handler)
    wanted = signed_post(server, "demo_request", GOOD, msg_id="m-wanted").json()["id"]
    wait_for(lambda: wanted in seen, what="the handler to get the event it wants")
    wait_for(lambda: (r := app.store.get_event(wanted)) is not None and r.status == "dispatched")
    app.handlers.clear()
    unwanted = signed_post(server, "demo_request", GOOD, msg_id="m-unwanted").json()["id"]
    record = app.store.get_event(unwanted)
    assert record is not None and record.status == "dispatched" and record.dispatched_at == record.received_at


def test_bad_signature_is_401_recorded_and_never_dispatched(server: ServerThread) -> None:
    body = json.dumps(GOOD).encode()
    headers = {"webhook-id": "m-x", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"}
    response = httpx.post(f"{server.url}/hooks/demo_request", content=body, headers=headers)
    assert response.status_code == 401
    event_id = response.json()["id"]
    with server.api() as api:
        record = api.get(f"/api/events/{event_id}").json()
        assert record["status"] == "rejected" and "bad signature" in record["error"]["reason"]
        refused = api.post(f"/api/events/{event_id}/replay")
        assert refused.status_code == 409 and "never processed" in refused.json()["error"]
    assert server.app.store.read_events(0) == []


def test_schema_violation_is_422_with_pointers_and_quarantined_then_replayed(server: ServerThread) -> None:
    response = signed_post(server, "demo_request", {"email": "not-an-email", "name": ""}, msg_id="m-2")
    assert response.status_code == 422
    body = response.json()
    pointers = {e["pointer"] for e in body["errors"]}
    assert pointers == {"/email", "/name"} and body["quarantined"] is True
    event_id = body["id"]
    with server.api() as api:
        assert api.get(f"/api/events/{event_id}").json()["status"] == "quarantined"
        still_bad = api.post(f"/api/events/{event_id}/replay")
        assert still_bad.status_code == 409 and "/email" in still_bad.json()["error"]
        fixed = api.post(f"/api/events/{event_id}/replay", json={"payload": GOOD})
        assert fixed.status_code == 202
        new_id = fixed.json()["id"]
        wait_for(lambda: api.get(f"/api/events/{new_id}").json()["status"] == "dispatched")
        original = api.get(f"/api/events/{event_id}").json()
        assert original["status"] == "replayed" and original["related_id"] == new_id
        assert api.get(f"/api/events/{new_id}").json()["source"] == "replay"


def test_duplicates_are_200_with_the_original_id_even_when_concurrent(server: ServerThread) -> None:
    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: signed_post(server, "demo_request", GOOD, "same-id", client=client),
                                  range(24)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(202) == 1 and codes.count(200) == 23
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    wait_for(lambda: server.app.store.count_events("dispatched") == 1)
    assert len(server.app.store.read_events(0)) == 1
    assert server.app.store.count_events("duplicate") == 23


def test_malformed_json_400_unknown_404_too_big_413(server: ServerThread) -> None:
    assert signed_post(server, "demo_request", None, raw=b'{"email": ').status_code == 400
    assert httpx.post(f"{server.url}/hooks/nope", content=b"{}").status_code == 404
    big = json.dumps({**GOOD, "pad": "x" * 300_000}).encode()
    assert signed_post(server, "demo_request", None, raw=big).status_code == 413
    chunked = httpx.post(f"{server.url}/hooks/demo_request", content=iter([b"x" * 200_000, b"y" * 100_000]))
    assert chunked.status_code == 413


def test_redaction_blanks_fields_before_storage(project_dir: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    cfg = project_dir / "events" / "demo_request.yml"
    cfg.write_text(cfg.read_text().replace("redact: []", "redact: [phone, cards.*.number]"))
    srv = server_factory(project_dir)
    payload = {**GOOD, "phone": "+1 555 0100", "cards": [{"number": "4242", "brand": "visa"}]}
    response = signed_post(srv, "demo_request", payload, msg_id="m-r")
    assert response.status_code == 202
    record = srv.app.store.get_event(response.json()["id"])
    assert record is not None
    assert record.payload["phone"] == "[redacted]" and record.payload["cards"][0] == {"number": "[redacted]",
                                                                                       "brand": "visa"}
    assert b"4242" not in (record.body or b"") and b"555" not in (record.body or b"")


def test_overload_is_503_with_retry_after(project_dir: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    srv = server_factory(project_dir, max_pending=1)
    lock = srv.app.store._write_lock
    lock.acquire()  # the writer thread stalls on its next commit, as under a slow disk
    try:
        results: list[httpx.Response] = []

        def post(i: int) -> None:
            results.append(signed_post(srv, "demo_request", GOOD, msg_id=f"o-{i}"))

        threads = [threading.Thread(target=post, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        wait_for(lambda: any(r.status_code == 503 for r in results), what="a 503")
    finally:
        lock.release()
    for t in threads:
        t.join(10)
    busy = [r for r in results if r.status_code == 503]
    assert busy and all(r.headers["retry-after"] == "1" for r in busy)
    accepted = [r.json()["id"] for r in results if r.status_code == 202]
    assert accepted and all(srv.app.store.get_event(i) is not None for i in accepted)


def test_events_reach_the_warehouse_raw_table_within_a_second(server: ServerThread) -> None:
    ids = [signed_post(server, "demo_request", {**GOOD, "name": f"n{i}"}, msg_id=f"w-{i}").json()["id"]
           for i in range(5)]
    start = time.monotonic()

    def loaded() -> bool:
        rows = server.app.warehouse.query("SELECT event_id FROM raw.events").rows
        return {r[0] for r in rows} >= set(ids)

    wait_for(loaded, timeout=5)
    assert time.monotonic() - start < 1.5
    rows = server.app.warehouse.query(
        "SELECT json_extract_string(payload, '$.name') AS n, endpoint FROM raw.events ORDER BY seq").rows
    assert rows == [(f"n{i}", "demo_request") for i in range(5)]


def test_restart_continues_where_it_stopped(project_dir: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    first = server_factory(project_dir)
    event_id = signed_post(first, "demo_request", GOOD, msg_id="r-1").json()["id"]
    wait_for(lambda: first.app.store.count_events("dispatched") == 1)
    first.__exit__(None, None, None)
    second = server_factory(project_dir)
    dup = signed_post(second, "demo_request", GOOD, msg_id="r-1")
    assert dup.status_code == 200 and dup.json()["id"] == event_id
    assert second.app.store.get_event(event_id).status == "dispatched"  # type: ignore[union-attr]
    rows = second.app.warehouse.query("SELECT count(*) FROM raw.events").rows
    assert rows[0][0] == 1
