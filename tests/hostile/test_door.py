"""At the door: what the inbox refuses, what it stores of a refused request, and what that costs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from opsloop import load_project

from .. import conftest as base
from ._door import (
    add_endpoints,
    event,
    hmac_post,
    listings_answer,
    raw_count,
    rejected_ok,
    restart,
    run_for,
    still_works,
)
from .conftest import Running

pytestmark = pytest.mark.slow

SECRET = b"raw-secret-for-tests"

PRESET_ENDPOINTS = {
    "stripe_hook": "signature: {preset: stripe, secret_env: RAWHOOK_SECRET}\n",
    "slack_hook": "signature: {preset: slack, secret_env: RAWHOOK_SECRET}\n",
    "hubspot_hook": "signature: {preset: hubspot, secret_env: RAWHOOK_SECRET}\n",
    "zendesk_hook": "signature: {preset: zendesk, secret_env: RAWHOOK_SECRET}\n",
    "stamped_hook": "signature: {preset: hmac, secret_env: RAWHOOK_SECRET, header: X-Signature, "
                    "timestamp_header: X-Timestamp}\n",
    # as deep as an endpoint may allow, redacted (a deep copy) and feeding the demo workflow's templates
    "deepest": "event: demo_request.created\nmax_depth: 128\nredact: [secret]\n"
               "signature: {preset: hmac, secret_env: RAWHOOK_SECRET, header: X-Signature, prefix: 'sha256='}\n",
}


@pytest.fixture
def project_dir(project_dir: Path) -> Path:
    """The `opsloop init` project plus endpoints for raw bytes, tight limits and each timestamped preset."""
    add_endpoints(project_dir)
    for name, text in PRESET_ENDPOINTS.items():
        (project_dir / "events" / f"{name}.yml").write_text(text)
    return project_dir


def _deep(levels: int) -> bytes:
    return b'{"email": "deep@example.com", "name": "Deep", "x": ' + b"[" * levels + b"]" * levels + b"}"


# (what, body, words the 400's reason must hold); each is signed correctly for the demo_request endpoint
POISON_TEXT: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("lone surrogate", b'{"email": "a@example.com", "name": "\\ud800"}', ("surrogate", "/name")),
    ("lone low surrogate key", b'{"email": "a@example.com", "name": "x", "\\udc01": 1}', ("surrogate",)),
    ("NaN", b'{"email": "a@example.com", "name": "x", "score": NaN}', ("NaN",)),
    ("Infinity", b'{"email": "a@example.com", "name": "x", "score": Infinity}', ("Infinity",)),
    ("-Infinity", b'{"email": "a@example.com", "name": "x", "score": -Infinity}', ("-Infinity",)),
    ("1e999", b'{"email": "a@example.com", "name": "x", "score": 1e999}', ("1e999", "out of range")),
    ("5000 digits", b'{"email": "a@example.com", "name": "x", "n": ' + b"7" * 5000 + b"}", ("5000 digits",)),
    ("10k nesting", _deep(10_000), ("nested", "64")),
    ("65 levels", _deep(64), ("nested", "64")),
    ("NUL escape", b'{"email": "a@example.com", "name": "x\\u0000y"}', ("\\u0000", "/name")),
    ("UTF-16 without BOM", '{"email": "a@example.com", "name": "x"}'.encode("utf-16-le"), ("UTF-16",)),
    ("not JSON", b'{"email": ', ("malformed JSON",)),
]

# bodies that are not UTF-8 at all, sent to the HMAC endpoint (its signature covers raw bytes)
POISON_BYTES: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("UTF-16 with BOM", '{"a": "b"}'.encode("utf-16"), ("not UTF-8", "byte order mark")),
    ("UTF-32", '{"a": "b"}'.encode("utf-32"), ("not UTF-8",)),
    ("invalid UTF-8", b'{"a": "\xff\xfe"}', ("not UTF-8", "byte 7")),
    ("overlong UTF-8", b'{"a": "\xc0\xaf"}', ("not UTF-8",)),
    ("CESU-8 surrogate", b'{"a": "\xed\xa0\x80"}', ("not UTF-8",)),
]


def test_poison_bodies_are_refused_at_the_door(up: Running) -> None:
    refused = []
    for what, body, words in POISON_TEXT:
        stored = rejected_ok(up, up.hook(body), 400, *words)
        assert stored["error"]["refused"] == "body", (what, stored)
        refused.append(stored["id"])
    for what, body, words in POISON_BYTES:
        stored = rejected_ok(up, hmac_post(up, "rawhook", body), 400, *words)
        assert stored["error"]["refused"] == "body", (what, stored)
        assert stored["body"] is None and base64.b64decode(stored["body_base64"]) == body, what
        refused.append(stored["id"])
    # a per-endpoint limit: `shallow` allows 3 levels
    assert hmac_post(up, "shallow", b'{"a": {"b": {"c": 1}}}').status_code == 202
    rejected_ok(up, hmac_post(up, "shallow", b'{"a": {"b": {"c": {"d": 1}}}}'), 400, "4 levels", "limit of 3")
    before = still_works(up, "after-poison@example.com")
    listings_answer(up, *refused)
    restart(up)
    listings_answer(up, before, *refused)
    still_works(up, "after-restart@example.com")


def test_what_the_door_accepts_every_consumer_handles(up: Running) -> None:
    deepest = (b'{"email": "deepest@example.com", "name": "Deep", "secret": "s", "x": ' + b"[" * 127 + b"1"
               + b"]" * 127 + b', "big": ' + b"9" * 4300 + b', "f": 1.5e308, "emoji": "\\ud83d\\ude00"}')
    answer = hmac_post(up, "deepest", deepest)
    assert answer.status_code == 202, answer.text
    event_id = answer.json()["id"]
    base.wait_for(lambda: raw_count(up, event_id) == 1, 30, what="the deepest event in raw.events")
    base.wait_for(lambda: run_for(up, event_id), 30, what="a workflow run for the deepest event")
    stored = event(up, event_id)
    assert stored["status"] == "dispatched" and stored["payload"]["secret"] == "[redacted]"
    assert stored["payload"]["emoji"] == "\U0001f600"
    too_deep = deepest.replace(b"[" * 127, b"[" * 128, 1).replace(b"]" * 127, b"]" * 128, 1)
    rejected_ok(up, hmac_post(up, "deepest", too_deep), 400, "129 levels", "limit of 128")
    still_works(up, "after-deepest@example.com")


def test_a_leading_bom_is_ignored(up: Running) -> None:
    body = b'\xef\xbb\xbf{"email": "bom@example.com", "name": "Byte Order"}'
    answer = up.hook(body)
    assert answer.status_code == 202, answer.text
    event_id = answer.json()["id"]
    base.wait_for(lambda: raw_count(up, event_id) == 1, 30, what="the BOM event in raw.events")
    stored = event(up, event_id)
    assert stored["payload"] == {"email": "bom@example.com", "name": "Byte Order"}
    assert stored["status"] == "dispatched"
    with up.api() as api:
        rows = api.post("/api/query", json={"sql": f"select payload->>'$.name' from raw.events "
                                                   f"where event_id = '{event_id}'"}).json()["rows"]
    assert rows == [["Byte Order"]]
    still_works(up, "after-bom@example.com")


def test_a_refused_body_is_replayed_with_a_fixed_payload(up: Running) -> None:
    stored = rejected_ok(up, up.hook(b'{"email": "nan@example.com", "name": "x", "score": NaN}'), 400, "NaN")
    with up.api() as api:
        again = api.post(f"/api/events/{stored['id']}/replay")
        assert again.status_code == 409 and "--payload" in again.json()["error"], again.text
        still_bad = api.post(f"/api/events/{stored['id']}/replay",
                             content=b'{"payload": {"email": "nan@example.com", "name": "x", "score": NaN}}')
        # the API's body check refuses the NaN before the replay is tried (400 naming the body)
        assert still_bad.status_code == 400 and "NaN" in still_bad.json()["error"], still_bad.text
        fixed = api.post(f"/api/events/{stored['id']}/replay",
                         json={"payload": {"email": "nan@example.com", "name": "x", "score": None}})
        assert fixed.status_code == 202, fixed.text
    new_id = fixed.json()["id"]
    base.wait_for(lambda: raw_count(up, new_id) == 1, 30, what="the replayed event in raw.events")
    assert event(up, stored["id"])["status"] == "replayed"


# -- timestamps ---------------------------------------------------------------------------------

ODD_STAMPS = ["nan", "inf", "-inf", "1e20", "-1", "abc", "", "1 2", "9" * 16, "1" * 10_000, "0x10", "1_000"]


def _standard(root: Path) -> Callable[[bytes, str], dict[str, str]]:
    secret = load_project(root).env["DEMO_REQUEST_SECRET"].removeprefix("whsec_")
    key = base64.b64decode(secret)

    def headers(body: bytes, ts: str) -> dict[str, str]:
        msg_id = f"msg_{time.time_ns()}"
        sig = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
        return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": f"v1,{sig}"}

    return headers


def _hex(data: bytes) -> str:
    return hmac.new(SECRET, data, hashlib.sha256).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(hmac.new(SECRET, data, hashlib.sha256).digest()).decode()


def _signed(url: str) -> dict[str, Callable[[bytes, str], dict[str, str]]]:
    """Headers signed correctly over each odd timestamp, so that only the timestamp can be refused."""
    return {
        "stripe_hook": lambda b, t: {"Stripe-Signature": f"t={t},v1={_hex(t.encode() + b'.' + b)}"},
        "slack_hook": lambda b, t: {"X-Slack-Request-Timestamp": t,
                                    "X-Slack-Signature": "v0=" + _hex(b"v0:" + t.encode() + b":" + b)},
        "hubspot_hook": lambda b, t: {"X-HubSpot-Request-Timestamp": t, "X-HubSpot-Signature-v3": _b64(
            b"POST" + f"{url}/hooks/hubspot_hook".encode() + b + t.encode())},
        "zendesk_hook": lambda b, t: {"X-Zendesk-Webhook-Signature-Timestamp": t,
                                      "X-Zendesk-Webhook-Signature": _b64(t.encode() + b)},
        "stamped_hook": lambda b, t: {"X-Timestamp": t, "X-Signature": _hex(t.encode() + b"." + b)},
    }


def test_odd_webhook_timestamps_are_401_on_every_preset(up: Running) -> None:
    body = b'{"email": "t@example.com", "name": "Tick"}'
    signers = {"demo_request": _standard(up.root), **_signed(up.url)}
    with httpx.Client(base_url=up.url, timeout=15) as client:
        for endpoint, sign in signers.items():
            for stamp in ODD_STAMPS:
                answer = client.post(f"/hooks/{endpoint}", content=body, headers={**sign(body, stamp),
                                                                                   "content-type": "application/json"})
                assert answer.status_code == 401, (endpoint, stamp[:20], answer.text[:300])
                reason = answer.json()["reason"].lower()
                assert "timestamp" in reason or "time" in reason, (endpoint, stamp[:20], reason)
            # and the same signer with a good timestamp is let in: the refusal above was the timestamp's
            now = str(int(time.time() * 1000)) if endpoint == "hubspot_hook" else str(int(time.time()))
            if endpoint == "zendesk_hook":
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            good = client.post(f"/hooks/{endpoint}", content=body, headers=sign(body, now))
            assert good.status_code == 202, (endpoint, good.text)
    listings_answer(up)


# -- what an unauthenticated caller costs ------------------------------------------------------


def _rejected(r: Running, endpoint: str) -> list[dict[str, object]]:
    with r.api() as api:
        answer = api.get("/api/events", params={"endpoint": endpoint, "status": "rejected", "limit": "1000"})
    assert answer.status_code == 200, answer.text
    events: list[dict[str, object]] = answer.json()["events"]
    return events


def test_a_refused_signature_keeps_headers_and_a_prefix_of_the_body(up: Running) -> None:
    body = json.dumps({"email": "big@example.com", "name": "x" * 20_000}).encode()
    answer = httpx.post(f"{up.url}/hooks/demo_request", content=body, timeout=15, headers={
        "webhook-id": "msg_forged", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,Zm9yZ2Vk",
        "x-sender": "forger"})
    assert answer.status_code == 401 and answer.json()["error"] == "invalid signature", answer.text
    stored = event(up, answer.json()["id"])
    assert stored["status"] == "rejected"
    assert stored["headers"]["x-sender"] == "forger"
    assert stored["body"] == body[:4096].decode()
    assert stored["error"]["body_size"] == len(body) and stored["error"]["body_truncated"] is True
    assert stored["error"]["refused"] == "signature"
    with up.api() as api:
        refused = api.post(f"/api/events/{stored['id']}/replay", json={"payload": {"email": "a@b.c", "name": "x"}})
    assert refused.status_code == 409 and "signature" in refused.json()["error"]


def test_what_is_stored_for_refused_signatures_is_rate_limited_per_client(up: Running) -> None:
    # `shallow` stores at most 5 refused requests per client and minute, 100 bytes of each
    body = b'{"pad": "' + b"p" * 1000 + b'"}'
    answers = [httpx.post(f"{up.url}/hooks/shallow", content=body, headers={"X-Signature": "sha256=00"}, timeout=15)
               for _ in range(12)]
    assert [a.status_code for a in answers] == [401] * 12
    assert {a.json()["error"] for a in answers} == {"invalid signature"}
    assert [("id" in a.json()) for a in answers] == [True] * 5 + [False] * 7
    stored = _rejected(up, "shallow")
    assert len(stored) == 5
    detail = event(up, str(stored[0]["id"]))
    assert len(detail["body"]) == 100 and detail["error"]["body_size"] == len(body)
    # an X-Forwarded-For from outside is not believed: still the same client, still over budget
    spoofed = httpx.post(f"{up.url}/hooks/shallow", content=body, timeout=15,
                         headers={"X-Signature": "sha256=00", "X-Forwarded-For": "203.0.113.7"})
    assert spoofed.status_code == 401 and "id" not in spoofed.json()
    # another address (127.0.0.2 is loopback too) has its own budget
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=15) as elsewhere:
        other = elsewhere.post(f"{up.url}/hooks/shallow", content=body, headers={"X-Signature": "sha256=00"})
    assert other.status_code == 401 and "id" in other.json()
    assert event(up, other.json()["id"])["error"]["client"] == "127.0.0.2"
    assert len(_rejected(up, "shallow")) == 6
    # a signed request is not held back by the budget
    assert hmac_post(up, "shallow", b'{"ok": true}').status_code == 202


def test_a_flood_of_forged_requests_stores_little(up: Running) -> None:
    body = b"x" * 250_000
    with httpx.Client(base_url=up.url, timeout=30) as client:
        for _ in range(200):
            answer = client.post("/hooks/demo_request", content=body, headers={
                "webhook-id": "m", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"})
            assert answer.status_code == 401
    stored = _rejected(up, "demo_request")
    assert len(stored) == 60  # the default budget per client and minute
    total = sum(len(event(up, str(e["id"]))["body"] or "") for e in stored)
    assert total == 60 * 4096
    still_works(up, "after-flood@example.com")


def test_the_404_for_an_unknown_endpoint_names_nothing(up: Running) -> None:
    answer = httpx.post(f"{up.url}/hooks/nope", content=b"{}", timeout=15)
    assert answer.status_code == 404
    text = answer.text
    for name in ("demo_request", "rawhook", "shallow", "stripe_hook"):
        assert name not in text
    assert answer.json()["error"].startswith("no webhook endpoint at this path")
