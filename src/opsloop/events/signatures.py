"""Webhook signature presets, each as its provider documents it. Comparisons are constant-time.

A preset is a pair of functions: ``verify`` returns None when the request is authentic, else a short
reason (shown in the event log, never the secret); ``sign`` produces the headers a provider would send,
used by ``opsloop send`` and by the tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

from standardwebhooks.webhooks import Webhook

from ..project.config import SignatureConfig

Headers = Mapping[str, str]  # lower-cased names


@dataclass(frozen=True)
class SignedRequest:
    body: bytes
    headers: Headers
    url: str = ""
    method: str = "POST"


def _hmac(secret: bytes, data: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret, data, getattr(hashlib, algorithm)).digest()


def _eq(expected: str | bytes, given: str | bytes) -> bool:
    a = expected.encode() if isinstance(expected, str) else expected
    b = given.encode() if isinstance(given, str) else given
    return hmac.compare_digest(a, b)


def _fresh(timestamp: float, tolerance: float, now: float) -> str | None:
    if abs(now - timestamp) > tolerance:
        return f"timestamp is {abs(now - timestamp):.0f}s away from now (tolerance {tolerance:.0f}s)"
    return None


_UNIX_TIME = re.compile(r"[0-9]{1,16}(\.[0-9]{1,9})?")


def _parse_float(value: str | None) -> float | None:
    """A unix timestamp header (seconds or milliseconds, digits with an optional fraction), else None:
    ``nan``, ``inf``, ``1e20``, ``-1``, an empty value or 10k digits are not timestamps."""
    if value is None or not _UNIX_TIME.fullmatch(value.strip()):
        return None
    return float(value)


class Preset:
    """Verification and signing for one provider's scheme."""

    def __init__(self, config: SignatureConfig, secret: str) -> None:
        self.config = config
        self.secret = secret
        self.key = secret.encode()

    def verify(self, req: SignedRequest, now: float) -> str | None:
        raise NotImplementedError

    def sign(self, req: SignedRequest, now: float) -> dict[str, str]:
        raise NotImplementedError


class NoSignature(Preset):
    def verify(self, req: SignedRequest, now: float) -> str | None:
        return None

    def sign(self, req: SignedRequest, now: float) -> dict[str, str]:
        return {}


class Stripe(Preset):
    """``Stripe-Signature: t=<unix>,v1=<hex hmac_sha256(secret, "t.body")>`` (several v1 allowed)."""

    def verify(self, req: SignedRequest, now: float) -> str | None:
        header = req.headers.get("stripe-signature")
        if not header:
            return "missing Stripe-Signature header"
        parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
        stamps = [v for k, v in parts if k.strip() == "t"]
        sigs = [v for k, v in parts if k.strip() == "v1"]
        if not stamps or not sigs:
            return "Stripe-Signature lacks t= or v1="
        ts = _parse_float(stamps[0])
        if ts is None:
            return "Stripe-Signature's t= is not a unix timestamp"
        expected = _hmac(self.key, stamps[0].encode() + b"." + req.body).hex()
        if not any(_eq(expected, s.strip()) for s in sigs):
            return "signature does not match"
        return _fresh(ts, self.config.tolerance, now)

    def sign(self, req: SignedRequest, now: float) -> dict[str, str]:
        t = str(int(now))
        sig = _hmac(self.key, t.encode() + b"." + req.body).hex()
        return {"Stripe-Signature": f"t={t},v1={sig}"}


class Slack(Preset):
    """``X-Slack-Signature: v0=<hex hmac_sha256(secret, "v0:ts:body")>`` with X-Slack-Request-Timestamp."""

    def verify(self, req: SignedRequest, now: float) -> str | None:
        ts_text = req.headers.get("x-slack-request-timestamp")
        given = req.headers.get("x-slack-signature")
        if not ts_text or not given:
            return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
        ts = _parse_float(ts_text)
        if ts is None:
            return "X-Slack-Request-Timestamp is not a unix timestamp"
        expected = "v0=" + _hmac(self.key, b"v0:" + str(ts_text).encode() + b":" + req.body).hex()
        if not _eq(expected, given):
            return "signature does not match"
        return _fresh(ts, self.config.tolerance, now)

    def sign(self, req: SignedRequest, now: float) -> dict[str, str]:
        t = str(int(now))
        sig = "v0=" + _hmac(self.key, b"v0:" + t.encode() + b":" + req.body).hex()
        return {"X-Slack-Request-Timestamp": t, "X-Slack-Signature": sig}


class GitHub(Preset):
    """``X-Hub-Signature-256: sha256=<hex hmac_sha256(secret, body)>``."""

    def verify(self, req: SignedRequest, now: float) -> str | None:
        given = req.headers.get("x-hub-signature-256")
        if not given:
            return "missing X-Hub-Signature-256 header"
        if not _eq("sha256=" + _hmac(self.key, req.body).hex(), given):
            return "signature does not match"
        return None

    def sign(self, req: SignedRequest, now: float) -> dict[str, str]:
        return {"X-Hub-Signature-256": "sha256=" + _hmac(self.key, req.body).hex()}


_HUBSPOT_DECODE = ["%3A", "%2F", "%3F", "%40", "%21", "%24", "%27", "%28", "%29", "%2A", "%2C", "%3B"]


def _hubspot_uri(url: str) -> str:
    out = url
    for code in _HUBSPOT_DECODE:
        out = out.replace(code, unquote(code)).replace(code.lower(), unquote(code))
    return out


class HubSpot(Preset):
    """v3: ``X-HubSpot-Signature-v3`` = base64(hmac_sha256(secret, method + uri + body + timestamp_ms))."""

    def _expected(self, req: SignedRequest, ts_text: str) -> str:
        data = (req.method.upper() + _hubspot_uri(req.url)).encode() + req.body + ts_text.encode()
        return base64.b64encode(_hmac(self.key, data)).decode()

    def verify(self, req: SignedRequest, now: float) -> str | None:
        ts_text = req.headers.get("x-hubspot-request-timestamp")
        given = req.headers.get("x-hubspot-signature-v3")
        if not ts_text or not given:
            return "missing X-HubSpot-Request-Timestamp or X-HubSpot-Signature-v3"
        ts = _parse_float(ts_text)
        if ts is None:
            return "X-HubSpot-Request-Timestamp is not a unix timestamp in milliseconds"
        if not _eq(self._expected(req, ts_text), given):
            return "signature does not match"
        return _fresh(ts / 1000.0, self.config.tolerance, now)

    def sign(self, req: SignedRequest, now: float) -> dict[str, str]:
        t = str(int(now * 1000))
        return {"X-HubSpot-Request-Timestamp": t, "X-HubSpot-Signature-v3": self._expected(req, t)}


class StandardWebhooks(Preset):
    """Standard Webhooks / Svix: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<b64>``."""

    def __init__(self, config: SignatureConfig, secret: str) -> None:
        super().__init__(config, secret)
        self.hook = Webhook(secret)

    def verify(self, req: SignedRequest, now: float) -> str | None:
        msg_id = req.headers.get("webhook-id")
        ts_text = req.headers.get("webhook-timestamp")
        given = req.headers.get("webhook-signature")
        if not msg_id or not ts_text or not given:
            return "missing webhook-id, webhook-timestamp or webhook-signature"
        ts = _parse_float(ts_text)
        if ts is None:
            return "webhook-timestamp is not a unix timestamp in seconds"
        stale = _fresh(ts, self.config.tolerance, now)  # first: a time past year 9999 has no datetime
        if stale is not None:
            return stale
        try:
            body = req.body.decode()
        except UnicodeDecodeError:
            return "body is not UTF-8"
        expected = self.hook.sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body).split(",", 1)[1]
        candidates = [s.split(",", 1)[1] for s in given.split(" ") if s.startswith("v1,")]
        if not any(_eq(expected, c) for c in candidates):
            return "signature does not match"
        return None

    def sign(self, req: SignedRequest, now: float) -> dict[str, str]:
        msg_id = req.headers.get("webhook-id") or f"msg_{int(now * 1e6)}"
        sig = self.hook.sign(msg_id, datetime.fromtimestamp(int(now), tz=UTC), req.body.decode())
        return {"webhook-id": msg_id, "webhook-timestamp": str(int(now)), "webhook-signature": sig}


class Zendesk(Preset):
    """``X-Zendesk-Webhook-Signature`` = base64(hmac_sha256(secret, timestamp + body))."""

    def verify(self, req: SignedRequest, now: float) -> str | None:
        ts_text = req.headers.get("x-zendesk-webhook-signature-timestamp")
        given = req.headers.get("x-zendesk-webhook-signature")
        if not ts_text or not given:
            return "missing X-Zendesk-Webhook-Signature or X-Zendesk-Webhook-Signature-Timestamp"
        expected = base64.b64encode(_hmac(self.key, ts_text.encode() + req.body)).decode()
        if not _eq(expected, given):
            return "signature does not match"
        try:
            ts = datetime.fromisoformat(ts_text.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError, OSError):
            return "X-Zendesk-Webhook-Signature-Timestamp is not an ISO 8601 time"
        return _fresh(ts, self.config.tolerance, now)

    def sign(self, req: SignedRequest, now: float) -> dict[str, str]:
        t = datetime.fromtimestamp(int(now), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        sig = base64.b64encode(_hmac(self.key, t.encode() + req.body)).decode()
        return {"X-Zendesk-Webhook-Signature-Timestamp": t, "X-Zendesk-Webhook-Signature": sig}


class Shopify(Preset):
    """``X-Shopify-Hmac-Sha256`` = base64(hmac_sha256(secret, body))."""

    def verify(self, req: SignedRequest, now: float) -> str | None:
        given = req.headers.get("x-shopify-hmac-sha256")
        if not given:
            return "missing X-Shopify-Hmac-Sha256 header"
        if not _eq(base64.b64encode(_hmac(self.key, req.body)).decode(), given):
            return "signature does not match"
        return None

    def sign(self, req: SignedRequest, now: float) -> dict[str, str]:
        return {"X-Shopify-Hmac-Sha256": base64.b64encode(_hmac(self.key, req.body)).decode()}


class GenericHmac(Preset):
    """Any HMAC scheme: header, algorithm, hex/base64, prefix, optional timestamp header and tolerance."""

    def _digest(self, req: SignedRequest, ts_text: str | None) -> str:
        c = self.config
        data = req.body if ts_text is None else ts_text.encode() + c.separator.encode() + req.body
        raw = _hmac(self.key, data, c.algorithm)
        return c.prefix + (raw.hex() if c.encoding == "hex" else base64.b64encode(raw).decode())

    def verify(self, req: SignedRequest, now: float) -> str | None:
        c = self.config
        given = req.headers.get(str(c.header).lower())
        if not given:
            return f"missing {c.header} header"
        ts_text = req.headers.get(c.timestamp_header.lower()) if c.timestamp_header else None
        if c.timestamp_header and ts_text is None:
            return f"missing {c.timestamp_header} header"
        if not _eq(self._digest(req, ts_text), given):
            return "signature does not match"
        if ts_text is not None:
            ts = _parse_float(ts_text)
            if ts is None:
                return f"{c.timestamp_header} is not a unix timestamp"
            return _fresh(ts / 1000.0 if ts > 1e11 else ts, c.tolerance, now)
        return None

    def sign(self, req: SignedRequest, now: float) -> dict[str, str]:
        c = self.config
        ts_text = str(int(now)) if c.timestamp_header else None
        headers = {str(c.header): self._digest(req, ts_text)}
        if c.timestamp_header and ts_text:
            headers[c.timestamp_header] = ts_text
        return headers


PRESETS: dict[str, Callable[[SignatureConfig, str], Preset]] = {
    "none": NoSignature,
    "stripe": Stripe,
    "slack": Slack,
    "github": GitHub,
    "hubspot": HubSpot,
    "standard_webhooks": StandardWebhooks,
    "zendesk": Zendesk,
    "shopify": Shopify,
    "hmac": GenericHmac,
}


def make_preset(config: SignatureConfig, secret: str | None) -> Preset:
    """The verifier for ``config``; ``secret`` must be set unless the preset is ``none``."""
    if config.preset != "none" and not secret:
        raise ValueError(f"signature preset {config.preset!r} needs a secret")
    return PRESETS[config.preset](config, secret or "")


def now() -> float:
    return time.time()
