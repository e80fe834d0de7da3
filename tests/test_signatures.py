"""Signature presets, checked with vectors computed here the way each provider's docs describe."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsloop.events.signatures import SignedRequest, make_preset
from opsloop.project.config import SignatureConfig

BODY = b'{"id":"evt_1","type":"checkout.session.completed","data":{"amount":4200}}'
SECRET = "s3cr3t-value"
NOW = time.time()


def h256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def stripe(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"stripe-signature": f"t={ts},v1={h256(secret.encode(), f'{ts}.'.encode() + body).hex()}"}


def slack(secret: str, body: bytes, ts: int) -> dict[str, str]:
    sig = "v0=" + h256(secret.encode(), f"v0:{ts}:".encode() + body).hex()
    return {"x-slack-request-timestamp": str(ts), "x-slack-signature": sig}


def github(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"x-hub-signature-256": "sha256=" + h256(secret.encode(), body).hex()}


URL = "https://hooks.example.com/hooks/crm?portal=1"


def hubspot(secret: str, body: bytes, ts: int) -> dict[str, str]:
    ms = str(ts * 1000)
    data = b"POST" + URL.encode() + body + ms.encode()
    sig = base64.b64encode(h256(secret.encode(), data)).decode()
    return {"x-hubspot-request-timestamp": ms, "x-hubspot-signature-v3": sig}


SW_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def standard(secret: str, body: bytes, ts: int) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    sig = base64.b64encode(h256(key, f"msg_1.{ts}.".encode() + body)).decode()
    return {"webhook-id": "msg_1", "webhook-timestamp": str(ts), "webhook-signature": f"v1,{sig}"}


def zendesk(secret: str, body: bytes, ts: int) -> dict[str, str]:
    stamp = datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sig = base64.b64encode(h256(secret.encode(), stamp.encode() + body)).decode()
    return {"x-zendesk-webhook-signature-timestamp": stamp, "x-zendesk-webhook-signature": sig}


def shopify(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"x-shopify-hmac-sha256": base64.b64encode(h256(secret.encode(), body)).decode()}


def generic(secret: str, body: bytes, ts: int) -> dict[str, str]:
    sig = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha512).hexdigest()
    return {"x-acme-signature": "sha512=" + sig, "x-acme-timestamp": str(ts)}


CASES = [
    ("stripe", stripe, SECRET, {}, True),
    ("slack", slack, SECRET, {}, True),
    ("github", github, SECRET, {}, False),
    ("hubspot", hubspot, SECRET, {}, True),
    ("standard_webhooks", standard, SW_SECRET, {}, True),
    ("zendesk", zendesk, SECRET, {}, True),
    ("shopify", shopify, SECRET, {}, False),
    ("hmac", generic, SECRET, {"header": "X-Acme-Signature", "algorithm": "sha512", "prefix": "sha512=",
                               "timestamp_header": "X-Acme-Timestamp"}, True),
]


def preset_for(name: str, secret: str, extra: dict[str, str]) -> object:
    return make_preset(SignatureConfig(preset=name, secret_env="X", **extra), secret)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "vector", "secret", "extra", "timed"), CASES, ids=[c[0] for c in CASES])
def test_preset(name: str, vector, secret: str, extra: dict[str, str], timed: bool) -> None:  # type: ignore[no-untyped-def]
    preset = preset_for(name, secret, extra)
    ts = int(NOW)
    good = vector(secret, BODY, ts)
    assert preset.verify(SignedRequest(BODY, good, URL), NOW) is None  # type: ignore[attr-defined]
    # tampered body
    reason = preset.verify(SignedRequest(BODY.replace(b"4200", b"1"), good, URL), NOW)  # type: ignore[attr-defined]
    assert reason and "does not match" in reason
    # wrong secret
    other = SW_SECRET.replace("M", "N") if name == "standard_webhooks" else "another-secret"
    bad = vector(other, BODY, ts)
    assert preset.verify(SignedRequest(BODY, bad, URL), NOW)  # type: ignore[attr-defined]
    # missing headers
    assert preset.verify(SignedRequest(BODY, {}, URL), NOW)  # type: ignore[attr-defined]
    if timed:
        stale = vector(secret, BODY, ts - 3600)
        reason = preset.verify(SignedRequest(BODY, stale, URL), NOW)  # type: ignore[attr-defined]
        assert reason and "tolerance" in reason
    # our own signer produces what the provider would
    signed = preset.sign(SignedRequest(BODY, {}, URL), NOW)  # type: ignore[attr-defined]
    lower = {k.lower(): v for k, v in signed.items()}
    assert preset.verify(SignedRequest(BODY, lower, URL), NOW) is None  # type: ignore[attr-defined]


def test_stripe_accepts_any_of_several_v1_signatures() -> None:
    preset = preset_for("stripe", SECRET, {})
    ts = int(NOW)
    good = stripe(SECRET, BODY, ts)["stripe-signature"]
    header = f"t={ts},v1={'0' * 64},{good.split(',')[1]}"
    assert preset.verify(SignedRequest(BODY, {"stripe-signature": header}), NOW) is None  # type: ignore[attr-defined]


def test_hubspot_decodes_the_documented_characters_in_the_uri() -> None:
    preset = preset_for("hubspot", SECRET, {})
    ts = str(int(NOW) * 1000)
    encoded = "https://hooks.example.com/hooks/crm?email=a%40b.com"
    decoded = "https://hooks.example.com/hooks/crm?email=a@b.com"
    sig = base64.b64encode(h256(SECRET.encode(), b"POST" + decoded.encode() + BODY + ts.encode())).decode()
    headers = {"x-hubspot-request-timestamp": ts, "x-hubspot-signature-v3": sig}
    assert preset.verify(SignedRequest(BODY, headers, encoded), NOW) is None  # type: ignore[attr-defined]


def test_preset_without_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a secret"):
        make_preset(SignatureConfig(preset="github", secret_env="X"), None)


def test_hubspot_behind_a_proxy_is_checked_against_public_url(project_dir: Path, server_factory: Any) -> None:
    """The sender signs https://hooks.example.com/...; the request reaches http://127.0.0.1:PORT/...."""
    (project_dir / "events" / "crm.yml").write_text(
        "event: crm.changed\nsignature: {preset: hubspot, secret_env: CRM_SECRET}\n")
    with (project_dir / ".env").open("a") as fh:
        fh.write(f"CRM_SECRET={SECRET}\n")
    ts = int(time.time())
    headers = hubspot(SECRET, BODY, ts)  # signed over URL = https://hooks.example.com/hooks/crm?portal=1
    for public_url, expected in ((None, 401), ("https://hooks.example.com/", 202)):
        srv = server_factory(project_dir, public_url=public_url)
        answer = httpx.post(f"{srv.url}/hooks/crm?portal=1", content=BODY, headers=headers, timeout=10)
        assert answer.status_code == expected, answer.text
